"""Admin dashboard cost with a large data set: load time and query count of /admin/scheduling/task/dashboard/.

Usage (from the repository root):
    .venv/bin/python -m bench.admin_dashboard --tasks 100000 --results 1000000
    TASKHUB_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/taskhub_bench \\
        .venv/bin/python -m bench.admin_dashboard --tasks 100000 --results 1000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--results", type=int, default=1_000_000, help="finished attempts, spread over 30 days")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="reuse the rows already in the database")
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    args = parser.parse_args()

    from bench.throughput import _ensure_postgres_database

    _ensure_postgres_database(os.environ.get("TASKHUB_DATABASE_URL", ""))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus

    call_command("migrate", verbosity=0)
    if not args.keep:
        TaskResult.objects.all().delete()
        Task.dependencies.through.objects.all().delete()
        Task.objects.all().delete()
        now = datetime.now(UTC)
        statuses = list(TaskStatus.values)
        started = time.perf_counter()
        ids = []
        for chunk in range(0, args.tasks, 5000):
            batch = [
                Task(
                    name=f"bench {i}",
                    handler="NOOP",
                    status=statuses[i % len(statuses)],
                    task_type="SCHEDULED" if i % 2 else "IMMEDIATE",
                    cron_expr="*/5 * * * *" if i % 2 else "",
                    next_fire_at=now + timedelta(seconds=i) if i % 2 else None,
                )
                for i in range(chunk, min(chunk + 5000, args.tasks))
            ]
            Task.objects.bulk_create(batch)
            ids.extend(t.pk for t in batch)
        span = 30 * 24 * 3600
        for chunk in range(0, args.results, 20_000):
            rows = []
            for n in range(chunk, min(chunk + 20_000, args.results)):
                finished = now - timedelta(seconds=n * span // args.results)
                failed = n % 23 == 0
                rows.append(
                    TaskResult(
                        task_id=ids[n % len(ids)],
                        attempt=1 + n // len(ids),
                        status=AttemptStatus.FAILED if failed else AttemptStatus.DONE,
                        created_at=finished - timedelta(seconds=4),
                        available_at=finished - timedelta(seconds=4),
                        started_at=finished - timedelta(seconds=3),
                        finished_at=finished,
                        duration=float(3 + n % 600),
                        worker=f"w{n % 8}@bench",
                        error_message="boom" if failed else "",
                    )
                )
            TaskResult.objects.bulk_create(rows)
        # A live queue too: waiting and in-flight attempts.
        live = [
            TaskResult(
                task_id=ids[i],
                attempt=99,
                status=[AttemptStatus.PENDING, AttemptStatus.QUEUED, AttemptStatus.RUNNING, AttemptStatus.RETRY][i % 4],
                worker="w1@bench" if i % 4 == 2 else "",
            )
            for i in range(min(2000, len(ids)))
        ]
        TaskResult.objects.bulk_create(live)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        else:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        print(f"generated {args.tasks} tasks, {args.results} results in {time.perf_counter() - started:.1f}s")

    user = get_user_model().objects.filter(username="bench").first() or get_user_model().objects.create_superuser(
        "bench", "bench@example.com", "bench"
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    url = reverse("admin:scheduling_task_dashboard")
    client.get(url)  # warm caches (templates, SQLite pages)
    timings = []
    for _ in range(args.runs):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    dashboard_queries = [q for q in queries.captured_queries if "scheduling_" in q["sql"]]
    print(
        f"{connection.vendor}: {Task.objects.count()} tasks, {TaskResult.objects.count()} results: "
        f"dashboard median {statistics.median(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms, "
        f"{len(queries)} queries ({len(dashboard_queries)} on TaskHub tables)"
    )
    for query in dashboard_queries:
        print(f"  {float(query['time']) * 1000:7.1f} ms  {query['sql'][:150]}")
        if args.explain:
            with connection.cursor() as cursor:
                prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
                cursor.execute(prefix + query["sql"])
                for row in cursor.fetchall():
                    print("           ", row)


if __name__ == "__main__":
    main()
