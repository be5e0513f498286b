"""Run-scoped dependencies: when a dependency counts as met for one waiting run, and how long a run may wait.

The rule, per dependency of a task D on a task U:

- U's status is DONE: its latest run succeeded (in both modes, as before: an upstream that is running again,
  waiting or failed holds D back). For an IMMEDIATE D (a one-off, re-run by hand) this is the whole rule.
- ``fresh`` (the default) for a SCHEDULED D: a first attempt of D (a new run) also needs a DONE attempt of U
  that finished after D's *previous run* started. D's previous run is its newest attempt that consumed its
  inputs: DONE or RUNNING (its ``started_at``), or QUEUED (it will read them when it starts, so it counts as
  starting now). A run that failed, timed out, was cancelled or never started consumed nothing, so a retry
  of it runs on the same upstream runs. With no previous run (a new task), any DONE run of U is fresh. So a
  daily report consumes each export once, and waits for today's.
- ``any`` (``Task.any_run_dependencies``): the status rule only, whenever U ran.

A retry attempt (attempt > 1) belongs to a run that was already admitted: the status rule only.

Pipeline runs (``TaskResult.pipeline_run``: a run with ``downstream``, a backfilled fire): the tasks of a
pipeline run are those with an attempt in it, each once. For an attempt of a pipeline run, a dependency that
is part of the same run must have a DONE attempt *in that run* (Airflow's DAG-run rule), instead of the rules
above; a dependency outside the run keeps them. So in a diamond A -> B, A -> C, B -> D, C -> D, D runs once,
after B and C are DONE in the run, and a backfill's dependent run for fire F waits for its upstream's run
for fire F. A task that fails for good fails its dependents' waiting attempts in the same run
(``lifecycle.fail_dependents``).

The whole rule is a few correlated ``EXISTS`` in the dispatcher's ready query (:func:`ready_filter`): per
waiting attempt, an index seek per dependency for U's status, and for a new run D's previous start
(result_task_idx) and U's DONE attempts after it (result_task_done_idx). The dispatcher compiles that query
once (engine/compiled.py), so the rule's size costs no Python per dispatch. :func:`unmet` asks the same
expressions for one task (the waiting reason), :func:`fail_overdue` fails the runs that waited longer than
their ``dependency_timeout`` (the dispatcher sweep calls it).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, Exists, Min, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from scheduling.engine import lifecycle
from scheduling.engine.compiled import Now
from scheduling.models import WAITING, AttemptStatus, Task, TaskResult, TaskStatus, TaskType, status_in

#: Attempts that consumed (or are about to consume) their dependencies' runs.
CONSUMING = (AttemptStatus.QUEUED, AttemptStatus.RUNNING, AttemptStatus.DONE)


def _time(now: datetime | Now) -> Now | Value:
    return now if isinstance(now, Now) else Value(now, output_field=DateTimeField())


def previous_start(task_ref: Any, now: datetime | Now) -> Subquery:
    """When the previous run of the task ``task_ref`` names started (NULL: it has none; QUEUED: ``now``)."""
    latest = (
        TaskResult.objects.filter(task_id=task_ref, status__in=CONSUMING)
        .order_by("-created_at", "-id")
        .annotate(start=Coalesce("started_at", _time(now)))
        .values("start")[:1]
    )
    return Subquery(latest, output_field=DateTimeField())


def _edges() -> QuerySet[Any]:
    return Task.dependencies.through.objects.all()


def _is_any() -> Exists:
    """The edge (an outer dependency row) is in ``any`` mode."""
    return Exists(
        Task.any_run_dependencies.through.objects.filter(
            from_task_id=OuterRef("from_task_id"), to_task_id=OuterRef("to_task_id")
        )
    )


def _stale(now: datetime | Now) -> QuerySet[Any]:
    """Dependency rows (annotated ``since``) in fresh mode whose upstream has no DONE run since ``since``."""
    fresh_done = TaskResult.objects.filter(
        task_id=OuterRef("to_task_id"), status=AttemptStatus.DONE, finished_at__gt=OuterRef("since")
    )
    return (
        _edges()
        .filter(from_task__task_type=TaskType.SCHEDULED)
        .annotate(since=previous_start(OuterRef("from_task_id"), now))
        .filter(since__isnull=False)
        .filter(~_is_any(), ~Exists(fresh_done))
    )


def _in_run(*, done: bool = False) -> Exists:
    """The edge's upstream (an edge row inside the ready query) has an attempt (a DONE one) in the waiting
    attempt's pipeline run; false for an attempt outside any pipeline run (NULL never matches)."""
    attempts = TaskResult.objects.filter(
        pipeline_run_id=OuterRef(OuterRef("pipeline_run_id")), task_id=OuterRef("to_task_id")
    )
    return Exists(attempts.filter(status=AttemptStatus.DONE) if done else attempts)


def ready_filter(now: datetime | Now) -> Q:
    """The condition on waiting attempts (TaskResult rows) whose dependencies are met, per the rule above.

    ``now``: a time, or :class:`~scheduling.engine.compiled.Now` in the dispatcher's compiled pick.

    In a pipeline run (``pipeline_run`` set), a dependency that is part of the same run (has an attempt in it)
    is met by a DONE attempt in that run, whatever its status or freshness; the others keep the rule above.
    """
    edges = _edges().filter(from_task_id=OuterRef("task_id"))
    not_done = edges.exclude(to_task__status=TaskStatus.DONE).filter(~_in_run())
    not_done_in_run = edges.filter(_in_run(), ~_in_run(done=True))
    stale = _stale(now).filter(from_task_id=OuterRef("task_id")).filter(~_in_run())
    ready: Q = ~Exists(not_done) & (Q(attempt__gt=1) | ~Exists(stale))
    return ready & Q(~Exists(not_done_in_run))


