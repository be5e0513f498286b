"""Throughput and latency of immediate no-op tasks: TaskHub beside Celery (raw, and with django-celery-results)
and APScheduler 3.

In one run, on the same database and broker:
- TaskHub: ``services.task_create`` of a NOOP task -> its attempt recorded DONE, through a
  ``celery worker --pool prefork --concurrency W``; and again with the tasks created 500 at a time
  (``services.task_create_many``, what ``POST /tasks`` with a list does);
- raw Celery: ``apply_async`` of ``bench.raw_noop`` on the same worker processes and broker;
  done = the worker appended its byte to a file;
- Celery + django-celery-results: ``apply_async`` of ``bench.tracked_noop`` with ``task_track_started``
  and the results in the same database (``CELERY_RESULT_BACKEND = "django-db"``, bench/settings.py only):
  what a Django team keeps when it wants a record of every run; done = SUCCESS rows counted;
- APScheduler 3: ``BackgroundScheduler`` with a ``SQLAlchemyJobStore`` on the same database
  (its own table) and a ``ThreadPoolExecutor`` of W threads; jobs added for immediate run;
  done = every job's EVENT_JOB_EXECUTED.
Latency, on an idle system (one task at a time, each waited for until DONE):
- task committed (the creating transaction's on_commit) -> attempt RUNNING (``started_at``);
- last dependency DONE (``finished_at``) -> dependent RUNNING (``started_at``).
With attempts already waiting: TaskHub's throughput with 10,000 attempts waiting to retry
(RETRY, ``available_at`` a day ahead: what the engine writes for a retry's back-off) against the
same run with 100 waiting, as a ratio. The waiting tasks are HIGH priority, the measured ones MEDIUM:
the dispatcher's hardest case, as the waiting attempts come first in its pick index
(``result_pick_idx``: priority, available_at, of PENDING and RETRY) yet are never ready, so every
pick walks past them (at the same priority they would sort after the ready ones). Two alternated
runs of each, the best of each counted: on a shared machine a run is only ever slowed by the others.
SQL statements per task at each stage, counted in this process on a batch of ``--sql-batch`` tasks
(``connection.execute_wrapper``: statements through Django's cursor; SQLite's BEGIN is one, PostgreSQL's
is implicit in the driver and not seen, COMMIT never is):
create (``services.task_create``), dispatch (the wake after the create's commit, with its
``dispatcher.dispatch``: an idle system's dispatch of one task), dispatch batched (one ``dispatch()``
queueing a whole batch), the executor's claim, run (the handler, its log) and complete, one attempt
at a time as ``manage.py run_task`` runs it, and the wake after the complete's commit.

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
THROUGHPUT_BAR_CELERY_RESULTS = 1.0  # PostgreSQL + Redis only (issue "Throughput")
# Latency bars (ms) per database vendor: p50, p99.
LATENCY_BARS_MS = {"postgresql": (10.0, 50.0), "sqlite": (25.0, 100.0)}
# Throughput with 10,000 attempts waiting / with 100: at least this.
WAITING_BARS = {"postgresql": 0.9, "sqlite": 0.8}
WAITING_FEW, WAITING_MANY = 100, 10_000
# The second TaskHub run creates its tasks this many at a time (services.task_create_many, as POST /tasks
# with a list): the engine's throughput without one create transaction per task in front of it.
BULK_LIST = 500


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


def celery_results(count: int) -> float:
    """apply_async ``count`` tracked no-ops; return seconds until django-celery-results holds a SUCCESS for each."""
    from django_celery_results.models import TaskResult as CeleryResult

    from bench.benchapp.tasks import tracked_noop

    CeleryResult.objects.all().delete()
    started = time.perf_counter()
    for _ in range(count):
        tracked_noop.apply_async()
    deadline = time.monotonic() + 900
    while CeleryResult.objects.filter(status="SUCCESS").count() < count:  # polled every 50 ms, as run_noops
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} Celery + django-celery-results no-ops did not finish within 900 s")
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    CeleryResult.objects.all().delete()
    return seconds


def make_waiting(count: int) -> None:
    """``count`` HIGH-priority NOOP tasks each with one attempt waiting to retry a day from now (bulk)."""
    from datetime import timedelta

    from django.utils import timezone

    from scheduling.engine import attempts
    from scheduling.models import AttemptStatus, Priority, Task, TaskResult, TaskStatus, TaskType

    now = timezone.now()
    tasks = Task.objects.bulk_create(
        [
            Task(
                name=f"waiting-{i}",
                task_type=TaskType.IMMEDIATE,
                handler="NOOP",
                status=TaskStatus.RETRY,
                priority=Priority.HIGH,  # ahead of the measured MEDIUM ones in the pick index
            )
            for i in range(count)
        ],
        batch_size=2000,
    )
    TaskResult.objects.bulk_create(
        [
            attempts.build(task, now=now, status=AttemptStatus.RETRY, available_at=now + timedelta(days=1))
            for task in tasks
        ],
        batch_size=2000,
    )
    harness.vacuum()


def with_waiting(tasks: int, rounds: int = 2) -> dict[str, Any]:
    """TaskHub no-op throughput (tasks/s) beside WAITING_FEW, then WAITING_MANY attempts waiting to retry.

    ``rounds`` alternations (few, many, few, many...); each side's best run is its figure, since on a
    shared machine a run is only ever slowed down by the others.
    """
    runs: dict[str, list[float]] = {str(WAITING_FEW): [], str(WAITING_MANY): []}
    for _ in range(rounds):
        for waiting in (WAITING_FEW, WAITING_MANY):
            harness.clear_tasks()
            make_waiting(waiting)
            runs[str(waiting)].append(round(tasks / harness.run_noops(tasks, f"beside-{waiting}"), 1))
    harness.clear_tasks()
    return {key: max(values) for key, values in runs.items()} | {"runs": runs}


STAGES = ("create", "dispatch", "dispatch, batched", "claim", "run", "complete", "wake after complete")
#: The stages one task goes through on an idle system (the sum is "all stages").
ONE_TASK = ("create", "dispatch", "claim", "run", "complete", "wake after complete")


def sql_per_stage(batch: int) -> dict[str, float]:
    """SQL statements per task at each stage, counted in this process on NOOP tasks (no worker runs).

    ``batch`` tasks created one at a time, each dispatched by the wake after its commit, as on an idle
    system (create; dispatch = the wake: its in-flight count and ``dispatcher.dispatch``); ``batch`` more
    created with the wake switched off and queued by one ``dispatch()`` (dispatch, batched: a busy
    system's best case). Then every attempt runs in this process as ``manage.py run_task`` runs it:
    ``executor.run_attempt``, its claim, handler call (run) and complete wrapped, and the wake after
    the complete's commit counted on its own.
    """
    from django.db import connection

    from scheduling import services
    from scheduling.engine import dispatcher, executor
    from scheduling.models import AttemptStatus, TaskResult

    counts = dict.fromkeys(STAGES, 0)
    stage: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if stage and stage[-1] in counts:
            counts[stage[-1]] += 1
        return execute(sql, params, many, context)

    def staged(name: str, func: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stage.append(name)
            try:
                return func(*args, **kwargs)
            finally:
                stage.pop()

        return wrapper

    originals = {
        "wake": dispatcher.wake,
        "claim": executor.claim,
        "call_handler": executor.call_handler,
        "complete": executor.complete,
    }
    harness.clear_tasks()
    executor.claim = staged("claim", originals["claim"])
    executor.call_handler = staged("run", originals["call_handler"])
    executor.complete = staged("complete", originals["complete"])
    create = staged("create", services.task_create)
    queued = []
    try:
        with connection.execute_wrapper(count):
            dispatcher.wake = staged("dispatch", originals["wake"])
            for i in range(batch):
                create(data={"name": f"sql-{i}", "tags": ["NOOP"]})
            queued += list(TaskResult.objects.filter(status=AttemptStatus.QUEUED))
            dispatcher.wake = lambda: None
            stage.append("")  # the second batch's creation is not counted again
            for i in range(batch):
                services.task_create(data={"name": f"sql-batched-{i}", "tags": ["NOOP"]})
            stage.pop()
            batched = staged("dispatch, batched", dispatcher.dispatch)()
            if len(queued) != batch or len(batched) != batch:
                raise RuntimeError(f"dispatch queued {len(queued)} and {len(batched)} of {batch} each (concurrency?)")
            dispatcher.wake = staged("wake after complete", originals["wake"])
            for result in [*queued, *batched]:
                outcome = executor.run_attempt(result.pk)
                if outcome != AttemptStatus.DONE:
                    raise RuntimeError(f"attempt {result.pk}: {outcome}")
    finally:
        dispatcher.wake = originals["wake"]
        executor.claim = originals["claim"]
        executor.call_handler = originals["call_handler"]
        executor.complete = originals["complete"]
    assert TaskResult.objects.filter(status=AttemptStatus.DONE).count() == 2 * batch
    harness.clear_tasks()
    harness.purge_broker()  # dispatch sent the batches' messages: no worker may take them
    per_task = {"create": batch, "dispatch": batch, "dispatch, batched": batch}
    return {name: round(counts[name] / per_task.get(name, 2 * batch), 2) for name in STAGES}


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
    parser.add_argument("--sql-batch", type=int, default=20, help="tasks counted for SQL statements per stage")
    args = parser.parse_args()
    tasks = args.tasks or (300 if args.quick else 2000)
    samples = args.samples or (100 if args.quick else 500)

    harness.setup_django()
    from django.conf import settings
    from django.db import connection

    from scheduling.models import AttemptStatus, TaskResult

    statements = sql_per_stage(args.sql_batch)  # before the worker starts: it must not take the batch
    done_file = Path(settings.STORAGE_DIR) / "raw-done"
    worker = harness.start_worker(args.workers, "throughput-worker.log")
    try:
        # Warm-up (and readiness): every path, so start-up, imports and connections are not measured.
        raw_celery(20, done_file)
        celery_results(20)
        harness.run_noops(20, "warm", timeout=120)
        harness.clear_tasks()
        harness.check_worker(worker)

        raw_seconds = raw_celery(tasks, done_file)
        results_seconds = celery_results(tasks)
        hub_seconds = harness.run_noops(tasks, "noop")
        assert TaskResult.objects.filter(status=AttemptStatus.DONE).count() == tasks
        harness.clear_tasks()
        bulk_seconds = harness.run_noops(tasks, "bulk", lists_of=BULK_LIST)
        assert TaskResult.objects.filter(status=AttemptStatus.DONE).count() == tasks
        harness.clear_tasks()
        created = committed_to_running(samples)
        dependent = dependency_to_dependent(samples)
        waiting = with_waiting(tasks)
        harness.check_worker(worker)
    finally:
        harness.stop_worker(worker)
    aps_seconds = apscheduler(tasks, args.workers)

    vendor = connection.vendor
    rates = {
        "TaskHub": round(tasks / hub_seconds, 1),
        f"TaskHub, lists of {BULK_LIST}": round(tasks / bulk_seconds, 1),
        "raw Celery": round(tasks / raw_seconds, 1),
        "Celery + django-celery-results": round(tasks / results_seconds, 1),
        "APScheduler": round(tasks / aps_seconds, 1),
    }
    vs_celery = round(rates["TaskHub"] / rates["raw Celery"], 3)
    vs_results = round(rates["TaskHub"] / rates["Celery + django-celery-results"], 3)
    vs_aps = round(rates["TaskHub"] / rates["APScheduler"], 3)
    bulk = rates[f"TaskHub, lists of {BULK_LIST}"]
    results_bar = vendor == "postgresql"  # the issue sets this bar for PostgreSQL + Redis only
    latency = {
        "committed -> RUNNING": percentiles(created),
        "dependency DONE -> dependent RUNNING": percentiles(dependent),
    }
    p50_bar, p99_bar = LATENCY_BARS_MS.get(vendor, LATENCY_BARS_MS["sqlite"])
    waiting_bar = WAITING_BARS.get(vendor, WAITING_BARS["sqlite"])
    waiting_ratio = round(waiting[str(WAITING_MANY)] / waiting[str(WAITING_FEW)], 3)
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
            "TaskHub throughput vs Celery + django-celery-results",
            rates["TaskHub"],
            "tasks/s",
            baseline="Celery, track_started, django-db results",
            baseline_value=rates["Celery + django-celery-results"],
            ratio=vs_results,
            bar=f">= {THROUGHPUT_BAR_CELERY_RESULTS}x Celery + results" if results_bar else "",
            ok=vs_results >= THROUGHPUT_BAR_CELERY_RESULTS if results_bar else None,
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
        *[
            metric(
                f"TaskHub throughput, created in lists of {BULK_LIST}, vs {name}",
                bulk,
                "tasks/s",
                baseline=baseline,
                baseline_value=rates[name],
                ratio=round(bulk / rates[name], 3),
                bar=f">= {threshold}x {name}" if threshold else "",
                ok=bulk / rates[name] >= threshold if threshold else None,
            )
            for name, baseline, threshold in (
                ("raw Celery", "raw Celery apply_async", THROUGHPUT_BAR_CELERY),
                (
                    "Celery + django-celery-results",
                    "Celery, track_started, django-db results",
                    THROUGHPUT_BAR_CELERY_RESULTS if results_bar else 0,
                ),
                ("APScheduler", "APScheduler 3 + SQLAlchemyJobStore", THROUGHPUT_BAR_APSCHEDULER),
            )
        ],
        metric(
            f"TaskHub throughput with {WAITING_MANY:,} attempts waiting",
            waiting[str(WAITING_MANY)],
            "tasks/s",
            baseline=f"with {WAITING_FEW} waiting",
            baseline_value=waiting[str(WAITING_FEW)],
            ratio=waiting_ratio,
            bar=f">= {waiting_bar}x with {WAITING_FEW}",
            ok=waiting_ratio >= waiting_bar,
        ),
    ]
    for label, values in latency.items():
        metrics += [
            metric(f"latency {label} p50", values["p50"], "ms", bar=f"<= {p50_bar:g} ms", ok=values["p50"] <= p50_bar),
            metric(f"latency {label} p95", values["p95"], "ms"),
            metric(f"latency {label} p99", values["p99"], "ms", bar=f"<= {p99_bar:g} ms", ok=values["p99"] <= p99_bar),
        ]
    metrics += [metric(f"SQL statements per task: {name}", value, "statements") for name, value in statements.items()]
    one_task = round(sum(statements[name] for name in ONE_TASK), 2)
    metrics.append(metric("SQL statements per task: all stages (idle system)", one_task, "statements"))
    write_result(
        "throughput",
        quick=args.quick,
        params={
            "tasks": tasks,
            "latency_samples": samples,
            "worker_processes": args.workers,
            "apscheduler_threads": args.workers,
            "scheduler_concurrency": settings.TASKHUB.scheduler.concurrency,
            "sql_batch": args.sql_batch,
            "waiting": [WAITING_FEW, WAITING_MANY],
        },
        metrics=metrics,
        series={
            "throughput_tasks_per_s": rates,
            "latency_ms": latency,
            "sql_statements_per_task": statements,
            "throughput_with_waiting_tasks_per_s": waiting,
        },
    )
    harness.cleanup()


if __name__ == "__main__":
    main()
