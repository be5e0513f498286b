"""Task operations shared by the admin, the API, the CLI and the workers.

Each function validates, writes in one transaction and, after commit, wakes the
dispatcher, so an immediate task starts without waiting for the beat poll. A retry or
run can bring the task's dependents along (``downstream=failed|all``, :func:`task_retry`) as a pipeline run;
:func:`task_backfill` runs a past range of cron fires, each once (with its dependents, a pipeline run each).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django_celery_beat.models import CrontabSchedule

from scheduling import audit, selectors, validation
from scheduling.engine import attempts, clock, cron, dispatcher, lifecycle, retention
from scheduling.handlers import registry
from scheduling.models import (
    COLUMN_FIELDS,
    EDITABLE_FIELDS,
    FINISHED,
    IN_FLIGHT,
    WAITING,
    AuditAction,
    OverlapPolicy,
    OwnedModel,
    PipelineOrigin,
    PipelineRun,
    Priority,
    RetryPolicy,
    Tag,
    Task,
    TaskAudit,
    TaskResult,
    TaskType,
    default_of,
)
from taskhub import encryption, scrubbing
from taskhub.exceptions import BulkValidationError, ConflictError, ValidationError

logger = logging.getLogger(__name__)

#: The task's own columns that a write sets: the editable fields that are not related rows, and the
#: handler (derived from the tags).
COLUMNS = (*COLUMN_FIELDS, "handler")


def _priority(value: Any) -> int:
    if isinstance(value, str) and value.upper() in Priority.names:
        return Priority[value.upper()].value
    if isinstance(value, int) and not isinstance(value, bool) and value in Priority.values:
        return value
    raise ValidationError({"priority": f"must be one of HIGH, MEDIUM, LOW, got {value!r}"})


def _choice(field: str, value: Any, choices: type[models.TextChoices]) -> str:
    if value not in choices.values:
        raise ValidationError({field: f"must be one of {', '.join(choices.values)}, got {value!r}"})
    return value


def _retry_policy(value: Any, *, actor: Any, owner: Any, current: RetryPolicy | None) -> RetryPolicy | None:
    """Resolve the policy a task of ``owner`` will use: the one rule for the admin, the API and the CLI.

    ``value`` is None (no policy), a stored policy or its id, or a dict of policy fields: with ``id``, a
    stored policy (any other field given must match it); without, the task's ``current`` policy when
    every field matches it and no name is given, else a new policy of the owner (unsaved; an empty name
    is filled in when it is saved: "policy for <task>"). A policy ``actor`` cannot see is answered
    exactly like one that does not exist; ``current`` is kept even if it is no longer attachable.
    """
    if value is None:
        return None
    if isinstance(value, dict) and "id" not in value:
        values = {k: v for k, v in value.items() if k != "name"}
        if current is not None and not value.get("name"):
            wanted = {f: values.get(f, validation.policy_default(f)) for f in validation.POLICY_RULE}
            if set(values) <= set(validation.POLICY_RULE) and all(getattr(current, f) == v for f, v in wanted.items()):
                return current
        return validation.validate_retry_policy({**values, "name": value.get("name") or ""}, owner=owner)
    given = value if isinstance(value, dict) else {}
    pk: Any = value.get("id") if isinstance(value, dict) else value.pk if isinstance(value, RetryPolicy) else value
    if isinstance(value, RetryPolicy) and pk is None:
        return value
    try:
        policy = selectors.visible_policies(actor).get(pk=pk)
    except (RetryPolicy.DoesNotExist, ValueError, TypeError):
        field = "retry_policy.id" if isinstance(value, dict) else "retry_policy"
        raise ValidationError({field: f"unknown retry policy {pk!r}"}) from None
    different = sorted(str(k) for k, v in given.items() if k not in ("id", "name") and getattr(policy, k, v) != v)
    if different:
        hint = f"differs from stored policy {policy.pk} ({policy.name!r}); leave out id to create a new one"
        raise ValidationError({f"retry_policy.{field}": hint for field in different})
    if policy.pk != (current.pk if current is not None else None) and not selectors.attachable(policy, owner):
        raise ValidationError(
            {
                "retry_policy": f"retry policy {policy.pk} ({policy.name!r}) belongs to another user: a task uses "
                "a shared policy or one of its owner's"
            }
        )
    return policy


def _save_policy(policy: RetryPolicy | None, *, task_name: str, owner: Any) -> RetryPolicy | None:
    """Save a new policy resolved by _retry_policy; one without a name is named "policy for <task>" (or "(2)", ...).

    Two tasks of one name saved at once may pick the same free name: the loser takes the next one.
    """
    if policy is None or policy.pk is not None:
        return policy
    policy.owner = owner
    if policy.name:
        policy.full_clean()
        policy.save()
        return policy
    for _ in range(10):
        policy.name = validation.free_policy_name(f"policy for {task_name}", owner)
        try:
            with transaction.atomic():
                policy.save()
            return policy
        except IntegrityError:
            continue
    raise ConflictError(f"could not find a free name for a new retry policy of {task_name!r}; name it")


def _clean(
    data: dict[str, Any],
    task: Task | None,
    *,
    actor: Any = None,
    owner: Any = None,
    known: dict[Any, Task] | None = None,
) -> dict[str, Any]:
    """Validate a full set of task fields; collect every field's error before raising.

    ``dependencies``: task ids, or ``{"id": ..., "mode": "fresh" | "any"}`` (validation.split_dependencies);
    the clean value has the tasks, and ``any_run_dependencies`` those in ``any`` mode.

    ``actor`` (None: the system) is who asks: dependencies and retry policies they cannot see are unknown.
    ``owner`` is the owner of a new task (a stored task's own owner otherwise): whose policies it may use.
    ``known``: the dependency tasks ``actor`` may see, read once for all items of a bulk create.
    """
    errors: dict[str, list[str]] = {}
    if task is not None:
        owner = task.owner

    def attempt(func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except ValidationError as exc:
            for field, messages in exc.errors.items():
                errors.setdefault(field, []).extend(messages)
            return None

    clean = dict(data)
    clean["name"] = attempt(validation.validate_name, data.get("name")) or ""
    clean["task_type"] = attempt(_choice, "task_type", data.get("task_type", default_of("task_type")), TaskType)
    clean["priority"] = attempt(_priority, data.get("priority", default_of("priority")))
    clean["overlap_policy"] = attempt(
        _choice, "overlap_policy", data.get("overlap_policy", default_of("overlap_policy")), OverlapPolicy
    )
    if clean["task_type"]:
        clean["cron_expr"] = attempt(
            validation.validate_cron, clean["task_type"], data.get("cron_expr") or "", data.get("timezone") or "UTC"
        )
    clean["timezone"] = data.get("timezone") or default_of("timezone")
    clean["timeout_seconds"] = data.get("timeout_seconds")
    attempt(validation.validate_timeout, clean["timeout_seconds"])
    for field in ("metadata", "parameters"):
        if not isinstance(data.get(field, {}), dict):
            errors.setdefault(field, []).append("must be a JSON object")
        else:
            clean[field] = data.get(field) or {}
            attempt(validation.validate_json_object, field, clean[field])
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
    dependency_ids, any_run = validation.split_dependencies(task, data.get("dependencies", []))
    clean["dependencies"] = attempt(validation.validate_dependencies, task, dependency_ids, actor, known) or []
    clean["any_run_dependencies"] = [d for d in clean["dependencies"] if str(d.pk) in any_run]
    clean["dependency_timeout"] = data.get("dependency_timeout")
    attempt(validation.validate_dependency_timeout, clean["dependency_timeout"])
    clean["retry_policy"] = attempt(
        lambda value: _retry_policy(
            value, actor=actor, owner=owner, current=task.retry_policy if task is not None else None
        ),
        data.get("retry_policy"),
    )
    clean["enabled"] = data.get("enabled", default_of("enabled"))
    if not isinstance(clean["enabled"], bool):
        errors["enabled"] = ["must be true or false"]
    if errors and secret:  # a schema error quotes the value it refused: never a secret one
        hidden = encryption.leaves(secret)
        errors = {
            field: [scrubbing.scrub_text(m, hidden, defaults=False) for m in messages]
            for field, messages in errors.items()
        }
    if errors:
        raise ValidationError(errors)
    return clean


def task_validate(
    *, data: dict[str, Any], task: Task | None = None, actor: Any = None, owner: Any = None
) -> dict[str, Any]:
    """Check a complete set of task fields without writing; raise ValidationError listing every problem."""
    return _clean(data, task, actor=actor, owner=owner)


def _sync_schedule(task: Task, now: datetime, crontabs: dict[Any, CrontabSchedule] | None = None) -> None:
    """Keep the django-celery-beat CrontabSchedule and next_fire_at in step with the task.

    ``crontabs``: the schedules already looked up by this call (a bulk create reads each one once).
    """
    if task.task_type != TaskType.SCHEDULED:
        task.crontab, task.next_fire_at = None, None
        return
    fields = cron.crontab_fields(task.cron_expr)
    key = (task.timezone, *sorted(fields.items()))
    if crontabs is not None and key in crontabs:
        task.crontab = crontabs[key]
    else:
        task.crontab, _ = CrontabSchedule.objects.get_or_create(timezone=task.timezone, **fields)
        if crontabs is not None:
            crontabs[key] = task.crontab
    task.next_fire_at = cron.next_fire(task.cron_expr, task.timezone, now) if task.enabled else None


def _tags_of(owner_id: int | None, names: list[str]) -> dict[str, Tag]:
    """The tags these names mean on a task of ``owner_id``: the owner's own, else the shared one."""
    found = {tag.name: tag for tag in Tag.objects.filter(name__in=names, owner__isnull=True)}
    if owner_id is not None:
        found.update({tag.name: tag for tag in Tag.objects.filter(name__in=names, owner_id=owner_id)})
    return found


def _set_tags(task: Task, names: list[str]) -> None:
    """Give ``task`` exactly these tags, creating missing ones (the rule of :func:`_add_tags`)."""
    existing = _tags_creating_missing(task.owner_id, names)
    task.tags.set([existing[name] for name in names])


def _tags_creating_missing(owner_id: int | None, names: list[str]) -> dict[str, Tag]:
    """The tags these names mean on a task of ``owner_id``, creating the missing ones.

    A name means the owner's tag, else the shared one; a new tag is the owner's (shared when the task has
    no owner or the name is a handler's tag). Another user's tags are never used.
    """
    existing = _tags_of(owner_id, names)
    missing = [
        Tag(name=name, owner_id=None if name in registry else owner_id) for name in names if name not in existing
    ]
    if missing:
        Tag.objects.bulk_create(missing, ignore_conflicts=True)
        existing = _tags_of(owner_id, names)
    return existing


def _add_tags(owner_id: int | None, tagged: list[tuple[Task, list[str]]]) -> None:
    """Give new tasks of ``owner_id`` (none has tags yet) their tags: one INSERT for all the links."""
    names = list(dict.fromkeys(name for _, task_names in tagged for name in task_names))
    if not names:
        return
    existing = _tags_creating_missing(owner_id, names)
    through = Task.tags.through
    through.objects.bulk_create(
        [through(task_id=task.pk, tag_id=existing[name].pk) for task, task_names in tagged for name in task_names]
    )


def check_bulk_size(count: int) -> None:
    """Refuse more than ``security.max_bulk`` tasks in one bulk create, saying how to raise the limit."""
    limit = settings.TASKHUB.security.max_bulk
    if count > limit:
        raise ValidationError(
            {
                "non_field_errors": f"at most {limit} tasks per request, got {count}: send them in several "
                "requests, or raise security.max_bulk (config.yaml, or TASKHUB_SECURITY_MAX_BULK)"
            }
        )


def _same_new_policy_names(cleaned: list[dict[str, Any] | None], errors: list[dict[str, list[str]]]) -> None:
    """Refuse a later item creating a retry policy of a name an earlier item of the list creates."""
    first: dict[str, int] = {}
    for index, clean in enumerate(cleaned):
        policy = clean["retry_policy"] if clean is not None else None
        if policy is None or policy.pk is not None or not policy.name:
            continue
        if policy.name in first:
            errors[index].setdefault("retry_policy", []).append(
                f"a retry policy named {policy.name!r} is created by item {first[policy.name]} of this list; "
                "give each new policy its own name, or create it once and pass its id"
            )
        else:
            first[policy.name] = index


def task_create(*, data: dict[str, Any], owner: Any = None, actor: Any = None) -> Task:
    """Create a task; an IMMEDIATE one is queued for dispatch as soon as the transaction commits.

    ``actor`` (default: the owner) is who the audit trail names. The same path as :func:`task_create_many`.
    """
    try:
        (task,) = task_create_many(items=[data], owner=owner, actor=actor)
    except BulkValidationError as exc:
        raise ValidationError(exc.items[0]) from None
    return task


def task_create_many(*, items: list[dict[str, Any]], owner: Any = None, actor: Any = None) -> list[Task]:
    """Create tasks of ``owner``, all or none, in the order given; IMMEDIATE ones are queued for dispatch.

    Every item is validated by the same rules as a single create (``_clean``); any error raises a
    BulkValidationError (``items``: one errors dict per item, aligned with ``items``; the API answers the
    bad ones by index) and nothing is written. At
    most ``security.max_bulk`` items per call. The writes are one transaction of bulk INSERTs (tasks,
    tag links, dependency links, first attempts, one audit entry per task), and the dispatcher is woken
    once after commit. An item cannot depend on another item of the same call (its id is not known yet):
    create the upstream tasks first. Each task's created_at is one microsecond after the previous one's, so
    lists ordered by creation (and the dispatcher, among equal priorities) keep the order given.
    ``actor`` (default: the owner) is who asks and who the audit trail names.
    """
    check_bulk_size(len(items))
    actor = actor or owner
    wanted = [
        dependency.get("id") if isinstance(dependency, dict) else dependency  # {"id": ..., "mode": ...}
        for item in items
        if isinstance(item, dict) and isinstance(item.get("dependencies"), list | tuple)
        for dependency in item["dependencies"]
    ]
    known = validation.visible_dependencies(wanted, actor) if wanted else {}
    cleaned: list[dict[str, Any] | None] = []
    errors: list[dict[str, list[str]]] = []
    for item in items:
        if not isinstance(item, dict):
            cleaned.append(None)
            errors.append({"non_field_errors": [f"must be a JSON object of task fields, got {type(item).__name__}"]})
            continue
        try:
            cleaned.append(_clean(item, None, actor=actor, owner=owner, known=known))
            errors.append({})
        except ValidationError as exc:
            cleaned.append(None)
            errors.append(exc.errors)
    _same_new_policy_names(cleaned, errors)
    if any(errors):
        raise BulkValidationError(errors)
    valid = [clean for clean in cleaned if clean is not None]
    now = clock.now()
    crontabs: dict[Any, CrontabSchedule] = {}
    with transaction.atomic():
        tasks = []
        for index, clean in enumerate(valid):
            policy = _save_policy(clean["retry_policy"], task_name=clean["name"], owner=owner)
            task = Task(
                **{field: clean[field] for field in COLUMNS},
                secret_parameters=encryption.encrypt_json(clean["secret_parameters"]),
                owner=owner,
                retry_policy=policy,
                created_at=now + timedelta(microseconds=index),
            )
            _sync_schedule(task, now, crontabs)
            tasks.append(task)
        Task.objects.bulk_create(tasks)
        _add_tags(owner.pk if owner is not None else None, [(t, c["tags"]) for t, c in zip(tasks, valid, strict=True)])
        through = Task.dependencies.through
        through.objects.bulk_create(
            [
                through(from_task_id=task.pk, to_task_id=d.pk)
                for task, clean in zip(tasks, valid, strict=True)
                for d in clean["dependencies"]
            ]
        )
        any_run = Task.any_run_dependencies.through
        any_run.objects.bulk_create(
            [
                any_run(from_task_id=task.pk, to_task_id=d.pk)
                for task, clean in zip(tasks, valid, strict=True)
                for d in clean["any_run_dependencies"]
            ]
        )
        immediate = [task for task in tasks if task.task_type == TaskType.IMMEDIATE]
        TaskResult.objects.bulk_create([attempts.build(task, now=task.created_at) for task in immediate])
        downstream = [
            task
            for task, clean in zip(tasks, valid, strict=True)
            if clean["dependencies"] and task.task_type == TaskType.IMMEDIATE
        ]
        if downstream:
            lifecycle.fail_if_any_upstream_failed(downstream)
        audit.record_many([_created_entry(task, clean, actor) for task, clean in zip(tasks, valid, strict=True)])
        transaction.on_commit(dispatcher.wake)
    for task in tasks:
        logger.info("task created: %s (%s, %s)", task.name, task.pk, task.task_type)
    return tasks


def _created_entry(task: Task, clean: dict[str, Any], actor: Any) -> TaskAudit:
    """The audit entry of a new task: every field it was given, secret parameters by their keys only."""
    any_run = {d.pk for d in clean["any_run_dependencies"]}
    dependencies = [audit.dependency_name(d.name, d.pk in any_run) for d in clean["dependencies"]]
    written = audit.snapshot(task, tags=clean["tags"], dependencies=dependencies)
    created = {f: v for f, v in written.items() if v not in (None, "", [], {})}
    if clean["secret_parameters"]:
        created["secret_parameters"] = encryption.mask(clean["secret_parameters"])
    return audit.entry(task, AuditAction.CREATED, actor=actor, changes={f: [None, v] for f, v in created.items()})


def task_update(*, task: Task, data: dict[str, Any], actor: Any = None) -> Task:
    """Change a task's fields; schedules, waiting attempts and dependencies follow in the same transaction."""
    current = {field: getattr(task, field) for field in EDITABLE_FIELDS if field not in ("tags", "dependencies")}
    current["tags"] = list(task.tags.values_list("name", flat=True))
    current["dependencies"] = list(task.dependencies.values_list("pk", flat=True))  # plain ids keep their modes
    merged = {**current, **{k: v for k, v in data.items() if k in EDITABLE_FIELDS}}
    if data.get("secret_parameters") is not None:  # absent or None: the stored secrets stay
        merged["secret_parameters"] = data["secret_parameters"]
    clean = _clean(merged, task, actor=actor)
    now = clock.now()
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        before = audit.snapshot(task)
        for field in COLUMNS:
            setattr(task, field, clean[field])
        secret_changed = ("secret_parameters" in merged or clean["secrets_dropped"]) and clean[
            "secret_parameters"
        ] != clean["stored_secret"]
        if secret_changed:
            task.secret_parameters = encryption.encrypt_json(clean["secret_parameters"])
        task.retry_policy = _save_policy(clean["retry_policy"], task_name=task.name, owner=task.owner)
        _sync_schedule(task, now)
        task.save()
        _set_tags(task, clean["tags"])
        task.dependencies.set(clean["dependencies"])
        task.any_run_dependencies.set(clean["any_run_dependencies"])
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
    """Delete a task unless other tasks depend on it; in-flight attempts are revoked first.

    The refusal names the dependents ``actor`` may see and only counts the others.
    """
    dependents = list(task.dependents.values_list("pk", "name"))
    if dependents:
        raise ConflictError(
            f"cannot delete {task.name!r}: tasks depend on it: {selectors.describe_tasks(actor, dependents)}; "
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
    cancelled = dispatcher.cancel(task, reason=reason, actor=actor)
    if not cancelled:
        raise ConflictError(f"{task.name!r} has nothing to cancel: it is {task.status}", current_status=task.status)
    return cancelled


def task_run_now(*, task: Task, dispatch: bool = True, actor: Any = None, downstream: str | None = None) -> TaskResult:
    """Start a new run now (also for SCHEDULED tasks, outside their schedule).

    ``dispatch=False`` leaves the new attempt to the caller (``manage.py run_task`` runs it in-process).
    ``downstream``: bring dependents along (see :func:`task_retry`).
    """
    return _start_run(task, dispatch=dispatch, actor=actor, action=AuditAction.RUN, downstream=downstream)


#: What ``downstream`` may ask a retry or run to bring along: dependents that failed because of the task
#: (transitively), or every dependent.
DOWNSTREAM = ("failed", "all")


@dataclass
class Downstream:
    """The dependents a run or retry brought along (``services.downstream_of(result)``)."""

    upstream: str
    which: str
    started: list[str] = dataclasses.field(default_factory=list)  #: got a new run
    waiting: list[str] = dataclasses.field(default_factory=list)  #: already had a run waiting: left as it is
    skipped: list[str] = dataclasses.field(default_factory=list)  #: seen but not brought: "name (paused)"
    hidden: int = 0  #: dependents the actor may not see or change: not touched
    pipeline_run: int | None = None  #: the pipeline run they run in (GET /pipeline_runs/{id})

    def summary(self) -> str:
        """In words, for the admin's message, the API's answer and the CLI."""
        parts = [
            f"{len(self.started)} dependent(s) run again" + (f": {', '.join(self.started)}" if self.started else "")
        ]
        if self.waiting:
            parts.append(f"already waiting: {', '.join(self.waiting)}")
        if self.skipped:
            parts.append(f"not run: {', '.join(self.skipped)}")
        if self.hidden:
            parts.append(f"{self.hidden} dependent(s) you cannot see or change were not touched")
        return "; ".join(parts)


def downstream_of(result: TaskResult) -> Downstream | None:
    """What :func:`task_retry` or :func:`task_run_now` brought along with ``result`` (None: no downstream asked)."""
    found = getattr(result, "downstream", None)
    return found if isinstance(found, Downstream) else None


def _may_change(actor: Any, task: Task) -> bool:
    if actor is None:
        return True
    return (
        selectors.may_see_task(actor, task)
        and bool(getattr(actor, "has_perm", None))
        and actor.has_perm("scheduling.change_task")
    )


def _downstream_tasks(upstream: Task, which: str, actor: Any, outcome: Downstream) -> list[tuple[Task, Task]]:
    """Walk the dependents of ``upstream`` breadth first: (dependent, the task that brought it), in that order.

    ``failed``: only those that failed because of the task that reached them. A dependent the actor may not
    see or change, or a paused one, is not brought, nor is what lies below it (it would wait on it forever).
    """
    chosen: list[tuple[Task, Task]] = []
    seen = {upstream.pk}
    frontier = [upstream]
    while frontier:
        parent = frontier.pop(0)
        for dependent in parent.dependents.order_by("name", "pk"):
            if dependent.pk in seen:
                continue
            if which == "failed" and not lifecycle.failed_because_of(dependent, parent):
                continue
            seen.add(dependent.pk)
            if not _may_change(actor, dependent):
                outcome.hidden += 1
                continue
            if not dependent.enabled:
                outcome.skipped.append(f"{dependent.name} (paused)")
                continue
            chosen.append((dependent, parent))
            frontier.append(dependent)
    return chosen


def _check_downstream(downstream: Any) -> None:
    if downstream is not None and downstream not in DOWNSTREAM:
        raise ValidationError({"downstream": f"must be one of {', '.join(DOWNSTREAM)}, got {downstream!r}"})


def _bring_dependents(
    task: Task,
    outcome: Downstream,
    *,
    actor: Any,
    action: str,
    now: datetime,
    run: PipelineRun,
    available_at: datetime | None = None,
    skip_waiting: bool = True,
    audit_each: bool = True,
) -> list[Task]:
    """Give each dependent ``outcome.which`` selects one attempt in the pipeline run ``run`` (each task once).

    ``skip_waiting``: a dependent with a run already waiting is left as it is (not part of the run).
    """
    brought: list[Task] = []
    # The upstream's new run is written first (it is no longer FAILED), then every dependent's: the
    # pipeline-run rule makes each wait for its dependencies' runs in the same pipeline run.
    for dependent, parent in _downstream_tasks(task, outcome.which, actor, outcome):
        locked = Task.objects.select_for_update().get(pk=dependent.pk)
        if skip_waiting and TaskResult.objects.filter(task=locked, status__in=WAITING).exists():
            outcome.waiting.append(locked.name)
            continue
        attempts.build(locked, now=now, available_at=available_at, pipeline_run_id=run.pk).save()
        lifecycle.refresh_task(locked.pk, reason="")
        if audit_each:
            detail = f"brought along by {action} of {task.name!r} (downstream={outcome.which}, pipeline run {run.pk})"
            if parent.pk != task.pk:
                detail += f", through {parent.name!r}"
            audit.record(locked, action, actor=actor, detail=detail)
        outcome.started.append(locked.name)
        brought.append(locked)
    return brought


def _start_run(task: Task, *, dispatch: bool, actor: Any, action: str, downstream: str | None = None) -> TaskResult:
    _check_downstream(downstream)
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        if TaskResult.objects.filter(task=task, status__in=WAITING).exists():
            raise ConflictError(f"{task.name!r} already has a run waiting to start", current_status=task.status)
        now = clock.now()
        run: PipelineRun | None = None
        if downstream:
            origin = PipelineOrigin.RETRY if action == AuditAction.RETRIED else PipelineOrigin.RUN
            run = PipelineRun.objects.create(
                root=task, which=downstream, origin=origin, actor=_person(actor), created_at=now
            )
        result = attempts.build(task, now=now, pipeline_run_id=run.pk if run is not None else None)
        result.save()
        lifecycle.refresh_task(task.pk, reason="")
        outcome = Downstream(task.name, downstream) if downstream else None
        brought: list[Task] = []
        if outcome is not None and run is not None:
            outcome.pipeline_run = run.pk
            brought = _bring_dependents(task, outcome, actor=actor, action=action, now=now, run=run)
        run_id = run.pk if run is not None else None
        lifecycle.fail_if_upstream_failed(task, pipeline_run_id=run_id)
        for dependent in brought:  # a dependency outside the pipeline run may still have failed
            lifecycle.fail_if_upstream_failed(dependent, pipeline_run_id=run_id)
        audit.record(
            task,
            action,
            actor=actor,
            detail=f"with downstream={outcome.which} (pipeline run {run_id}): {outcome.summary()}"
            if outcome is not None
            else "",
        )
        if dispatch:
            transaction.on_commit(dispatcher.wake)
    if outcome is not None:
        result.downstream = outcome  # type: ignore[attr-defined]  # read through downstream_of()
    return result


def task_retry(*, task: Task, actor: Any = None, downstream: str | None = None) -> TaskResult:
    """Run a FAILED, TIMEOUT or CANCELLED task again from attempt 1.

    ``downstream="failed"`` also gives a new run to every dependent (transitively) that failed because of it,
    ``"all"`` to every dependent; each waits for its dependencies' new runs (run-scoped dependencies), so they
    run in dependency order, and each is audited naming the task that brought it. Dependents the actor may
    not see or change are counted, not touched (``downstream_of(result)`` says what happened).
    """
    _check_downstream(downstream)
    if task.status not in lifecycle.TASK_FAILED:
        raise ConflictError(
            f"only a FAILED, TIMEOUT or CANCELLED task can be retried; {task.name!r} is {task.status}",
            current_status=task.status,
        )
    return _start_run(task, dispatch=True, actor=actor, action=AuditAction.RETRIED, downstream=downstream)


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


# Retry policies and tags: owned or shared (scheduling.selectors); a change is audited on every task it affects.


def _person(actor: Any) -> Any:
    return actor if actor is not None and getattr(actor, "is_authenticated", False) and actor.pk else None


def _owner_for_new(actor: Any, shared: bool, model: type[OwnedModel]) -> Any:
    if shared:
        if not selectors.may_share(actor, model):
            what = model._meta.verbose_name_plural
            raise ValidationError({"owner": f"only a user allowed to share {what} may create a shared one"})
        return None
    return _person(actor)


def _check_manage(actor: Any, obj: RetryPolicy | Tag) -> None:
    what = obj._meta.verbose_name
    if not selectors.visible(type(obj), actor).filter(pk=obj.pk).exists():
        raise ValidationError({"id": f"unknown {what} {obj.pk}"})
    if not selectors.may_manage(actor, obj):
        whose = "a shared" if obj.owner_id is None else "another user's"
        raise ValidationError({"id": f"{obj.name!r} is {whose} {what}: you may change only your own"})


def _affected(obj: RetryPolicy | Tag) -> list[Task]:
    return list(obj.tasks.select_for_update().order_by("pk")) if obj.pk else []


def policy_validate(
    *, data: dict[str, Any], policy: RetryPolicy | None = None, actor: Any = None, shared: bool = False
) -> RetryPolicy:
    """Return the policy ``policy_save`` would write (unsaved); raise ValidationError if the actor may not."""
    values = {k: v for k, v in data.items() if k in validation.RETRY_POLICY_FIELDS}
    if policy is None:
        owner = _owner_for_new(actor, shared, RetryPolicy)
        if not values.get("name"):
            raise ValidationError({"name": "is required"})
        return validation.validate_retry_policy(values, owner=owner)
    _check_manage(actor, policy)
    return validation.validate_retry_policy(values, instance=RetryPolicy.objects.get(pk=policy.pk))


def policy_save(
    *, data: dict[str, Any], policy: RetryPolicy | None = None, actor: Any = None, shared: bool = False
) -> RetryPolicy:
    """Create a retry policy (the actor's, or shared when ``shared``) or change one the actor manages.

    A change writes an audit entry on every task that uses the policy, with the fields that changed.
    """
    if policy is None:
        new = policy_validate(data=data, actor=actor, shared=shared)
        new.save()
        return new
    _check_manage(actor, policy)
    values = {k: v for k, v in data.items() if k in validation.RETRY_POLICY_FIELDS}
    with transaction.atomic():
        stored = RetryPolicy.objects.select_for_update().get(pk=policy.pk)
        before = {f: getattr(stored, f) for f in validation.RETRY_POLICY_FIELDS}
        changed = validation.validate_retry_policy(values, instance=stored)
        after = {f: getattr(changed, f) for f in validation.RETRY_POLICY_FIELDS}
        delta = {f: [before[f], after[f]] for f in validation.RETRY_POLICY_FIELDS if before[f] != after[f]}
        changed.save()
        if delta:
            for task in _affected(changed):
                audit.record(
                    task,
                    AuditAction.CHANGED,
                    actor=actor,
                    changes={f"retry_policy.{f}": v for f, v in delta.items()},
                    detail=f"retry policy {before['name']!r} changed",
                )
    return changed


def policy_delete(*, policy: RetryPolicy, actor: Any = None) -> None:
    """Delete a retry policy the actor manages, unless tasks use it (the refusal counts the ones they cannot see)."""
    _check_manage(actor, policy)
    users = list(policy.tasks.values_list("pk", "name"))
    if users:
        raise ConflictError(
            f"cannot delete retry policy {policy.name!r}: tasks use it: {selectors.describe_tasks(actor, users)}; "
            "give those tasks another policy first"
        )
    policy.delete()


def tag_validate(*, name: Any, tag: Tag | None = None, actor: Any = None, shared: bool = False) -> tuple[str, Any]:
    """Return (name, owner id) that ``tag_save`` would write; raise ValidationError if the actor may not."""
    try:
        cleaned = validation.clean_tags([name] if isinstance(name, str) else name)
    except ValidationError as exc:
        raise ValidationError({"name": exc.errors["tags"]}) from None
    if len(cleaned) != 1:
        raise ValidationError({"name": "must be one tag name"})
    name = cleaned[0]
    if tag is None:
        owner = _owner_for_new(actor, shared, Tag)
        owner_id = owner.pk if owner is not None else None
    else:
        _check_manage(actor, tag)
        owner_id = tag.owner_id
        if tag.name in registry and name != tag.name:
            raise ValidationError({"name": f"{tag.name!r} is a handler's tag: it names what tasks run, keep it"})
    if name in registry and owner_id is not None:
        raise ValidationError({"name": f"{name!r} is a handler's tag: handler tags are shared"})
    same_name = Tag.objects.filter(name=name, owner_id=owner_id)
    if (same_name.exclude(pk=tag.pk) if tag is not None else same_name).exists():
        whose = "a shared tag" if owner_id is None else "a tag of the same owner"
        raise ValidationError({"name": f"{whose} is already named {name!r}"})
    return name, owner_id


def tag_save(*, name: Any, tag: Tag | None = None, actor: Any = None, shared: bool = False) -> Tag:
    """Create a tag (the actor's, or shared) or rename one the actor manages; a rename is audited on its tasks."""
    name, owner_id = tag_validate(name=name, tag=tag, actor=actor, shared=shared)
    with transaction.atomic():
        if tag is None:
            return Tag.objects.create(name=name, owner_id=owner_id)
        stored = Tag.objects.select_for_update().get(pk=tag.pk)
        before = stored.name
        stored.name = name
        stored.save(update_fields=["name"])
        if before != name:
            for task in _affected(stored):
                names = sorted(task.tags.values_list("name", flat=True))
                old = sorted(before if n == name else n for n in names)
                audit.record(
                    task,
                    AuditAction.CHANGED,
                    actor=actor,
                    changes={"tags": [old, names]},
                    detail=f"tag {before!r} renamed",
                )
    return stored


def tag_delete(*, tag: Tag, actor: Any = None) -> None:
    """Delete a tag the actor manages; each task that carried it gets an audit entry. A handler's tag stays."""
    _check_manage(actor, tag)
    handled = list(Task.objects.filter(handler=tag.name, tags=tag).values_list("pk", "name"))
    if handled:
        raise ConflictError(
            f"cannot delete tag {tag.name!r}: it is the handler of {selectors.describe_tasks(actor, handled)}"
        )
    with transaction.atomic():
        for task in _affected(tag):
            names = sorted(task.tags.values_list("name", flat=True))
            audit.record(
                task,
                AuditAction.CHANGED,
                actor=actor,
                changes={"tags": [names, [n for n in names if n != tag.name]]},
                detail=f"tag {tag.name!r} deleted",
            )
        tag.delete()


# Attempts: only finished ones are deleted, never a task's latest result, and every deletion is audited.


def results_delete(*, results: Any, actor: Any = None) -> tuple[int, list[str]]:
    """Delete the given attempts that may go; return (how many went, why the others stayed).

    Waiting and in-flight attempts (PENDING, RETRY, QUEUED, RUNNING) stay: cancel the task first, through
    the lifecycle. The latest finished attempt of each task stays too (its last result, which its status
    comes from: the rule of result retention). The task rows are locked, so a worker's outcome cannot slip in between.
    """
    ids = [r.pk if isinstance(r, TaskResult) else r for r in results]
    refused: list[str] = []
    deleted = 0
    with transaction.atomic():
        rows = list(TaskResult.objects.filter(pk__in=ids).values_list("pk", "task_id"))
        task_ids = sorted({task_id for _, task_id in rows}, key=str)
        tasks = {t.pk: t for t in Task.objects.select_for_update().filter(pk__in=task_ids).order_by("pk")}
        for task_id in task_ids:
            task = tasks[task_id]
            wanted = [pk for pk, t in rows if t == task_id]
            latest = (
                TaskResult.objects.filter(task_id=task_id, status__in=FINISHED)
                .order_by("-created_at", "-id")
                .values("pk")
                .first()
            )
            chosen = TaskResult.objects.filter(pk__in=wanted)
            unfinished = chosen.exclude(status__in=FINISHED).count()
            if unfinished:
                refused.append(
                    f"{task.name}: {unfinished} attempt(s) waiting or running; cancel the task first, then delete them"
                )
            deletable = chosen.filter(status__in=FINISHED)
            if latest is not None and deletable.filter(pk=latest["pk"]).exists():
                refused.append(f"{task.name}: the latest finished attempt is its last result and stays")
                deletable = deletable.exclude(pk=latest["pk"])
            gone = list(deletable.values_list("pk", "task_id", "status"))
            if not gone:
                continue
            TaskResult.objects.filter(pk__in=[pk for pk, _, _ in gone]).delete()
            by_status: dict[str, int] = {}
            for _, _, status in gone:
                by_status[status] = by_status.get(status, 0) + 1
            audit.record(
                task,
                AuditAction.ATTEMPTS_DELETED,
                actor=actor,
                detail=f"{len(gone)} finished attempt(s) deleted: "
                + ", ".join(f"{s} {n}" for s, n in sorted(by_status.items())),
            )
            deleted += len(gone)
            transaction.on_commit(functools.partial(retention.remove_artifacts, gone))
    return deleted, refused


# Backfill: the cron fires of a past range, each once, oldest first, each with its dependents as a pipeline run.


@dataclass
class Backfill:
    """What :func:`task_backfill` did (or, with ``dry_run``, would do)."""

    task: str
    start: datetime
    end: datetime
    fires: list[datetime]  #: every fire time of the range, oldest first
    skipped: list[datetime] = dataclasses.field(default_factory=list)  #: fires that already have a run
    created: list[datetime] = dataclasses.field(default_factory=list)  #: fires given a run now
    pipeline_runs: list[int] = dataclasses.field(default_factory=list)  #: one per created fire, with downstream
    downstream: Downstream | None = None
    dry_run: bool = False

    def summary(self) -> str:
        """In words, for the admin's message, the CLI and the audit trail."""
        span = f"{self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} UTC"
        if self.dry_run:
            head = f"dry run, nothing written: {len(self.fires)} fire(s) in {span}"
            if self.skipped:
                head += f", {len(self.skipped)} already ran and would be skipped"
            return head
        head = f"{len(self.fires)} fire(s) in {span}: {len(self.created)} run(s) created"
        if self.skipped:
            head += f", {len(self.skipped)} already ran (skipped)"
        if self.downstream is not None:
            head += f"; downstream={self.downstream.which}, a pipeline run each: {self.downstream.summary()}"
        return head


def backfill_fires(task: Task, start: datetime, end: datetime) -> list[datetime]:
    """The task's cron fire times in [start, end], oldest first: the live fires' function and DST rule
    (engine/cron.py). Refuses a range of more than ``scheduler.max_backfill`` fires, naming the count."""
    limit = settings.TASKHUB.scheduler.max_backfill
    fires: list[datetime] = []
    for moment in cron.fire_times(task.cron_expr, task.timezone, start - timedelta(microseconds=1)):
        if moment > end:
            break
        fires.append(moment)
        if len(fires) > limit:
            counted = len(fires) + sum(1 for _ in _until(task, moment, end, limit * 10))
            more = "" if counted <= limit * 11 else " or more"
            raise ValidationError(
                {
                    "range": f"{counted}{more} cron fires between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} "
                    f"UTC, more than the limit of {limit} (scheduler.max_backfill): backfill a shorter range"
                }
            )
    return fires


def _until(task: Task, after: datetime, end: datetime, cap: int) -> Any:
    for n, moment in enumerate(cron.fire_times(task.cron_expr, task.timezone, after)):
        if moment > end or n >= cap:
            return
        yield moment


def _check_backfill(task: Task, start: datetime, end: datetime, downstream: str | None) -> None:
    _check_downstream(downstream)
    if downstream not in (None, "all"):
        raise ValidationError({"downstream": f"a backfill brings every dependent (all) or none, got {downstream!r}"})
    if task.task_type != TaskType.SCHEDULED:
        raise ValidationError(
            {"task": f"{task.name!r} is {task.task_type}: only a SCHEDULED task has fires to backfill"}
        )
    if not task.enabled:
        raise ValidationError({"task": f"{task.name!r} is paused: resume it first, or its backfilled runs never start"})
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationError({"range": "start and end need a time zone (or are read in the task's)"})
    if end < start:
        raise ValidationError({"end": f"ends ({end.isoformat()}) before it starts ({start.isoformat()})"})
    now = clock.now()
    if end > now:
        raise ValidationError(
            {
                "end": f"{end.isoformat()} is in the future (now {now:%Y-%m-%dT%H:%M:%S}Z): "
                "a backfill runs past fires only"
            }
        )


def task_backfill(
    *,
    task: Task,
    start: datetime,
    end: datetime,
    downstream: str | None = None,
    dry_run: bool = False,
    actor: Any = None,
) -> Backfill:
    """Run the cron fires of ``task`` in [start, end] that have no run yet, once each, oldest first.

    The fire times are the live fires' (``engine/cron.py``, in the task's time zone, the same DST rule). Each
    new run has ``fire_time`` and ``available_at`` = its fire, so the dispatcher's age order runs the oldest
    first, within ``scheduler.concurrency`` and ``max_instances`` as any waiting run; a fire that already has a
    run (the unique first attempt per (task, fire_time)) is skipped and reported. ``downstream="all"``: each
    fire is its own pipeline run with every dependent the actor may change, so the dependent's run for fire F
    waits for the task's run for fire F. ``dry_run`` lists the fires and writes nothing. Refused: a task that
    is not SCHEDULED or is paused, an end before the start or in the future, more than
    ``scheduler.max_backfill`` fires. Audited once on the task (the range and counts), once on each dependent.
    """
    _check_backfill(task, start, end, downstream)
    fires = backfill_fires(task, start, end)
    outcome = Downstream(task.name, downstream) if downstream else None
    report = Backfill(task=task.name, start=start, end=end, fires=fires, downstream=outcome, dry_run=dry_run)
    if dry_run:
        report.skipped = _fired(task, fires)
        return report
    now = clock.now()
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        report.skipped = _fired(task, fires)
        done = set(report.skipped)
        report.created = [fire for fire in fires if fire not in done]
        dependents: list[Task] = []
        if outcome is not None:
            chosen = _downstream_tasks(task, outcome.which, actor, outcome)
            ids = sorted((d.pk for d, _ in chosen), key=str)
            locked = {t.pk: t for t in Task.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
            dependents = [locked[d.pk] for d, _ in chosen]
            outcome.started = [d.name for d in dependents]
        if report.created:
            runs: list[PipelineRun | None] = [None] * len(report.created)
            if outcome is not None:
                created_runs = PipelineRun.objects.bulk_create(
                    PipelineRun(
                        root=task,
                        which=outcome.which,
                        origin=PipelineOrigin.BACKFILL,
                        fire_time=fire,
                        actor=_person(actor),
                        created_at=now,
                    )
                    for fire in report.created
                )
                runs = list(created_runs)
                report.pipeline_runs = [run.pk for run in created_runs]
            rows: list[TaskResult] = []
            for fire, run in zip(report.created, runs, strict=True):
                run_id = run.pk if run is not None else None
                rows.append(attempts.build(task, now=now, fire_time=fire, available_at=fire, pipeline_run_id=run_id))
                rows.extend(
                    attempts.build(dependent, now=now, available_at=fire, pipeline_run_id=run_id)
                    for dependent in dependents
                )
            TaskResult.objects.bulk_create(rows)
            lifecycle.runs_added(Task.objects.filter(pk__in=[task.pk, *(d.pk for d in dependents)]), now=now)
            _fail_backfill_blocked(task, dependents, report.pipeline_runs)
            span = f"fires {report.created[0]:%Y-%m-%d %H:%M} .. {report.created[-1]:%Y-%m-%d %H:%M} UTC"
            for dependent in dependents:
                audit.record(
                    dependent,
                    AuditAction.BACKFILLED,
                    actor=actor,
                    detail=f"brought along by backfill of {task.name!r} (downstream=all): "
                    f"{len(report.created)} run(s), {span}, a pipeline run each",
                )
            transaction.on_commit(dispatcher.wake)
        audit.record(task, AuditAction.BACKFILLED, actor=actor, detail=report.summary()[:500])
    logger.info("backfill of %s: %s", task.name, report.summary())
    return report


def _fired(task: Task, fires: list[datetime]) -> list[datetime]:
    """The fires among ``fires`` that already have a run (a first attempt with that fire_time)."""
    if not fires:
        return []
    have = set(
        TaskResult.objects.filter(task=task, attempt=1, fire_time__gte=fires[0], fire_time__lte=fires[-1]).values_list(
            "fire_time", flat=True
        )
    )
    return [fire for fire in fires if fire in have]


def _fail_backfill_blocked(task: Task, dependents: list[Task], run_ids: list[int]) -> None:
    """A dependency outside the backfill that already ended badly fails the new runs at once (as a fire does)."""
    inside = {task.pk, *(d.pk for d in dependents)}
    for member in [task, *dependents]:
        if not member.dependencies.filter(status__in=lifecycle.TASK_FAILED).exclude(pk__in=inside).exists():
            continue
        if not run_ids:
            lifecycle.fail_if_upstream_failed(member)
        for run_id in run_ids:
            lifecycle.fail_if_upstream_failed(member, pipeline_run_id=run_id)


def backfill_moment(value: Any, task: Task, field: str) -> datetime:
    """A backfill bound from ISO 8601 text or a datetime; without an offset it is read in the task's time zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError(
                {field: f"expected an ISO 8601 date or time (2026-03-01T02:30), got {value!r}"}
            ) from None
    if not isinstance(value, datetime):
        raise ValidationError({field: f"expected an ISO 8601 date or time, got {value!r}"})
    if value.tzinfo is None:
        value = value.replace(tzinfo=cron.timezone_of(task.timezone))
    return value
