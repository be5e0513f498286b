"""Cron fires: turn SCHEDULED tasks whose ``next_fire_at`` has come into runs, in bulk.

One indexed query finds the due tasks; fire times are computed once per distinct
(cron, zone, due time), so ten thousand tasks on the same cron cost one croniter
walk; the runs are inserted with one ``bulk_create`` whose unique
(task, fire_time) key makes a fire happen once even if two beats race.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from scheduling import cron, dispatcher, lifecycle, services
from scheduling.models import IN_FLIGHT, WAITING, AttemptStatus, OverlapPolicy, Task, TaskResult, TaskStatus, TaskType

logger = logging.getLogger(__name__)

FIRE_LOCK_KEY = 0x7A5C_F14E
MAX_CATCH_UP = 1000  # fire times walked per task after downtime, at most


def due_tasks(now: datetime):
    return Task.objects.filter(task_type=TaskType.SCHEDULED, enabled=True, next_fire_at__lte=now)


def _fires(task: Task, now: datetime, cache: dict) -> tuple[list[datetime], datetime]:
    """Return the fire times from task.next_fire_at up to now, and the first one after now."""
    key = (task.cron_expr, task.timezone, task.next_fire_at)
    if key not in cache:
        times = [task.next_fire_at]
        following = cron.fire_times(task.cron_expr, task.timezone, task.next_fire_at)
        for moment in islice(following, MAX_CATCH_UP):
            if moment > now:
                break
            times.append(moment)
        else:
            moment = cron.next_fire(task.cron_expr, task.timezone, now)
        cache[key] = (times, moment)
    return cache[key]


def fire_due(now: datetime | None = None, *, limit: int = 20_000) -> int:
    """Create the runs of every due SCHEDULED task and advance its next_fire_at; return the runs fired."""
    now = now or timezone.now()
    conf = settings.TASKHUB["scheduler"]
    grace = timedelta(seconds=conf["misfire_grace_seconds"])
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FIRE_LOCK_KEY])
        due = list(
            due_tasks(now)
            .only("id", "name", "cron_expr", "timezone", "next_fire_at", "priority", "overlap_policy")
            .order_by("next_fire_at")[:limit]
        )
        if not due:
            return 0
        active = Counter(
            dict(
                TaskResult.objects.filter(task__in=due, status__in=WAITING + IN_FLIGHT)
                .values_list("task_id")
                .annotate(n=Count("pk"))
                .values_list("task_id", "n")
            )
        )
        cache: dict = {}
        runs: list[TaskResult] = []
        advance: dict[datetime, list] = defaultdict(list)
        replaced: list[Task] = []
        for task in due:
            times, following = _fires(task, now, cache)
            on_time = [t for t in times if now - t <= grace]
            if conf["coalesce"] and on_time:
                on_time = on_time[-1:]
            if len(on_time) < len(times):
                logger.warning(
                    "%s: %d fire(s) missed by more than %s s were dropped",
                    task.name,
                    len(times) - len(on_time),
                    conf["misfire_grace_seconds"],
                )
            for fire_time in on_time:
                run = TaskResult(
                    task=task,
                    attempt=1,
                    status=AttemptStatus.PENDING,
                    priority=task.priority,
                    fire_time=fire_time,
                    available_at=fire_time,
                    created_at=now,
                )
                if active[task.pk] >= conf["max_instances"]:
                    if task.overlap_policy == OverlapPolicy.SKIP:
                        run.status, run.finished_at = AttemptStatus.SKIPPED, now
                        run.error_message = (
                            f"skipped: {active[task.pk]} run(s) already waiting or in flight "
                            f"(scheduler.max_instances = {conf['max_instances']})"
                        )
                        runs.append(run)
                        continue
                    if task.overlap_policy == OverlapPolicy.REPLACE:
                        replaced.append(task)
                        active[task.pk] = 0
                active[task.pk] += 1
                runs.append(run)
            advance[following].append(task.pk)
        for task in replaced:
            services.task_cancel(task=task, reason="replaced by a newer cron fire (overlap policy: replace)")
        created = TaskResult.objects.bulk_create(runs, ignore_conflicts=True)
        for moment, ids in advance.items():
            Task.objects.filter(pk__in=ids).update(next_fire_at=moment)
        fired_ids = {run.task_id for run in runs if run.status == AttemptStatus.PENDING}
        _settle_statuses(fired_ids, now)
        transaction.on_commit(dispatcher.wake)
    return sum(run.status == AttemptStatus.PENDING for run in created)


def _settle_statuses(task_ids: set, now: datetime) -> None:
    """Give fired tasks the status their attempts imply; fail runs whose upstream already failed."""
    if not task_ids:
        return
    busy = set(
        TaskResult.objects.filter(task_id__in=task_ids, status__in=(AttemptStatus.RETRY, *IN_FLIGHT)).values_list(
            "task_id", flat=True
        )
    )
    Task.objects.filter(pk__in=task_ids - busy).update(status=TaskStatus.PENDING, status_reason="", updated_at=now)
    for pk in busy:
        lifecycle.refresh_task(pk)
    blocked = Task.objects.filter(
        pk__in=task_ids, dependencies__status__in=(TaskStatus.FAILED, TaskStatus.CANCELLED)
    ).distinct()
    for task in blocked:
        services.fail_if_upstream_failed(task)
