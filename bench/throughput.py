"""Throughput and latency of immediate no-op tasks: TaskHub end to end beside raw Celery.

Both runs use the same broker, database and worker processes in the same invocation:
- raw Celery: ``apply_async`` of a no-op task; done = the worker appended its byte;
- TaskHub: ``task_create`` through the service layer; done = the attempt recorded DONE.
Latency: task committed -> attempt RUNNING, and last dependency DONE -> dependent RUNNING.

Usage (from the repository root):
    .venv/bin/python -m bench.throughput --tasks 1000
    TASKHUB_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/taskhub_bench \\
    TASKHUB_BROKER_URL=redis://127.0.0.1:6379/13 .venv/bin/python -m bench.throughput --tasks 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
ROOT = Path(__file__).resolve().parent.parent


def _ensure_postgres_database(url: str) -> None:
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return
    import psycopg

    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl().replace("postgresql://", "postgres://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (prefork concurrency)")
    parser.add_argument("--pairs", type=int, default=100, help="dependency pairs for the dependent latency")
    args = parser.parse_args()

    _ensure_postgres_database(os.environ.get("TASKHUB_DATABASE_URL", ""))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from bench.benchapp.tasks import raw_noop
    from scheduling import services
    from scheduling.models import AttemptStatus, Task, TaskResult

    call_command("migrate", verbosity=0)
    TaskResult.objects.all().delete()
    Task.objects.all().delete()
    if settings.CELERY_BROKER_URL.startswith("redis"):
        import redis

        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    done_file = Path(settings.STORAGE_DIR) / "raw-done"
    done_file.unlink(missing_ok=True)

    log = Path(settings.STORAGE_DIR) / "bench-worker.log"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "taskhub",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(args.workers),
            "--prefetch-multiplier",
            "1",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        n = args.tasks

        # Warm-up (and readiness: logs are at WARNING here): both paths, so start-up,
        # imports and connections are not measured.
        for _ in range(20):
            raw_noop.apply_async()
        wait_for(lambda: done_file.exists() and done_file.stat().st_size >= 20, 60)
        for i in range(20):
            services.task_create(data={"name": f"warm-{i}", "tags": ["NOOP"]})
        wait_for(lambda: TaskResult.objects.filter(status=AttemptStatus.DONE).count() >= 20, 60)
        TaskResult.objects.all().delete()
        Task.objects.all().delete()
        done_file.unlink()

        started = time.perf_counter()
        for _ in range(n):
            raw_noop.apply_async()
        wait_for(lambda: done_file.exists() and done_file.stat().st_size >= n, 600)
        raw_seconds = time.perf_counter() - started

        started = time.perf_counter()
        for i in range(n):
            services.task_create(data={"name": f"noop-{i}", "tags": ["NOOP"]})
        wait_for(lambda: TaskResult.objects.filter(status=AttemptStatus.DONE).count() >= n, 600)
        hub_seconds = time.perf_counter() - started
        latencies = [
            (r.started_at - r.task.created_at).total_seconds() * 1000 for r in TaskResult.objects.select_related("task")
        ]

        # Dependent latency: one pair at a time on an idle system.
        dependent = []
        for i in range(args.pairs):
            first = services.task_create(data={"name": f"up-{i}", "tags": ["NOOP"]})
            second = services.task_create(data={"name": f"down-{i}", "tags": ["NOOP"], "dependencies": [first.pk]})
            wait_for(lambda s=second: Task.objects.filter(pk=s.pk, status="DONE").exists(), 60)
            up = TaskResult.objects.get(task=first)
            down = TaskResult.objects.get(task=second)
            dependent.append((down.started_at - up.finished_at).total_seconds() * 1000)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    backend = (
        f"{settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} + {settings.CELERY_BROKER_URL.split(':')[0]}"
    )
    report = {
        "backend": backend,
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "tasks": n,
        "worker_processes": args.workers,
        "scheduler_concurrency": settings.TASKHUB["scheduler"]["concurrency"],
        "raw_celery_tasks_per_s": round(n / raw_seconds, 1),
        "taskhub_tasks_per_s": round(n / hub_seconds, 1),
        "ratio_taskhub_to_raw": round(raw_seconds / hub_seconds, 3),
        "create_to_running_ms": {
            "p50": round(percentile(latencies, 50), 1),
            "p95": round(percentile(latencies, 95), 1),
            "p99": round(percentile(latencies, 99), 1),
        },
        "dependency_done_to_dependent_running_ms": {
            "p50": round(percentile(dependent, 50), 1),
            "p95": round(percentile(dependent, 95), 1),
            "p99": round(percentile(dependent, 99), 1),
            "samples": len(dependent),
        },
    }
    print(f"\nTaskHub throughput on {backend} ({report['machine']})")
    print(f"{'':34}{'tasks/s':>10}")
    print(f"{'raw Celery apply_async (no-op)':34}{report['raw_celery_tasks_per_s']:>10}")
    print(f"{'TaskHub task_create -> DONE':34}{report['taskhub_tasks_per_s']:>10}")
    print(f"ratio TaskHub / raw Celery: {report['ratio_taskhub_to_raw']}")
    print(f"create -> RUNNING ms: {report['create_to_running_ms']}")
    print(f"dependency DONE -> dependent RUNNING ms: {report['dependency_done_to_dependent_running_ms']}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    name = "throughput-" + backend.replace(" + ", "-") + ".json"
    (out / name).write_text(json.dumps(report, indent=2))
    print(f"written: bench/results/{name}")


if __name__ == "__main__":
    main()
