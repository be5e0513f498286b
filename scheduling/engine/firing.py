"""Cron fires: turn SCHEDULED tasks whose ``next_fire_at`` has come into runs, in bulk.

Steps of :func:`fire_due`, in one transaction (serialised between beats):
1. Group the due tasks by (cron, zone, due time): fire times are computed once
   per group, so ten thousand tasks on one cron cost one croniter walk.
2. Tasks whose runs would exceed ``scheduler.max_instances`` are few; they are
   loaded and handled one by one (skip and record it, queue, or replace).
3. Every other task of a group gets its runs with one ``INSERT ... SELECT`` and
   its next fire with one ``UPDATE``, without loading a row into Python. The
   unique (task, fire_time) key makes a fire happen once even if two beats race.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, QuerySet

from scheduling.engine import attempts, clock, cron, dispatcher, lifecycle
from scheduling.models import AttemptStatus, OverlapPolicy, Task, TaskResult, TaskStatus, TaskType
from taskhub.config import SchedulerSettings

logger = logging.getLogger(__name__)

FIRE_LOCK_KEY = 0x7A5C_F14E
MAX_CATCH_UP = 1000  # fire times walked per task after downtime, at most


def due_tasks(now: datetime) -> QuerySet[Task]:
    return Task.objects.filter(task_type=TaskType.SCHEDULED, enabled=True, next_fire_at__lte=now)


def _fires(expr: str, tz_name: str, first: datetime, now: datetime) -> tuple[list[datetime], datetime]:
    """Return the fire times from ``first`` up to now, and the first one after now."""
    times = [first]
    for moment in islice(cron.fire_times(expr, tz_name, first), MAX_CATCH_UP):
        if moment > now:
            return times, moment
        times.append(moment)
    return times, cron.next_fire(expr, tz_name, now)


def _on_time(times: list[datetime], now: datetime, conf: SchedulerSettings, what: str) -> list[datetime]:
    """Drop fires missed by more than the grace; with coalesce keep only the latest."""
    grace = timedelta(seconds=conf.misfire_grace_seconds)
    on_time = [t for t in times if now - t <= grace]
    if len(on_time) < len(times):
        logger.warning(
            "%s: %d fire(s) missed by more than %s s were dropped",
            what,
            len(times) - len(on_time),
            conf.misfire_grace_seconds,
        )
    if conf.coalesce and on_time:
        on_time = on_time[-1:]
    return on_time


def fire_due(now: datetime | None = None) -> int:
    """Create the runs of every due SCHEDULED task and advance its next_fire_at; return the runs fired."""
    now = now or clock.now()
    conf = settings.TASKHUB.scheduler
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FIRE_LOCK_KEY])
        due = due_tasks(now)
        groups = list(due.order_by().values_list("cron_expr", "timezone", "next_fire_at").annotate(n=Count("pk")))
        if not groups:
            return 0
        # Due tasks whose dependency already failed: looked up through the due index before the fire
        # (after it, "fired now" could only be found by status, which every waiting task shares).
        blocked = list(
            due.filter(dependencies__status__in=lifecycle.TASK_FAILED)
            .order_by()
            .values_list("pk", flat=True)
            .distinct()
        )
        active = lifecycle.instances(due, with_waiting=True)
        plans = {}
        for expr, tz_name, first, _ in groups:
            times, following = _fires(expr, tz_name, first, now)
            plans[(expr, tz_name, first)] = (_on_time(times, now, conf, f"cron {expr!r} ({tz_name})"), following)
        # Tasks that already have runs are the only ones that can hit max_instances.
        crowded = list(
            due.filter(pk__in=list(active)).only(
                "id", "name", "cron_expr", "timezone", "next_fire_at", "priority", "overlap_policy"
            )
        )
        crowded = [
            t
            for t in crowded
            if active[t.pk] + len(plans[(t.cron_expr, t.timezone, t.next_fire_at)][0]) > conf.max_instances
        ]
        fired = sum(
            _fire_one(task, *plans[(task.cron_expr, task.timezone, task.next_fire_at)], active[task.pk], now, conf)
            for task in crowded
        )
        for (expr, tz_name, first), (on_time, following) in plans.items():
            group = due.filter(cron_expr=expr, timezone=tz_name, next_fire_at=first).exclude(
                pk__in=[t.pk for t in crowded]
            )
            for fire_time in on_time:
                fired += attempts.insert_first_runs(group, fire_time, now)
            if on_time:
                # One UPDATE per group: advance the fire, and show the new run (lifecycle's rule).
                lifecycle.runs_added(group, now=now, next_fire_at=following)
            else:
                group.update(next_fire_at=following)
        if fired and blocked:
            _fail_blocked(blocked, now)
        transaction.on_commit(dispatcher.wake)
    return fired


def _fire_one(
    task: Task, on_time: list[datetime], following: datetime, active: int, now: datetime, conf: SchedulerSettings
) -> int:
    """Fire one task that is at its max_instances, following its overlap policy."""
    runs: list[TaskResult] = []
    for fire_time in on_time:
        if active >= conf.max_instances:
            if task.overlap_policy == OverlapPolicy.SKIP:
                runs.append(
                    attempts.build(
                        task,
                        now=now,
                        status=AttemptStatus.SKIPPED,
                        fire_time=fire_time,
                        available_at=fire_time,
                        finished_at=now,
                        error_message=f"skipped: {active} run(s) already waiting or in flight "
                        f"(scheduler.max_instances = {conf.max_instances})",
                    )
                )
                continue
            if task.overlap_policy == OverlapPolicy.REPLACE:
                dispatcher.cancel(task, reason="replaced by a newer cron fire (overlap policy: replace)")
                active = 0
        active += 1
        runs.append(attempts.build(task, now=now, fire_time=fire_time, available_at=fire_time))
    TaskResult.objects.bulk_create(runs, ignore_conflicts=True)
    fired = sum(run.status == AttemptStatus.PENDING for run in runs)
    Task.objects.filter(pk=task.pk).update(next_fire_at=following)
    if fired:
        lifecycle.runs_added(Task.objects.filter(pk=task.pk).exclude(status__in=lifecycle.BUSY), now=now)
    return fired


def _fail_blocked(candidates: list, now: datetime) -> None:
    """Fail the new runs of the candidates fired at ``now`` if a dependency is (still) FAILED or CANCELLED."""
    fired = Task.objects.filter(pk__in=candidates, status=TaskStatus.PENDING, updated_at=now)
    for task in fired:
        lifecycle.fail_if_upstream_failed(task)
