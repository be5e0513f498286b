"""The task audit trail: what a person did to a task and which fields changed (before -> after)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from scheduling.models import EDITABLE_FIELDS, Priority, Task, TaskAudit

# The fields a person edits, as they are shown back (priority by name, relations by name).
AUDITED = EDITABLE_FIELDS


def snapshot(task: Task, *, tags: list[str] | None = None, dependencies: list[str] | None = None) -> dict[str, Any]:
    """Return the audited fields of ``task`` as JSON-able values.

    ``tags`` and ``dependencies`` (names, see :func:`dependency_name`) spare the queries when the caller has just
    written them. A dependency in ``any`` mode reads "name (any run)", so a change of mode is audited.
    """
    values = {field: getattr(task, field) for field in AUDITED if field not in ("tags", "dependencies")}
    values["priority"] = Priority(task.priority).label
    values["retry_policy"] = task.retry_policy.name if task.retry_policy is not None else None
    values["tags"] = sorted(tags if tags is not None else task.tags.values_list("name", flat=True))
    if dependencies is None:
        any_run = set(task.any_run_dependencies.values_list("pk", flat=True))
        dependencies = [
            dependency_name(name, pk in any_run) for pk, name in task.dependencies.values_list("pk", "name")
        ]
    values["dependencies"] = sorted(dependencies)
    return values


def dependency_name(name: str, any_run: bool) -> str:
    """A dependency as the audit trail shows it: its name, marked when any successful run of it counts."""
    return f"{name} (any run)" if any_run else name


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """Return {field: [before, after]} for the fields whose value differs."""
    return {field: [before.get(field), after.get(field)] for field in AUDITED if before.get(field) != after.get(field)}


# Where the change came from when the caller is not a web request (e.g. "CLI run_task, OS user alice").
_VIA: ContextVar[str] = ContextVar("audit_via", default="")


@contextmanager
def via(source: str) -> Iterator[None]:
    """Note ``source`` in the detail of every audit entry written inside the block."""
    token = _VIA.set(source)
    try:
        yield
    finally:
        _VIA.reset(token)


def _person(actor: Any) -> Any:
    return actor if actor is not None and getattr(actor, "is_authenticated", False) and actor.pk else None


def entry(
    task: Task, action: str, *, actor: Any = None, changes: dict[str, list[Any]] | None = None, detail: str = ""
) -> TaskAudit:
    """Build one audit entry, unsaved: :func:`record` saves one, :func:`record_many` many in one INSERT."""
    source = _VIA.get()
    if source:
        detail = f"{detail} ({source})" if detail else source
    return TaskAudit(
        task_id=task.pk,
        task_name=task.name,
        actor=_person(actor),
        action=action,
        changes=changes or {},
        detail=detail[:500],
    )


def record(
    task: Task, action: str, *, actor: Any = None, changes: dict[str, list[Any]] | None = None, detail: str = ""
) -> TaskAudit:
    """Write one audit entry (call inside the service's transaction so it commits with the change)."""
    written = entry(task, action, actor=actor, changes=changes, detail=detail)
    written.save(force_insert=True)
    return written


def record_many(entries: list[TaskAudit]) -> list[TaskAudit]:
    """Write entries built by :func:`entry` in one INSERT (inside the service's transaction)."""
    return TaskAudit.objects.bulk_create(entries)
