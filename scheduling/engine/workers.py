"""Workers: the heartbeat rows Celery workers keep fresh, and what the dashboard, API and metrics read of them.

Each worker's main process (scheduling/engine/heartbeat.py) writes its row at start, every
``scheduler.worker_heartbeat`` seconds, and at a clean shutdown. A row carries its own
``offline_after`` (last heartbeat + two of the intervals that worker uses), so a reader needs
no configuration of its own to tell whether a worker is online: it is when it has not stopped
and ``offline_after`` has not passed on the database's clock (scheduling/engine/clock.py). A worker
killed outright (SIGKILL, host lost) stops writing and reads offline two intervals later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet

from scheduling.engine import clock
from scheduling.models import AttemptStatus, TaskResult, Worker, status_in

#: Offline workers stay listed this long after their last heartbeat, then their row is deleted.
FORGET_AFTER = timedelta(days=7)


@dataclass(frozen=True)
class Report:
    """What a worker's main process says about itself in a heartbeat."""

    name: str
    host: str
    pid: int
    pool: str
    concurrency: int
    processes: list[int]
    queues: list[str]
    interval: float


def _fields(report: Report, now: datetime) -> dict[str, Any]:
    return {
        "host": report.host[:200],
        "pid": report.pid,
        "pool": report.pool[:32],
        "concurrency": report.concurrency,
        "processes": sorted(report.processes),
        "queues": sorted(report.queues),
        "heartbeat_interval": report.interval,
        "last_seen": now,
        "offline_after": now + timedelta(seconds=2 * report.interval),
    }


def register(report: Report, *, now: datetime | None = None) -> Worker:
    """Record a worker that has just started (a restarted node takes over its row); forget long-gone ones."""
    now = now or clock.now()
    Worker.objects.filter(last_seen__lt=now - FORGET_AFTER).exclude(name=report.name).delete()
    worker, _ = Worker.objects.update_or_create(
        name=report.name[:200], defaults={**_fields(report, now), "started_at": now, "stopped_at": None}
    )
    return worker


def heartbeat(report: Report, *, now: datetime | None = None) -> None:
    """Refresh a running worker's row (recreated if someone deleted it meanwhile)."""
    now = now or clock.now()
    updated = Worker.objects.filter(name=report.name[:200]).update(**_fields(report, now), stopped_at=None)
    if not updated:
        register(report, now=now)


def stopped(name: str, *, now: datetime | None = None) -> None:
    """Mark a worker that shut down cleanly: offline at once."""
    now = now or clock.now()
    Worker.objects.filter(name=name[:200]).update(stopped_at=now, last_seen=now, offline_after=now)


def online(now: datetime) -> Q:
    """The condition for a worker that is online at ``now``."""
    return Q(stopped_at__isnull=True, offline_after__gt=now)


def running_by_worker(names: list[str] | None = None) -> dict[str, int]:
    """Count RUNNING attempts per worker node (a result_inflight_idx range, grouped)."""
    rows = TaskResult.objects.filter(status_in((AttemptStatus.RUNNING,))).exclude(worker_node="")
    if names is not None:
        rows = rows.filter(worker_node__in=names)
    return dict(rows.order_by().values_list("worker_node").annotate(n=Count("pk")))


def listing(queryset: QuerySet[Worker] | None = None, *, now: datetime | None = None) -> list[Worker]:
    """Return workers with ``online`` and ``running`` (attempts running now) set, online ones first, by name."""
    now = now or clock.now()
    workers = list(Worker.objects.all() if queryset is None else queryset)
    running = running_by_worker([w.name for w in workers])
    for worker in workers:
        # Listing-only attributes (read by the admin page and the API), not model fields.
        worker.online = worker.is_online(now)  # type: ignore[attr-defined]  # set here for the listing
        worker.running = running.get(worker.name, 0)  # type: ignore[attr-defined]  # set here for the listing
        worker.seen_ago = max((now - worker.last_seen).total_seconds(), 0.0)  # type: ignore[attr-defined]  # ditto
    workers.sort(key=lambda w: (not w.online, w.name))  # type: ignore[attr-defined]  # set just above
    return workers


def counts(now: datetime | None = None) -> dict[str, int]:
    """Count workers online and offline (one query)."""
    now = now or clock.now()
    row = Worker.objects.order_by().aggregate(total=Count("pk"), online=Count("pk", filter=online(now)))
    return {"online": row["online"], "offline": row["total"] - row["online"]}
