"""Selectors for the admin dashboard: each is one cheap query on an indexed column, whatever the table sizes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, Max, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from scheduling.models import IN_FLIGHT, WAITING, AttemptStatus, Task, TaskResult, TaskStatus, TaskType

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
    """Count in-flight and waiting attempts, and the waiting ones already due (partial indexes on both)."""
    now = timezone.now()
    row = (
        TaskResult.objects.filter(status__in=IN_FLIGHT + WAITING)
        .order_by()
        .aggregate(
            queued=Count("pk", filter=Q(status=AttemptStatus.QUEUED)),
            running=Count("pk", filter=Q(status=AttemptStatus.RUNNING)),
            waiting=Count("pk", filter=Q(status__in=WAITING)),
            due=Count("pk", filter=Q(status__in=WAITING, available_at__lte=now)),
        )
    )
    row["in_flight"] = row["queued"] + row["running"]
    row["concurrency"] = settings.TASKHUB["scheduler"]["concurrency"]
    return row


def attempts_per_hour(now: datetime | None = None, hours: int = 24) -> list[HourBucket]:
    """Return finished attempts and failures per hour for the last ``hours`` hours, oldest first, gaps as zero."""
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    rows = (
        TaskResult.objects.filter(finished_at__gte=start)  # result_history_idx
        .order_by()
        .annotate(hour=TruncHour("finished_at", tzinfo=UTC))
        .values("hour")
        .annotate(total=Count("pk"), failed=Count("pk", filter=Q(status__in=FAILED_ATTEMPTS)))
    )
    found = {row["hour"].astimezone(UTC): row for row in rows}
    buckets = []
    for index in range(hours):
        hour = start + timedelta(hours=index)
        row = found.get(hour.astimezone(UTC), {"total": 0, "failed": 0})
        buckets.append(HourBucket(hour, row["total"], row["failed"]))
    return buckets


def slowest_tasks(now: datetime | None = None, hours: int = 24, limit: int = 10) -> list[dict[str, Any]]:
    """Return the tasks whose attempts finished in the last ``hours`` took longest (max and mean seconds)."""
    since = (now or timezone.now()) - timedelta(hours=hours)
    return list(
        TaskResult.objects.filter(finished_at__gte=since, duration__isnull=False)
        .order_by()
        .values("task_id", "task__name")
        .annotate(longest=Max("duration"), mean=Avg("duration"), runs=Count("pk"))
        .order_by("-longest")[:limit]
    )


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


def recent_workers(now: datetime | None = None, minutes: int = 60) -> list[dict[str, Any]]:
    """Return workers that ran attempts recently: those in flight now and those that finished one lately."""
    since = (now or timezone.now()) - timedelta(minutes=minutes)
    rows = (
        TaskResult.objects.filter(Q(status__in=IN_FLIGHT) | Q(finished_at__gte=since))
        .exclude(worker="")
        .order_by()
        .values("worker")
        .annotate(
            running=Count("pk", filter=Q(status=AttemptStatus.RUNNING)),
            finished=Count("pk", filter=Q(finished_at__gte=since)),
            last_seen=Max("finished_at"),
            last_started=Max("started_at"),
        )
        .order_by("worker")
    )
    workers = []
    for row in rows:
        seen = [t for t in (row["last_seen"], row["last_started"]) if t]
        workers.append({**row, "seen": max(seen) if seen else None})
    return workers


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
