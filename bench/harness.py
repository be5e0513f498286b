"""What the worker benchmarks share: a clean TaskHub database and real Celery worker processes.

Used by bench/throughput.py and bench/worker_memory.py (not a benchmark itself).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
_OWN_STORAGE = "TASKHUB_BENCH_STORAGE" not in os.environ  # bench.settings makes a temporary folder then

from bench.common import ROOT, ensure_postgres_database  # noqa: E402


def setup_django() -> None:
    """Create the PostgreSQL database if needed, set Django up, migrate, empty TaskHub's tables."""
    # SIGTERM (bench/run.py's timeout) unwinds like Ctrl-C, so ``finally`` stops the worker.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ensure_postgres_database(os.environ.get("TASKHUB_DATABASE_URL", ""))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    clear_tasks()
    purge_broker()


def clear_tasks() -> None:
    """Delete every task, attempt and audit entry in bulk (the ORM's cascade is slow for 10,000 rows); vacuum."""
    from django.db import connection, transaction

    from scheduling.models import Task, TaskAudit, TaskResult

    tables = [
        TaskResult._meta.db_table,
        TaskAudit._meta.db_table,
        Task.tags.through._meta.db_table,
        Task.dependencies.through._meta.db_table,
        Task.any_run_dependencies.through._meta.db_table,
        Task._meta.db_table,
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")
    vacuum()


def vacuum() -> None:
    """PostgreSQL: VACUUM ANALYZE, what autovacuum does on a live database between two runs.

    Autovacuum is off on some PostgreSQL installations (this kind of machine's among them). Without it
    every status change leaves dead entries in the partial indexes for good, and the planner, never
    told that pages are all-visible, counts the attempts in flight with a bitmap scan that walks every
    one of them: each run measured would pay for every run before it. After a bulk load it also
    refreshes the planner's statistics. SQLite keeps no statistics unless asked (Django never asks).
    """
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def purge_broker() -> None:
    """Drop messages a crashed earlier run left on the bench's queue (never the whole Redis database)."""
    import logging

    from taskhub.celery import app

    quiet = logging.getLogger("kombu.connection")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the filesystem transport's "No hostname was supplied" is noise here
    try:
        app.control.purge()
    finally:
        quiet.setLevel(level)


def start_worker(concurrency: int, log_name: str) -> subprocess.Popen:
    """Start ``celery worker`` (prefork, ``concurrency`` processes) on the configured broker and database."""
    from django.conf import settings

    log = Path(settings.STORAGE_DIR) / log_name
    return subprocess.Popen(
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
            str(concurrency),
            "--prefetch-multiplier",
            "1",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(worker: subprocess.Popen) -> None:
    """Kill the worker and its pool processes (its own process group): the measured work is done,
    and a warm shutdown costs seconds of waiting that would count against the quick run."""
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    worker.wait()


def run_noops(count: int, prefix: str, timeout: float = 900, *, lists_of: int = 0) -> float:
    """Create ``count`` NOOP tasks through the service layer; wait until all are DONE; return seconds.

    ``lists_of``: create them ``lists_of`` at a time with ``services.task_create_many`` (what
    ``POST /tasks`` with a list does), else one ``services.task_create`` each.
    """
    from scheduling import services
    from scheduling.models import AttemptStatus, TaskResult

    before = TaskResult.objects.filter(status=AttemptStatus.DONE).count()
    started = time.perf_counter()
    if lists_of:
        for start in range(0, count, lists_of):
            names = range(start, min(start + lists_of, count))
            services.task_create_many(items=[{"name": f"{prefix}-{i}", "tags": ["NOOP"]} for i in names])
    else:
        for i in range(count):
            services.task_create(data={"name": f"{prefix}-{i}", "tags": ["NOOP"]})
    # Counting scans the attempts: poll every 50 ms, not wait_for's 10 ms, so the count does not
    # take a noticeable share of the two cores from the workers it measures.
    deadline = time.monotonic() + timeout
    while TaskResult.objects.filter(status=AttemptStatus.DONE).count() < before + count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} TaskHub no-op tasks did not finish within {timeout} s")
        time.sleep(0.05)
    return time.perf_counter() - started


def check_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is not None:
        from django.conf import settings

        log = Path(settings.STORAGE_DIR)
        tail = "".join(p.read_text(errors="replace")[-2000:] for p in log.glob("*.log"))
        raise RuntimeError(f"the Celery worker exited with status {worker.returncode}:\n{tail}")


def cleanup() -> None:
    """Remove the temporary storage folder bench.settings created (not one the caller chose)."""
    storage = os.environ.get("TASKHUB_BENCH_STORAGE")
    if _OWN_STORAGE and storage and Path(storage).name.startswith("taskhub-bench-"):
        shutil.rmtree(storage, ignore_errors=True)


def aps_noop() -> None:
    """APScheduler's job: nothing (the listener counts executions)."""


def sqlalchemy_url() -> str:
    """The Django database as an SQLAlchemy URL (same PostgreSQL database or the same SQLite file)."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgresql+psycopg://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
