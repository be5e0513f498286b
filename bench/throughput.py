"""Throughput and latency of immediate no-op tasks: TaskHub beside raw Celery and APScheduler 3.

In one run, on the same database and broker:
- TaskHub: ``services.task_create`` of a NOOP task -> its attempt recorded DONE, through a
  ``celery worker --pool prefork --concurrency W``;
- raw Celery: ``apply_async`` of ``bench.raw_noop`` on the same worker processes and broker;
  done = the worker appended its byte to a file;
- APScheduler 3: ``BackgroundScheduler`` with a ``SQLAlchemyJobStore`` on the same database
  (its own table) and a ``ThreadPoolExecutor`` of W threads; jobs added for immediate run;
  done = every job's EVENT_JOB_EXECUTED.
Latency, on an idle system (one task at a time, each waited for until DONE):
- task committed (the creating transaction's on_commit) -> attempt RUNNING (``started_at``);
- last dependency DONE (``finished_at``) -> dependent RUNNING (``started_at``).

Usage (from the repository root):
    .venv/bin/python -m bench.throughput [--quick]
    TASKHUB_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/taskhub_bench_throughput \\
    TASKHUB_BROKER_URL=redis://127.0.0.1:6379/12 .venv/bin/python -m bench.throughput
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.common import metric, percentiles, wait_for, write_result

THROUGHPUT_BAR_CELERY = 0.5
THROUGHPUT_BAR_APSCHEDULER = 1.0
P50_BAR_MS = 25.0
P99_BAR_MS = 100.0


def raw_celery(count: int, done_file: Path) -> float:
    """apply_async ``count`` raw no-op tasks; return seconds until the worker ran them all."""
    from bench.benchapp.tasks import raw_noop

    done_file.unlink(missing_ok=True)
    started = time.perf_counter()
    for _ in range(count):
        raw_noop.apply_async()
    wait_for(lambda: done_file.exists() and done_file.stat().st_size >= count, 900, "raw Celery no-ops")
    return time.perf_counter() - started


def apscheduler(count: int, threads: int) -> float:
    """Add ``count`` jobs for immediate run to a running APScheduler; return seconds until all executed."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    store = SQLAlchemyJobStore(url=harness.sqlalchemy_url(), tablename="apscheduler_bench_jobs")
    scheduler = BackgroundScheduler(
        jobstores={"default": store},
        executors={"default": ThreadPoolExecutor(threads)},
        job_defaults={"misfire_grace_time": None, "coalesce": False},
        timezone="UTC",
    )
    lock = threading.Lock()
    counts = {"executed": 0, "failed": 0}

    def listen(event: Any) -> None:
        with lock:
            counts["executed" if event.code == EVENT_JOB_EXECUTED else "failed"] += 1

    scheduler.add_listener(listen, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    scheduler.start()
    try:
        scheduler.remove_all_jobs()
        # Warm-up: connections and the table exist before the clock starts.
        for _ in range(10):
            scheduler.add_job("bench.harness:aps_noop")
        wait_for(lambda: counts["executed"] + counts["failed"] >= 10, 60, "APScheduler warm-up")
        counts.update(executed=0, failed=0)
        started = time.perf_counter()
        for _ in range(count):
            scheduler.add_job("bench.harness:aps_noop")  # no trigger: run once, now
        wait_for(lambda: counts["executed"] + counts["failed"] >= count, 900, "APScheduler jobs")
        seconds = time.perf_counter() - started
    finally:
        scheduler.shutdown(wait=True)
        store.engine.dispose()
    if counts["failed"]:
        raise RuntimeError(f"APScheduler: {counts['failed']} of {count} jobs failed or were missed")
    return seconds


def committed_to_running(samples: int) -> list[float]:
    """One task at a time: ms from the creating transaction's commit to its attempt's RUNNING."""
    from django.db import transaction
    from django.utils import timezone

    from scheduling import services
    from scheduling.models import Task, TaskResult, TaskStatus

    values = []
    for i in range(samples):
        stamp: dict[str, Any] = {}
        with transaction.atomic():
            # Registered before the service's own on_commit (the dispatcher's wake), so it runs first.
            def committed(s: dict[str, Any] = stamp) -> None:
                s.setdefault("committed", timezone.now())

            transaction.on_commit(committed)
            task = services.task_create(data={"name": f"latency-{i}", "tags": ["NOOP"]})

        def latency_done(t: Task = task) -> bool:
            return Task.objects.filter(pk=t.pk, status=TaskStatus.DONE).exists()

        wait_for(latency_done, 60, "latency task")
        started = TaskResult.objects.get(task=task).started_at
        if started is None:
            raise RuntimeError(f"latency-{i}: DONE without a start time")
        values.append((started - stamp["committed"]).total_seconds() * 1000)
    return values


def dependency_to_dependent(samples: int) -> list[float]:
    """One pair at a time: ms from the dependency's DONE to its dependent's RUNNING."""
    from django.db import transaction

    from scheduling import services
    from scheduling.models import Task, TaskResult, TaskStatus

    values = []
    for i in range(samples):
        # Both in one transaction, so the dependent exists and waits when the dependency runs.
        with transaction.atomic():
            first = services.task_create(data={"name": f"up-{i}", "tags": ["NOOP"]})
            second = services.task_create(data={"name": f"down-{i}", "tags": ["NOOP"], "dependencies": [first.pk]})

        def dependent_done(s: Task = second) -> bool:
            return Task.objects.filter(pk=s.pk, status=TaskStatus.DONE).exists()

        wait_for(dependent_done, 60, "dependent")
        done = TaskResult.objects.get(task=first).finished_at
        running = TaskResult.objects.get(task=second).started_at
        if done is None or running is None:
            raise RuntimeError(f"up-{i} / down-{i}: DONE without finish / start times")
        values.append((running - done).total_seconds() * 1000)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: 300 tasks, 100 latency samples")
    parser.add_argument("--tasks", type=int, help="tasks per throughput run (default 2000; quick 300)")
    parser.add_argument("--samples", type=int, help="latency samples of each kind (default 500; quick 100)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (prefork) = APScheduler threads")
    args = parser.parse_args()
    tasks = args.tasks or (300 if args.quick else 2000)
    samples = args.samples or (100 if args.quick else 500)

    harness.setup_django()
    from django.conf import settings

    from scheduling.models import AttemptStatus, TaskResult

    done_file = Path(settings.STORAGE_DIR) / "raw-done"
    worker = harness.start_worker(args.workers, "throughput-worker.log")
    try:
        # Warm-up (and readiness): both paths, so start-up, imports and connections are not measured.
        raw_celery(20, done_file)
        harness.run_noops(20, "warm", timeout=120)
        harness.clear_tasks()
        harness.check_worker(worker)

        raw_seconds = raw_celery(tasks, done_file)
        hub_seconds = harness.run_noops(tasks, "noop")
        assert TaskResult.objects.filter(status=AttemptStatus.DONE).count() == tasks
        harness.clear_tasks()
        created = committed_to_running(samples)
        dependent = dependency_to_dependent(samples)
        harness.check_worker(worker)
    finally:
        harness.stop_worker(worker)
    aps_seconds = apscheduler(tasks, args.workers)

    rates = {
        "TaskHub": round(tasks / hub_seconds, 1),
        "raw Celery": round(tasks / raw_seconds, 1),
        "APScheduler": round(tasks / aps_seconds, 1),
    }
    vs_celery = round(rates["TaskHub"] / rates["raw Celery"], 3)
    vs_aps = round(rates["TaskHub"] / rates["APScheduler"], 3)
    latency = {
        "committed -> RUNNING": percentiles(created),
        "dependency DONE -> dependent RUNNING": percentiles(dependent),
    }
    metrics = [
        metric(
            "TaskHub throughput vs raw Celery",
            rates["TaskHub"],
            "tasks/s",
            baseline="raw Celery apply_async",
            baseline_value=rates["raw Celery"],
            ratio=vs_celery,
            bar=f">= {THROUGHPUT_BAR_CELERY}x raw Celery",
            ok=vs_celery >= THROUGHPUT_BAR_CELERY,
        ),
        metric(
            "TaskHub throughput vs APScheduler",
            rates["TaskHub"],
            "tasks/s",
            baseline="APScheduler 3 + SQLAlchemyJobStore",
            baseline_value=rates["APScheduler"],
            ratio=vs_aps,
            bar=f">= {THROUGHPUT_BAR_APSCHEDULER}x APScheduler",
            ok=vs_aps >= THROUGHPUT_BAR_APSCHEDULER,
        ),
    ]
    for label, values in latency.items():
        metrics += [
            metric(
                f"latency {label} p50", values["p50"], "ms", bar=f"<= {P50_BAR_MS:g} ms", ok=values["p50"] <= P50_BAR_MS
            ),
            metric(f"latency {label} p95", values["p95"], "ms"),
            metric(
                f"latency {label} p99", values["p99"], "ms", bar=f"<= {P99_BAR_MS:g} ms", ok=values["p99"] <= P99_BAR_MS
            ),
        ]
    write_result(
        "throughput",
        quick=args.quick,
        params={
            "tasks": tasks,
            "latency_samples": samples,
            "worker_processes": args.workers,
            "apscheduler_threads": args.workers,
            "scheduler_concurrency": settings.TASKHUB.scheduler.concurrency,
        },
        metrics=metrics,
        series={"throughput_tasks_per_s": rates, "latency_ms": latency},
    )
    harness.cleanup()


if __name__ == "__main__":
    main()
