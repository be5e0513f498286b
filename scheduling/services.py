"""Task operations shared by the admin, the API, the CLI and the workers.

Each function validates, writes in one transaction and, after commit, wakes the
dispatcher, so an immediate task starts without waiting for the beat poll.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django_celery_beat.models import CrontabSchedule

from scheduling import audit, clock, cron, dispatcher, lifecycle, validation
from scheduling.models import (
    EDITABLE_FIELDS,
    IN_FLIGHT,
    WAITING,
    AttemptStatus,
    AuditAction,
    OverlapPolicy,
    Priority,
    RetryPolicy,
    Tag,
    Task,
    TaskResult,
    TaskStatus,
    TaskType,
)
from taskhub import encryption
from taskhub.exceptions import ConflictError, ValidationError

logger = logging.getLogger(__name__)

EDITABLE = EDITABLE_FIELDS


def _priority(value: Any) -> int:
    if isinstance(value, str) and value.upper() in Priority.names:
        return Priority[value.upper()].value
    if isinstance(value, int) and not isinstance(value, bool) and value in Priority.values:
        return value
    raise ValidationError({"priority": f"must be one of HIGH, MEDIUM, LOW, got {value!r}"})


def _choice(field: str, value: Any, choices: type) -> str:
    if value not in choices.values:
        raise ValidationError({field: f"must be one of {', '.join(choices.values)}, got {value!r}"})
    return value


def _retry_policy(value: Any) -> RetryPolicy | None:
    if value is None or isinstance(value, RetryPolicy):
        return value
    if isinstance(value, dict):
        return validation.validate_retry_policy(value)
    try:
        return RetryPolicy.objects.get(pk=value)
    except (RetryPolicy.DoesNotExist, ValueError, TypeError):
        raise ValidationError({"retry_policy": f"unknown retry policy {value!r}"}) from None


def _clean(data: dict[str, Any], task: Task | None) -> dict[str, Any]:
    """Validate a full set of task fields; collect every field's error before raising."""
    errors: dict[str, list[str]] = {}

    def attempt(func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except ValidationError as exc:
            for field, messages in exc.errors.items():
                errors.setdefault(field, []).extend(messages)
            return None

    clean = dict(data)
    name = str(data.get("name") or "").strip()
    if not name or len(name) > 200 or validation.has_control_characters(name):
        errors["name"] = ["is required: 1-200 printable characters (no control characters)"]
    clean["name"] = name
    clean["task_type"] = attempt(_choice, "task_type", data.get("task_type", TaskType.IMMEDIATE), TaskType)
    clean["priority"] = attempt(_priority, data.get("priority", Priority.MEDIUM))
    clean["overlap_policy"] = attempt(
        _choice, "overlap_policy", data.get("overlap_policy", OverlapPolicy.SKIP), OverlapPolicy
    )
    if clean["task_type"]:
        clean["cron_expr"] = attempt(
            validation.validate_cron, clean["task_type"], data.get("cron_expr") or "", data.get("timezone") or "UTC"
        )
    clean["timezone"] = data.get("timezone") or "UTC"
    attempt(validation.validate_timeout, data.get("timeout_seconds"))
    for field in ("metadata", "parameters"):
        if not isinstance(data.get(field, {}), dict):
            errors.setdefault(field, []).append("must be a JSON object")
        else:
            attempt(validation.validate_json_object, field, data.get(field) or {})
    tags = attempt(validation.clean_tags, data.get("tags", []))
    clean["tags"] = tags or []
    secret = attempt(validation.validate_secret_parameters, task, data)
    try:
        clean["stored_secret"] = validation.stored_secret_parameters(task)
    except ValidationError:
        clean["stored_secret"] = None  # unreadable: replacing it is the way out; keeping it is reported above
    clean["secrets_dropped"] = False
    if secret and data.get("secret_parameters") is None and validation.destination_changed(task, data, secret):
        secret, clean["secrets_dropped"] = {}, True  # not sent to another host unless given again
    clean["secret_parameters"] = secret
    attempt(validation.validate_parameters_size, "parameters", data.get("parameters") or {})
    attempt(validation.refuse_plain_credentials, data.get("parameters"))
    if tags is not None and isinstance(data.get("parameters", {}), dict):
        # The handler's schema sees what the handler will get: parameters with the secret ones merged over.
        parameters = encryption.merge(data.get("parameters") or {}, secret or {})
        clean["handler"] = attempt(validation.validate_handler, tags, parameters)
    clean["dependencies"] = attempt(validation.validate_dependencies, task, data.get("dependencies", [])) or []
    clean["retry_policy"] = attempt(_retry_policy, data.get("retry_policy"))
    if not isinstance(data.get("enabled", True), bool):
        errors["enabled"] = ["must be true or false"]
    if errors and secret:  # a schema error quotes the value it refused: never a secret one
        hidden = encryption.leaves(secret)
        errors = {field: [encryption.scrub_text(m, hidden) for m in messages] for field, messages in errors.items()}
    if errors:
        raise ValidationError(errors)
    return clean


def task_validate(*, data: dict[str, Any], task: Task | None = None) -> dict[str, Any]:
    """Check a complete set of task fields without writing; raise ValidationError listing every problem."""
    return _clean(data, task)


def _sync_schedule(task: Task, now: datetime) -> None:
    """Keep the django-celery-beat CrontabSchedule and next_fire_at in step with the task."""
    if task.task_type != TaskType.SCHEDULED:
        task.crontab, task.next_fire_at = None, None
        return
    task.crontab, _ = CrontabSchedule.objects.get_or_create(
        timezone=task.timezone, **cron.crontab_fields(task.cron_expr)
    )
    task.next_fire_at = cron.next_fire(task.cron_expr, task.timezone, now) if task.enabled else None


def _set_tags(task: Task, names: list[str], *, new: bool = False) -> None:
    """Give ``task`` exactly these tags, creating missing ones; ``new``: the task has none yet."""
    existing = {tag.name: tag for tag in Tag.objects.filter(name__in=names)}
    missing = [Tag(name=name) for name in names if name not in existing]
    if missing:
        Tag.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {tag.name: tag for tag in Tag.objects.filter(name__in=names)}
    if new:  # one INSERT instead of set()'s read-compare-write
        through = Task.tags.through
        through.objects.bulk_create([through(task_id=task.pk, tag_id=existing[name].pk) for name in names])
    else:
        task.tags.set([existing[name] for name in names])


def _new_attempt(
    task: Task,
    *,
    now: datetime,
    fire_time: datetime | None = None,
    attempt: int = 1,
    status: str = AttemptStatus.PENDING,
    available_at: datetime | None = None,
) -> TaskResult:
    return TaskResult(
        task=task,
        attempt=attempt,
        status=status,
        priority=task.priority,
        fire_time=fire_time,
        available_at=available_at or now,
        created_at=now,
    )


def task_create(*, data: dict[str, Any], owner: Any = None, actor: Any = None) -> Task:
    """Create a task; an IMMEDIATE one is queued for dispatch as soon as the transaction commits.

    ``actor`` (default: the owner) is who the audit trail names.
    """
    clean = _clean(data, None)
    now = clock.now()
    with transaction.atomic():
        policy = clean["retry_policy"]
        if policy is not None and policy.pk is None:
            policy.name = policy.name or validation.free_policy_name(f"policy for {clean['name']}")
            policy.full_clean()
            policy.save()
        task = Task(
            name=clean["name"],
            task_type=clean["task_type"],
            cron_expr=clean["cron_expr"],
            timezone=clean["timezone"],
            priority=clean["priority"],
            metadata=data.get("metadata") or {},
            parameters=data.get("parameters") or {},
            secret_parameters=encryption.encrypt_json(clean["secret_parameters"]),
            handler=clean["handler"],
            owner=owner,
            timeout_seconds=data.get("timeout_seconds"),
            retry_policy=policy,
            enabled=data.get("enabled", True),
            overlap_policy=clean["overlap_policy"],
            created_at=now,
        )
        _sync_schedule(task, now)
        task.save(force_insert=True)
        _set_tags(task, clean["tags"], new=True)
        dependencies = clean["dependencies"]
        if dependencies:
            through = Task.dependencies.through
            through.objects.bulk_create([through(from_task_id=task.pk, to_task_id=d.pk) for d in dependencies])
        if task.task_type == TaskType.IMMEDIATE:
            _new_attempt(task, now=now).save(force_insert=True)
            if dependencies:
                fail_if_upstream_failed(task)
        written = audit.snapshot(task, tags=clean["tags"], dependencies=[d.name for d in dependencies])
        created = {f: v for f, v in written.items() if v not in (None, "", [], {})}
        if clean["secret_parameters"]:
            created["secret_parameters"] = encryption.mask(clean["secret_parameters"])
        audit.record(
            task, AuditAction.CREATED, actor=actor or owner, changes={f: [None, v] for f, v in created.items()}
        )
        transaction.on_commit(dispatcher.wake)
    logger.info("task created: %s (%s, %s)", task.name, task.pk, task.task_type)
    return task


def task_update(*, task: Task, data: dict[str, Any], actor: Any = None) -> Task:
    """Change a task's fields; schedules, waiting attempts and dependencies follow in the same transaction."""
    current = {field: getattr(task, field) for field in EDITABLE if field not in ("tags", "dependencies")}
    current["tags"] = list(task.tags.values_list("name", flat=True))
    current["dependencies"] = list(task.dependencies.values_list("pk", flat=True))
    merged = {**current, **{k: v for k, v in data.items() if k in EDITABLE}}
    if data.get("secret_parameters") is not None:  # absent or None: the stored secrets stay
        merged["secret_parameters"] = data["secret_parameters"]
    clean = _clean(merged, task)
    now = clock.now()
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        before = audit.snapshot(task)
        for field in (
            "name",
            "task_type",
            "cron_expr",
            "timezone",
            "priority",
            "timeout_seconds",
            "overlap_policy",
            "handler",
        ):
            setattr(task, field, clean[field])
        task.metadata = merged.get("metadata") or {}
        task.parameters = merged.get("parameters") or {}
        secret_changed = ("secret_parameters" in merged or clean["secrets_dropped"]) and clean[
            "secret_parameters"
        ] != clean["stored_secret"]
        if secret_changed:
            task.secret_parameters = encryption.encrypt_json(clean["secret_parameters"])
        task.enabled = merged.get("enabled", True)
        policy = clean["retry_policy"]
        if policy is not None and policy.pk is None:
            policy.name = policy.name or validation.free_policy_name(f"policy for {task.name}")
            policy.full_clean()
            policy.save()
        task.retry_policy = policy
        _sync_schedule(task, now)
        task.save()
        _set_tags(task, clean["tags"])
        task.dependencies.set(clean["dependencies"])
        # Waiting attempts carry the task's priority for the dispatcher's index.
        TaskResult.objects.filter(task=task, status__in=WAITING).update(priority=task.priority)
        changes = audit.diff(before, audit.snapshot(task))
        if secret_changed:  # the shape only: which keys, never the values
            changes["secret_parameters"] = [
                encryption.mask(clean["stored_secret"] or {}),
                encryption.mask(clean["secret_parameters"] or {}),
            ]
        if changes:
            audit.record(task, AuditAction.CHANGED, actor=actor, changes=changes)
        transaction.on_commit(dispatcher.wake)
    return task


def task_delete(*, task: Task, actor: Any = None) -> None:
    """Delete a task unless other tasks depend on it; in-flight attempts are revoked first."""
    dependents = list(task.dependents.values_list("name", flat=True)[:10])
    if dependents:
        raise ConflictError(
            f"cannot delete {task.name!r}: tasks depend on it: {', '.join(dependents)}; "
            "remove those dependencies first",
            current_status=task.status,
        )
    with transaction.atomic():
        celery_ids = _revoke_in_flight(task)
        audit.record(task, AuditAction.DELETED, actor=actor)
        task.delete()
    transaction.on_commit(lambda: dispatcher.revoke(celery_ids))


def _revoke_in_flight(task: Task) -> list[str]:
    return list(
        TaskResult.objects.filter(task=task, status__in=IN_FLIGHT)
        .exclude(celery_task_id="")
        .values_list("celery_task_id", flat=True)
    )


def task_cancel(*, task: Task, reason: str = "cancelled by a person", actor: Any = None) -> int:
    """Cancel waiting and in-flight attempts (running ones are revoked); return how many."""
    with transaction.atomic():
        Task.objects.select_for_update().get(pk=task.pk)
        active = list(TaskResult.objects.select_for_update().filter(task=task, status__in=WAITING + IN_FLIGHT))
        if not active:
            raise ConflictError(f"{task.name!r} has nothing to cancel: it is {task.status}", current_status=task.status)
        celery_ids = [r.celery_task_id for r in active if r.status in IN_FLIGHT and r.celery_task_id]
        for result in active:
            lifecycle.move(result, AttemptStatus.CANCELLED, error_message=reason, refresh=False)
        lifecycle.refresh_task(task.pk, latest=active[-1], reason=reason)
        fail_dependents(task, reason=f"dependency {task.name!r} was cancelled")
        audit.record(task, AuditAction.CANCELLED, actor=actor, detail=f"{len(active)} attempt(s): {reason}")
        transaction.on_commit(lambda: dispatcher.revoke(celery_ids, terminate=True))
        transaction.on_commit(dispatcher.wake)
    return len(active)


def task_run_now(*, task: Task, dispatch: bool = True, actor: Any = None) -> TaskResult:
    """Start a new run now (also for SCHEDULED tasks, outside their schedule).

    ``dispatch=False`` leaves the new attempt to the caller (``manage.py run_task`` runs it in-process).
    """
    return _start_run(task, dispatch=dispatch, actor=actor, action=AuditAction.RUN)


def _start_run(task: Task, *, dispatch: bool, actor: Any, action: str) -> TaskResult:
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        if TaskResult.objects.filter(task=task, status__in=WAITING).exists():
            raise ConflictError(f"{task.name!r} already has a run waiting to start", current_status=task.status)
        result = _new_attempt(task, now=clock.now())
        result.save()
        lifecycle.refresh_task(task.pk, reason="")
        fail_if_upstream_failed(task)
        audit.record(task, action, actor=actor)
        if dispatch:
            transaction.on_commit(dispatcher.wake)
    return result


def task_retry(*, task: Task, actor: Any = None) -> TaskResult:
    """Run a FAILED, TIMEOUT or CANCELLED task again from attempt 1."""
    if task.status not in (TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.CANCELLED):
        raise ConflictError(
            f"only a FAILED, TIMEOUT or CANCELLED task can be retried; {task.name!r} is {task.status}",
            current_status=task.status,
        )
    return _start_run(task, dispatch=True, actor=actor, action=AuditAction.RETRIED)


def task_pause(*, task: Task, actor: Any = None) -> Task:
    """Stop a task from firing or starting; running attempts finish."""
    if not task.enabled:
        raise ConflictError(f"{task.name!r} is already paused", current_status=task.status)
    with transaction.atomic():
        Task.objects.filter(pk=task.pk).update(enabled=False, next_fire_at=None, updated_at=clock.now())
        audit.record(task, AuditAction.PAUSED, actor=actor)
    task.refresh_from_db()
    return task


def task_resume(*, task: Task, actor: Any = None) -> Task:
    """Let a paused task fire and start again; its next fire is computed from now."""
    if task.enabled:
        raise ConflictError(f"{task.name!r} is not paused", current_status=task.status)
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        task.enabled = True
        _sync_schedule(task, clock.now())
        task.save(update_fields=["enabled", "next_fire_at", "crontab", "updated_at"])
        audit.record(task, AuditAction.RESUMED, actor=actor)
        transaction.on_commit(dispatcher.wake)
    return task


def waiting_on(task: Task) -> list[Task]:
    """Return the dependencies that are not DONE, which is why a PENDING task waits."""
    return list(task.dependencies.exclude(status=TaskStatus.DONE).only("id", "name", "status"))


def fail_if_upstream_failed(task: Task) -> None:
    bad = task.dependencies.filter(status__in=(TaskStatus.FAILED, TaskStatus.CANCELLED)).first()
    if bad is not None:
        _fail_waiting(task, f"dependency {bad.name!r} is {bad.status}")


def _fail_waiting(task: Task, reason: str) -> bool:
    waiting = list(TaskResult.objects.select_for_update().filter(task=task, status__in=WAITING))
    for result in waiting:
        lifecycle.move(result, AttemptStatus.FAILED, error_message=reason, refresh=False)
    if waiting:
        lifecycle.refresh_task(task.pk, latest=waiting[-1], reason=reason)
    return bool(waiting)


def fail_dependents(task: Task, *, reason: str) -> None:
    """Fail the waiting runs downstream of a FAILED or CANCELLED task (Airflow's upstream_failed)."""
    frontier = [(task, reason)]
    seen = {task.pk}
    while frontier:
        upstream, why = frontier.pop()
        for dependent in upstream.dependents.all():
            if dependent.pk in seen:
                continue
            seen.add(dependent.pk)
            if _fail_waiting(dependent, why):
                frontier.append((dependent, f"dependency {dependent.name!r} failed: {why}"))
