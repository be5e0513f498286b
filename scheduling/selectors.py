"""What a user may see and read: one set of read functions for the admin, the API, the CLI and the services.

Tasks: a user with ``scheduling.view_all_tasks`` sees every task, anyone else their own; an attempt,
audit entry or log is seen with its task. ``user=None`` is the system (a worker, beat, the shell
without ``--user``): everything.

Pipeline runs: a user sees one whose root task they may see; its tasks they may not see are counted.

Retry policies and tags (``OwnedModel`` rows): each is owned by one user (only that user's tasks use
it) or shared (owner empty), which only a user with ``scheduling.share_retrypolicy`` /
``scheduling.share_tag`` (or a superuser) creates, changes or deletes. A user sees their own and the
shared ones; a user with ``view_all_tasks`` sees every one (as they see every task) but manages only
their own and, with the share permission, the shared ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from scheduling.engine import clock, pipelines
from scheduling.models import (
    FINISHED,
    IN_FLIGHT,
    WAITING,
    AttemptStatus,
    OwnedModel,
    PipelineRun,
    PipelineRunStatus,
    RetryPolicy,
    Tag,
    Task,
    TaskResult,
    TaskStatus,
)

VIEW_ALL = "scheduling.view_all_tasks"


def share_permission(model: type[OwnedModel]) -> str:
    """The permission that lets a user create, change and delete shared rows of ``model``."""
    return f"{model._meta.app_label}.share_{model._meta.model_name}"


def _person(user: Any) -> Any:
    return user if user is not None and getattr(user, "is_authenticated", False) and user.pk else None


def sees_all_tasks(user: Any) -> bool:
    """Whether ``user`` sees every task (the system, or a person with view_all_tasks)."""
    person = _person(user)
    return user is None or (person is not None and person.has_perm(VIEW_ALL))


def _with_visible_task(user: Any, queryset: QuerySet[Any], owner: str) -> QuerySet[Any]:
    """``queryset`` cut to the rows whose task (its owner reached through ``owner``) ``user`` may see."""
    if sees_all_tasks(user):
        return queryset
    person = _person(user)
    return queryset.filter(**{owner: person}) if person is not None else queryset.none()


def visible_tasks(user: Any, queryset: QuerySet[Task] | None = None) -> QuerySet[Task]:
    """The tasks ``user`` may see: all with view_all_tasks (or for the system), else their own."""
    return _with_visible_task(user, Task.objects.all() if queryset is None else queryset, "owner")


def visible_results(user: Any, queryset: QuerySet[TaskResult] | None = None) -> QuerySet[TaskResult]:
    """The attempts of the tasks ``user`` may see."""
    return _with_visible_task(user, TaskResult.objects.all() if queryset is None else queryset, "task__owner")


def may_see_task(user: Any, task: Task) -> bool:
    """Whether ``user`` may see ``task`` (the rule of visible_tasks, for a task already loaded)."""
    person = _person(user)
    return sees_all_tasks(user) or (person is not None and task.owner_id == person.pk)


def task_list(latest_fields: Iterable[str]) -> QuerySet[Task]:
    """Tasks with what a task's summary shows (owner, policy, tags, dependencies and their modes, latest attempt)
    prefetched.

    A fixed number of queries for any number of tasks: the latest attempt per task is one window-function
    query (Django turns a sliced prefetch into one); ``latest_results`` holds it, with only
    ``latest_fields`` of its columns (and those the window needs).
    """
    fields = [name for name in latest_fields if name not in ("id", "task_id", "created_at")]
    latest = TaskResult.objects.only("id", "task_id", "created_at", *fields)
    return Task.objects.select_related("owner", "retry_policy").prefetch_related(
        "tags",
        Prefetch("dependencies", queryset=Task.objects.only("id", "name", "status").order_by("name")),
        Prefetch("any_run_dependencies", queryset=Task.objects.only("id")),
        Prefetch("results", queryset=latest.order_by("-created_at", "-id")[:1], to_attr="latest_results"),
    )


def attempts_of(task: Task) -> QuerySet[TaskResult]:
    """A task's attempts, newest first (result_task_idx): its timeline."""
    return TaskResult.objects.filter(task=task).order_by("-created_at", "-id")


