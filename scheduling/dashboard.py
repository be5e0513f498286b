"""Selectors for the admin dashboard: each is one cheap query on an indexed column, whatever the table sizes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.db.models.functions import Substr, TruncHour
from django.utils import timezone

from scheduling.engine import clock, workers
from scheduling.models import (
    IN_FLIGHT,
    WAITING,
    AttemptStatus,
    Task,
    TaskResult,
    TaskStatus,
    TaskType,
    Worker,
    status_in,
)

FAILED_ATTEMPTS = (AttemptStatus.FAILED, AttemptStatus.TIMEOUT)


@dataclass
class HourBucket:
    hour: datetime
    total: int
    failed: int


def status_counts() -> dict[str, int]:
    """Count tasks by status (an index-only scan of task_status_prio_idx); every status is present."""
    counts = dict.fromkeys(TaskStatus.values, 0)
    for row in Task.objects.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    return counts


def attempt_counts() -> dict[str, int]:
    """Count in-flight and waiting attempts, and the waiting ones already due.

    Two queries, not one: each status set matches one partial index (result_inflight_idx, result_pick_idx),
    while their union would scan the whole table.
    """
    now = timezone.now()
    row = (
        TaskResult.objects.filter(status_in(IN_FLIGHT))
        .order_by()
        .aggregate(
            queued=Count("pk", filter=Q(status=AttemptStatus.QUEUED)),
            running=Count("pk", filter=Q(status=AttemptStatus.RUNNING)),
        )
    )
    row.update(
        TaskResult.objects.filter(status_in(WAITING))
        .order_by()
        .aggregate(waiting=Count("pk"), due=Count("pk", filter=Q(available_at__lte=now)))
    )
    row["in_flight"] = row["queued"] + row["running"]
    row["concurrency"] = settings.TASKHUB.scheduler.concurrency
    return row


def _hour_of_finish() -> Any:
    """Return an expression for the UTC hour an attempt finished in."""
    if connection.vendor == "sqlite":
        # SQLite stores UTC text 'YYYY-MM-DD HH:MM:SS...'; TruncHour there calls a Python function per row.
        return Substr("finished_at", 1, 13)
    return TruncHour("finished_at", tzinfo=UTC)


def attempts_per_hour(now: datetime | None = None, hours: int = 24) -> list[HourBucket]:
    """Return finished attempts and failures per hour for the last ``hours`` hours, oldest first, gaps as zero."""
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    rows = (
        TaskResult.objects.filter(finished_at__gte=start)  # result_history_idx
        .order_by()
        .annotate(hour=_hour_of_finish())
        .values("hour")
        .annotate(total=Count("pk"), failed=Count("pk", filter=Q(status__in=FAILED_ATTEMPTS)))
    )
    found: dict[datetime, Mapping[str, Any]] = {}
    for row in rows:
        hour = row["hour"]
        if isinstance(hour, str):
            hour = datetime.strptime(hour, "%Y-%m-%d %H").replace(tzinfo=UTC)
        found[hour.astimezone(UTC)] = row
    buckets = []
    for index in range(hours):
        hour = start + timedelta(hours=index)
        counts = found.get(hour.astimezone(UTC), {"total": 0, "failed": 0})
        buckets.append(HourBucket(hour, counts["total"], counts["failed"]))
    return buckets


def slowest_tasks(now: datetime | None = None, hours: int = 24, limit: int = 10) -> list[dict[str, Any]]:
    """Return the tasks with the longest attempts finished in the last ``hours``, one line per task, longest first."""
    since = (now or timezone.now()) - timedelta(hours=hours)
    # Sort the window's attempts (a result_history_idx range) rather than GROUP BY task: grouping makes
    # SQLite walk the whole table in task order. A few extra rows cover tasks with several long attempts.
    rows = (
        TaskResult.objects.filter(finished_at__gte=since, duration__isnull=False)
        .order_by("-duration")
        .values("task_id", "duration", "finished_at", "worker")[: limit * 5]
    )
    slowest: dict[Any, dict[str, Any]] = {}
    for row in rows:
        if row["task_id"] not in slowest and len(slowest) < limit:
            slowest[row["task_id"]] = {**row, "longest": row["duration"]}
    names = dict(Task.objects.filter(pk__in=list(slowest)).values_list("pk", "name"))
    return [{**row, "task__name": names.get(pk, "?")} for pk, row in slowest.items()]


def next_fires(limit: int = 10) -> list[Task]:
    """Return the enabled SCHEDULED tasks that fire next (task_due_fire_idx)."""
    return list(
        Task.objects.filter(enabled=True, task_type=TaskType.SCHEDULED, next_fire_at__isnull=False)
        .order_by("next_fire_at")
        .only("id", "name", "cron_expr", "timezone", "next_fire_at", "status")[:limit]
    )


def recent_failures(limit: int = 10) -> list[TaskResult]:
    """Return the latest failed or timed-out attempts with their error (walks result_history_idx backwards)."""
    return list(
        TaskResult.objects.filter(finished_at__isnull=False, status__in=FAILED_ATTEMPTS)
        .select_related("task")
        .only("id", "attempt", "status", "finished_at", "error_message", "worker", "task__id", "task__name")
        .order_by("-finished_at")[:limit]
    )


def recent_workers(now: datetime | None = None, hours: int = 24) -> list[Worker]:
    """Return the workers online now and those last heard from within ``hours``, from their heartbeats."""
    now = now or clock.now()
    return workers.listing(Worker.objects.filter(last_seen__gte=now - timedelta(hours=hours)), now=now)


def live_counts() -> dict[str, Any]:
    """Return what the pages' live counters show: tasks by status and attempts in flight (three cheap queries)."""
    return {"tasks": status_counts(), "attempts": attempt_counts()}


def summary() -> dict[str, Any]:
    """Gather everything the dashboard shows."""
    buckets = attempts_per_hour()
    total = sum(b.total for b in buckets)
    failed = sum(b.failed for b in buckets)
    return {
        "status_counts": status_counts(),
        "attempts": attempt_counts(),
        "buckets": buckets,
        "total_24h": total,
        "failed_24h": failed,
        "failure_rate": (failed / total * 100) if total else 0.0,
        "slowest": slowest_tasks(),
        "next_fires": next_fires(),
        "failures": recent_failures(),
        "workers": recent_workers(),
    }
