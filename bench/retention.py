"""Result retention on a large store: how long ``purge_results`` takes and how long any one transaction lasts.

Builds TASKS tasks with ATTEMPTS finished attempts each, spread evenly over the last 400 days, then runs
the clean-up with a 90-day retention and reports: attempts deleted, batches, total seconds, the longest
batch (= the longest transaction), peak memory, and checks that every task kept its latest result.

Usage (from the repository root; the database is emptied of tasks first, so give it one of its own):
    .venv/bin/python -m bench.retention [--tasks 10000] [--attempts 100]
    TASKHUB_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/taskhub_bench_retention \\
        .venv/bin/python -m bench.retention
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault(
    "TASKHUB_DATABASE_URL", f"sqlite:///{Path(tempfile.gettempdir()) / 'taskhub-bench-retention.sqlite3'}"
)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Max  # noqa: E402
from django.utils import timezone  # noqa: E402

from scheduling.engine import retention  # noqa: E402
from scheduling.models import AttemptStatus, Task, TaskResult  # noqa: E402

CHUNK = 20_000


def build(tasks: int, attempts: int) -> None:
    Task.objects.all().delete()
    now = timezone.now()
    rows: list[TaskResult] = []
    task_ids = [uuid.uuid4() for _ in range(tasks)]
    with transaction.atomic():
        Task.objects.bulk_create(
            (Task(id=pk, name=f"t{i}", handler="NOOP", created_at=now) for i, pk in enumerate(task_ids)),
            batch_size=CHUNK,
        )
    step = timedelta(days=400) / attempts
    for n in range(attempts):
        when = now - timedelta(days=400) + n * step
        rows.extend(
            TaskResult(task_id=pk, status=AttemptStatus.DONE, created_at=when, available_at=when, finished_at=when)
            for pk in task_ids
        )
        if len(rows) >= CHUNK:
            TaskResult.objects.bulk_create(rows, batch_size=CHUNK)
            rows = []
    TaskResult.objects.bulk_create(rows, batch_size=CHUNK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--attempts", type=int, default=100, help="finished attempts per task")
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    build(args.tasks, args.attempts)
    built = time.perf_counter() - started
    latest = dict(TaskResult.objects.values("task_id").annotate(last=Max("created_at")).values_list("task_id", "last"))
    total = TaskResult.objects.count()

    batch_times: list[float] = []
    mark = [time.perf_counter()]

    def tick(report: retention.PurgeReport) -> None:
        now = time.perf_counter()
        batch_times.append(now - mark[0])
        mark[0] = now

    started = time.perf_counter()
    report = retention.purge_results(days=args.days, progress=tick)
    elapsed = time.perf_counter() - started
    kept = dict(TaskResult.objects.values("task_id").annotate(last=Max("created_at")).values_list("task_id", "last"))
    print(
        json.dumps(
            {
                "database": connection.vendor,
                "tasks": args.tasks,
                "attempts_before": total,
                "build_seconds": round(built, 1),
                "deleted": report.attempts,
                "attempts_after": TaskResult.objects.count(),
                "batches": report.batches,
                "purge_seconds": round(elapsed, 1),
                "rows_per_second": round(report.attempts / elapsed) if elapsed else None,
                "longest_batch_seconds": round(max(batch_times, default=0), 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "every_task_kept_its_latest_result": kept == latest,
            }
        )
    )


if __name__ == "__main__":
    main()