def unmet(task: Task, now: datetime, *, first_attempt: bool = True) -> list[tuple[Task, datetime | None]]:
    """The dependencies that hold back a new run of ``task``, each with the start its run must finish after.

    ``None`` for a dependency that is not DONE (its status says why); ``first_attempt=False``: a retry's view
    (the status rule only).
    """
    return unmet_many([task], now, fresh_for={task.pk} if first_attempt else set())[task.pk]


def unmet_many(
    tasks: list[Task], now: datetime, *, fresh_for: set[Any]
) -> dict[Any, list[tuple[Task, datetime | None]]]:
    """:func:`unmet` for many tasks in one query (a page of the task list), by task id, each by dependency name.

    The freshness rule counts for the tasks in ``fresh_for`` (a new run's view), the status rule for all.
    """
    ids = [task.pk for task in tasks]
    held: dict[Any, list[tuple[Task, datetime | None]]] = {pk: [] for pk in ids}
    if not ids:
        return held
    fresh_done = TaskResult.objects.filter(
        task_id=OuterRef("to_task_id"), status=AttemptStatus.DONE, finished_at__gt=OuterRef("since")
    )
    rows = (
        _edges()
        .filter(from_task_id__in=ids)
        .annotate(since=previous_start(OuterRef("from_task_id"), now), is_any=_is_any(), fresh=Exists(fresh_done))
        .filter(
            ~Q(to_task__status=TaskStatus.DONE)
            | Q(from_task__task_type=TaskType.SCHEDULED, since__isnull=False, is_any=False, fresh=False)
        )
        .order_by("to_task__name", "to_task_id")
        .values_list("from_task_id", "to_task_id", "to_task__name", "to_task__status", "since")
    )
    for source, target, name, status, since in rows:
        if status != TaskStatus.DONE:
            held[source].append((Task(pk=target, name=name, status=status), None))
        elif source in fresh_for:
            held[source].append((Task(pk=target, name=name, status=status), since))
    return held


def one_fresh_run_per_task(candidates: list[TaskResult]) -> list[TaskResult]:
    """Keep one new run per task with fresh dependencies in one dispatch: the next must wait for newer runs.

    (Two waiting runs of one task picked together would both consume the same upstream runs; once one is
    QUEUED, the ready query holds the other back.)
    """
    firsts = Counter(c.task_id for c in candidates if c.attempt == 1)
    twice = [task_id for task_id, n in firsts.items() if n > 1]
    if not twice:
        return candidates
    gated = set(
        _edges().filter(from_task_id__in=twice).filter(~_is_any()).values_list("from_task_id", flat=True).distinct()
    )
    kept: list[TaskResult] = []
    seen: set[Any] = set()
    for candidate in candidates:
        if candidate.attempt == 1 and candidate.task_id in gated:
            if candidate.task_id in seen:
                continue
            seen.add(candidate.task_id)
        kept.append(candidate)
    return kept


def _reason(dependency: Task, since: datetime | None, timeout: int) -> str:
    if since is None:
        return f"dependency {dependency.name!r} is still {dependency.status} after {timeout} s (dependency_timeout)"
    return (
        f"dependency {dependency.name!r} has no run finished since {since:%Y-%m-%d %H:%M:%S} UTC "
        f"after {timeout} s of waiting (dependency_timeout)"
    )


def fail_overdue(now: datetime) -> int:
    """Fail the waiting runs held back by their dependencies for longer than their dependency_timeout.

    The reason names the upstream; the task's dependents fail with it. Returns the tasks failed.
    """
    default = settings.TASKHUB.scheduler.dependency_timeout
    shortest = Task.objects.filter(dependency_timeout__isnull=False).aggregate(m=Min("dependency_timeout"))["m"]
    bounds = [b for b in (default, shortest) if b]
    if not bounds:
        return 0
    cut = now - timedelta(seconds=min(bounds))
    held = (
        TaskResult.objects.filter(status_in(WAITING), available_at__lte=cut)
        # A pipeline run's attempt waits from its creation (a backfilled fire is due long before).
        .filter(Q(pipeline_run__isnull=True) | Q(created_at__lte=cut))
        .filter(task__enabled=True, task__dependencies__isnull=False)
        .exclude(ready_filter(now))
        .values_list("task_id", "attempt", "available_at", "created_at", "pipeline_run_id")
        .distinct()
    )
    overdue: dict[Any, tuple[int, datetime]] = {}
    for task_id, attempt, available_at, created_at, run_id in held:
        overdue.setdefault(task_id, (attempt, max(available_at, created_at) if run_id else available_at))
    failed = 0
    for task in Task.objects.filter(pk__in=list(overdue)):
        timeout = task.effective_dependency_timeout()
        attempt, available_at = overdue[task.pk]
        if timeout is None or available_at + timedelta(seconds=timeout) > now:
            continue
        blocking = unmet(task, now, first_attempt=attempt == 1)
        if not blocking:
            continue
        with transaction.atomic():
            Task.objects.select_for_update().get(pk=task.pk)
            if lifecycle.fail_waiting(task, _reason(*blocking[0], timeout)):
                lifecycle.fail_dependents(task, reason=f"dependency {task.name!r} failed")
                failed += 1
    return failed
