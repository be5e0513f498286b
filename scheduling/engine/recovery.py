"""The safety net, run every ``scheduler.poll_interval``: re-send lost work, reclaim zombies, fail runs that
waited past their dependency_timeout (engine/pipelines.py), dispatch.

It sits above the dispatcher and the executor (it uses both); neither imports it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings

from scheduling.engine import clock, dispatcher, executor, pipelines
from scheduling.models import IN_FLIGHT, AttemptStatus, TaskResult, status_in

logger = logging.getLogger(__name__)


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Re-send QUEUED work no worker took, reclaim RUNNING work past its deadline, fail runs past their
    dependency_timeout, then dispatch."""
    now = now or clock.now()
    conf = settings.TASKHUB.scheduler
    stale = list(
        TaskResult.objects.filter(
            status_in(IN_FLIGHT),  # lets SQLite use result_inflight_idx
            status=AttemptStatus.QUEUED,
            queued_at__lt=now - timedelta(seconds=conf.requeue_after_seconds),
        ).select_related("task")
    )
    if stale:
        # Bump queued_at so the same attempt is re-sent once per interval, not on every sweep.
        TaskResult.objects.filter(pk__in=[r.pk for r in stale], status=AttemptStatus.QUEUED).update(queued_at=now)
        dispatcher.send(stale, together=False)  # one each, under its own id: a revoked message's stays revoked
    zombies = TaskResult.objects.filter(
        status_in(IN_FLIGHT), status=AttemptStatus.RUNNING, deadline__lt=now
    ).values_list("pk", flat=True)
    reclaimed = sum(executor.reclaim(result_id, now=now) for result_id in list(zombies))
    overdue = pipelines.fail_overdue(now)
    picked = dispatcher.dispatch(now)
    counts = {"resent": len(stale), "reclaimed": reclaimed, "dependency_timeouts": overdue, "dispatched": len(picked)}
    if any(counts.values()):
        logger.info("sweep: %s", counts)
    return counts