def history(user: Any) -> QuerySet[TaskResult]:
    """The finished attempts ``user`` may see (DONE, FAILED, TIMEOUT, CANCELLED, SKIPPED), with their task."""
    finished = TaskResult.objects.filter(status__in=FINISHED, finished_at__isnull=False).select_related("task")
    return visible_results(user, finished)


def waiting_on(task: Task) -> list[Task]:
    """The dependencies that hold back the task's next run (engine/pipelines.py's rule), by name.

    Each has ``since``: None when it is not DONE (its status says why), else the start of the task's previous
    run, which a run of it must have finished after (a fresh dependency: counted for a PENDING task, whose
    waiting run is a new one; a retry waits on the status rule only).
    """
    return waiting_on_many([task])[task.pk]


def waiting_on_many(tasks: list[Task]) -> dict[Any, list[Task]]:
    """:func:`waiting_on` for many tasks (a page of a list) in one query, by task id."""
    pending = {task.pk for task in tasks if task.status == TaskStatus.PENDING}
    shown: dict[Any, list[Task]] = {}
    for pk, held in pipelines.unmet_many(tasks, clock.now(), fresh_for=pending).items():
        for dependency, since in held:
            dependency.since = since  # type: ignore[attr-defined]  # shown by the API, the admin and the CLI
        shown[pk] = [dependency for dependency, _ in held]
    return shown


def describe_waiting(task: Task) -> str:
    """The waiting reason in words: "export (RUNNING), load (no run finished since 2026-12-01 03:00 UTC)"."""
    parts = []
    for dep in waiting_on(task):
        since = getattr(dep, "since", None)  # set by waiting_on_many
        parts.append(
            f"{dep.name} ({dep.status})"
            if since is None
            else f"{dep.name} (no run finished since {since:%Y-%m-%d %H:%M:%S} UTC)"
        )
    return ", ".join(parts)


def visible(model: type[OwnedModel], user: Any, queryset: QuerySet[Any] | None = None) -> QuerySet[Any]:
    """The rows of ``model`` (RetryPolicy or Tag) that ``user`` may see."""
    queryset = model._default_manager.all() if queryset is None else queryset
    person = _person(user)
    if user is None or (person is not None and person.has_perm(VIEW_ALL)):
        return queryset
    if person is None:  # anonymous: the shared ones only
        return queryset.filter(owner__isnull=True)
    return queryset.filter(Q(owner=person) | Q(owner__isnull=True))


def visible_policies(user: Any, queryset: QuerySet[RetryPolicy] | None = None) -> QuerySet[RetryPolicy]:
    """Retry policies ``user`` may see, list, autocomplete and name: their own and the shared ones."""
    return visible(RetryPolicy, user, queryset)


def visible_tags(user: Any, queryset: QuerySet[Tag] | None = None) -> QuerySet[Tag]:
    """Tags ``user`` may see, list and filter on: their own and the shared ones."""
    return visible(Tag, user, queryset)


def may_share(user: Any, model: type[OwnedModel]) -> bool:
    """Whether ``user`` may create, change and delete shared objects of ``model``."""
    person = _person(user)
    return user is None or (person is not None and person.has_perm(share_permission(model)))


def may_manage(user: Any, obj: RetryPolicy | Tag) -> bool:
    """Whether ``user`` may change or delete ``obj``: their own, or a shared one with the share permission."""
    if user is None or (_person(user) and _person(user).is_superuser):
        return True
    person = _person(user)
    if person is None:
        return False
    if obj.owner_id is None:
        return may_share(person, type(obj))
    return obj.owner_id == person.pk


def attachable(obj: RetryPolicy | Tag, task_owner: Any) -> bool:
    """Whether a task of ``task_owner`` may use ``obj``: a shared one, or one of the task owner's."""
    return obj.owner_id is None or (task_owner is not None and obj.owner_id == task_owner.pk)


