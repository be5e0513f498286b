"""Run-scoped dependencies: when a dependency counts as met for one waiting run.

The rule, per dependency edge (TaskDependency.mode):

- ``fresh`` (the default): the first attempt of a run of task D is ready only when each such upstream U
  has a DONE attempt that finished after D's previous run was admitted (``run_started_at``: queued, then
  started) — D's latest run that is queued, running, waiting to retry or DONE. A run that failed or was
  cancelled consumed nothing, so its retry finds the same upstream run fresh. With no previous run, any
  DONE run of U counts. So a daily report consumes each export once.
- ``any`` (the former rule): U's latest status is DONE, whatever run that was.

A retry attempt (attempt > 1) belongs to a run that was already admitted: it waits only while an upstream
is not DONE (the ``any`` rule for every edge), so it never waits for an upstream run of its own.

The whole rule is one correlated ``NOT EXISTS`` in the dispatcher's ready query: per candidate, an index
seek for D's latest admitted run (result_run_start_idx) and one per upstream for a DONE attempt after it
(result_task_done_idx).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from django.db.models import Exists, ExpressionWrapper, OuterRef, Q, Subquery, Value
from django.db.models.fields import DateTimeField, IntegerField
from django.db.models.functions import Coalesce

from scheduling.models import CONSUMING, AttemptStatus, DependencyMode, TaskDependency, TaskResult, TaskStatus

#: Before every run: the reference of a task that never ran (any DONE upstream run is fresh for it).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def last_admitted(task_ref: OuterRef) -> Coalesce:
    """When the latest consuming run of the task ``task_ref`` names was admitted (EPOCH if none)."""
    latest = (
        TaskResult.objects.filter(task_id=task_ref, run_started_at__isnull=False, status__in=CONSUMING)
        .order_by("-run_started_at")
        .values("run_started_at")[:1]
    )
    return Coalesce(Subquery(latest), Value(EPOCH, output_field=DateTimeField()))


def blocking_edges():
    """Dependency edges of the outer attempt's task (``OuterRef("task_id")``) that hold that attempt back."""
    fresh_done = TaskResult.objects.filter(
        task_id=OuterRef("to_task_id"), status=AttemptStatus.DONE, finished_at__gt=OuterRef("consumed_after")
    )
    return (
        TaskDependency.objects.filter(from_task_id=OuterRef("task_id"))
        .annotate(
            consumed_after=last_admitted(OuterRef(OuterRef("task_id"))),
            run_attempt=ExpressionWrapper(OuterRef("attempt"), output_field=IntegerField()),
        )
        .filter(
            (Q(mode=DependencyMode.ANY) | Q(run_attempt__gt=1)) & ~Q(to_task__status=TaskStatus.DONE)
            | Q(mode=DependencyMode.FRESH, run_attempt=1) & ~Exists(fresh_done)
        )
    )


def one_fresh_run_per_task(candidates: list[TaskResult]) -> list[TaskResult]:
    """Keep, of a task with fresh dependencies, one first attempt per dispatch: the next one must wait for
    the upstream run after it (both would otherwise consume the same upstream run)."""
    firsts = Counter(c.task_id for c in candidates if c.attempt == 1)
    twice = [task_id for task_id, n in firsts.items() if n > 1]
    if not twice:
        return candidates
    gated = set(
        TaskDependency.objects.filter(from_task_id__in=twice, mode=DependencyMode.FRESH).values_list(
            "from_task_id", flat=True
        )
    )
    kept: list[TaskResult] = []
    seen: set = set()
    for candidate in candidates:
        if candidate.attempt == 1 and candidate.task_id in gated:
            if candidate.task_id in seen:
                continue
            seen.add(candidate.task_id)
        kept.append(candidate)
    return kept