def visible_task_ids(user: Any, ids: Any) -> set[Any]:
    """The ids among ``ids`` of tasks ``user`` may see (all for the system)."""
    return set(visible_tasks(user, Task.objects.filter(pk__in=list(ids))).values_list("pk", flat=True))


def describe_tasks(user: Any, tasks: list[tuple[Any, str]], limit: int = 10) -> str:
    """Name the tasks ``user`` may see and only count the others: "a, b and 2 tasks you cannot see"."""
    seen = visible_task_ids(user, [pk for pk, _ in tasks])
    names = [name for pk, name in tasks if pk in seen]
    hidden = len(tasks) - len(names)
    parts = names[:limit]
    if len(names) > limit:
        parts.append(f"{len(names) - limit} more")
    if hidden:
        parts.append(f"{hidden} task{'s' if hidden != 1 else ''} you cannot see")
    return ", ".join(parts)


# Pipeline runs: seen with their root task; their tasks the user may not see are counted, never named.


def visible_pipeline_runs(user: Any) -> QuerySet[PipelineRun]:
    """The pipeline runs whose root task ``user`` may see."""
    return PipelineRun.objects.filter(root__in=visible_tasks(user)).select_related("root")


#: Attempt statuses that end a task's part of a pipeline run badly.
_RUN_FAILED = (AttemptStatus.FAILED, AttemptStatus.TIMEOUT, AttemptStatus.CANCELLED)


def pipeline_run_tasks(run: PipelineRun) -> list[dict[str, Any]]:
    """Each task of the run (every task with an attempt in it) with its latest attempt's status in the run.

    ``started_at`` is when its first attempt in the run started, ``finished_at`` when the latest finished;
    ``owner_id`` is for the caller's visibility check.
    """
    rows = (
        TaskResult.objects.filter(pipeline_run=run)
        .order_by("task_id", "created_at", "id")
        .values_list("task_id", "task__name", "task__owner_id", "attempt", "status", "started_at", "finished_at")
    )
    tasks: dict[Any, dict[str, Any]] = {}
    for task_id, name, owner_id, attempt, status, started, finished in rows:
        entry = tasks.setdefault(task_id, {"id": task_id, "name": name, "owner_id": owner_id, "started_at": started})
        entry.update(attempt=attempt, status=status, finished_at=finished)
        entry["started_at"] = entry["started_at"] or started
    return sorted(tasks.values(), key=lambda t: (t["started_at"] is None, t["started_at"] or 0, t["name"]))


def pipeline_run_status(statuses: Iterable[str]) -> str:
    """RUNNING while a task of the run has an attempt waiting or in flight, else FAILED if one failed, else DONE."""
    statuses = list(statuses)
    if any(s in (*WAITING, *IN_FLIGHT) for s in statuses):
        return PipelineRunStatus.RUNNING
    if any(s in _RUN_FAILED for s in statuses):
        return PipelineRunStatus.FAILED
    return PipelineRunStatus.DONE


def pipeline_run_view(user: Any, run: PipelineRun) -> dict[str, Any]:
    """What ``user`` may read of a pipeline run: its status, its visible tasks, how many are hidden."""
    tasks = pipeline_run_tasks(run)
    everyone = sees_all_tasks(user)
    person = _person(user)
    shown = [t for t in tasks if everyone or (person is not None and t["owner_id"] == person.pk)]
    return {
        "id": run.pk,
        "root_task": run.root_id,
        "root_task_name": run.root.name,
        "which": run.which,
        "origin": run.origin,
        "fire_time": run.fire_time,
        "created_at": run.created_at,
        "created_by": run.actor.get_username() if run.actor_id and run.actor else None,
        "status": pipeline_run_status(t["status"] for t in tasks),
        "tasks": [{k: v for k, v in t.items() if k != "owner_id"} for t in shown],
        "hidden_tasks": len(tasks) - len(shown),
    }
