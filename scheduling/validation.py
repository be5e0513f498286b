"""Task validation in one place, used by the admin, the API, the CLI and the services."""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models

from scheduling import selectors
from scheduling.engine import cron
from scheduling.handlers import registry
from scheduling.models import DependencyMode, RetryPolicy, Tag, Task, TaskType
from taskhub import encryption
from taskhub.exceptions import ConfigError, ValidationError

# The limits on one task, the same for the admin form, the API, the CLI and bulk creation (seed_examples):
# every path calls services._clean(), which applies them here. Parameters size and the timeout ceiling
# are configuration (security.max_parameters_bytes, scheduler.max_timeout_seconds); the lengths are the
# database columns'. The API's serializer only checks JSON types.
MAX_TAGS = 50
MAX_DEPENDENCIES = 100


def _max_length(model: type[models.Model], name: str) -> int:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field) and isinstance(field.max_length, int), f"{model.__name__}.{name}"
    return field.max_length


NAME_MAX_LENGTH = _max_length(Task, "name")
TAG_MAX_LENGTH = _max_length(Tag, "name")
CRON_MAX_LENGTH = _max_length(Task, "cron_expr")


def validate_name(name: Any) -> str:
    """Return the stripped task name: 1-NAME_MAX_LENGTH printable characters."""
    if isinstance(name, int | float) and not isinstance(name, bool):
        name = str(name)  # e.g. the CLI's --set name=2024, read as JSON
    if name is not None and not isinstance(name, str):
        raise ValidationError({"name": f"must be a string, got a {type(name).__name__}"})
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": f"is required: 1-{NAME_MAX_LENGTH} printable characters"})
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError({"name": f"must be at most {NAME_MAX_LENGTH} characters, got {len(name)}"})
    if has_control_characters(name):
        raise ValidationError({"name": "must not contain control characters (line breaks, escape, NUL...)"})
    return name


def validate_cron(task_type: str, cron_expr: str, tz_name: str) -> str:
    """Return the normalised cron for a SCHEDULED task ('' for IMMEDIATE) or raise."""
    errors: dict[str, str] = {}
    if not isinstance(cron_expr, str | None):
        raise ValidationError({"cron_expr": f"must be a string of 5 fields, got {cron_expr!r}"})
    cron_expr = (cron_expr or "").strip()
    if not isinstance(tz_name, str):
        errors["timezone"] = f"must be an IANA time zone name such as UTC or Europe/Paris, got {tz_name!r}"
    else:
        try:
            cron.timezone_of(tz_name)
        except cron.CronError as exc:
            errors["timezone"] = str(exc)
    if task_type == TaskType.SCHEDULED:
        if not cron_expr:
            errors["cron_expr"] = "is required for a SCHEDULED task (5 fields, e.g. '0 0 * * *')"
        else:
            try:
                cron_expr = cron.validate(cron_expr)
            except cron.CronError as exc:
                errors["cron_expr"] = str(exc)
            else:
                if len(cron_expr) > CRON_MAX_LENGTH:
                    errors["cron_expr"] = f"must be at most {CRON_MAX_LENGTH} characters, got {len(cron_expr)}"
    elif cron_expr:
        errors["cron_expr"] = "is only allowed on SCHEDULED tasks; set task_type to SCHEDULED or leave it empty"
    if errors:
        raise ValidationError(errors)
    return cron_expr


def validate_timeout(timeout_seconds: int | None) -> None:
    ceiling = settings.TASKHUB.scheduler.max_timeout_seconds
    if timeout_seconds is None:
        return
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int) or timeout_seconds <= 0:
        raise ValidationError(
            {"timeout_seconds": f"must be a positive whole number of seconds, got {timeout_seconds!r}"}
        )
    if timeout_seconds > ceiling:
        raise ValidationError(
            {"timeout_seconds": f"must be at most {ceiling} (scheduler.max_timeout_seconds), got {timeout_seconds}"}
        )


def validate_handler(tags: Iterable[str], parameters: Any) -> str:
    """Return the task's handler tag after checking its parameters against the schema."""
    tag = registry.handler_tag(tags)
    if not isinstance(parameters, dict):
        raise ValidationError({"parameters": "must be a JSON object"})
    registry.validate_parameters(tag, parameters)
    return tag


def validate_parameters_size(field: str, value: Any) -> None:
    """Refuse parameters whose JSON is larger than security.max_parameters_bytes."""
    limit = settings.TASKHUB.security.max_parameters_bytes
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8"))
    except (TypeError, ValueError, RecursionError):
        raise ValidationError({field: "must be a JSON object"}) from None
    if size > limit:
        raise ValidationError(
            {field: f"is {size} bytes as JSON, more than the limit of {limit} (security.max_parameters_bytes)"}
        )


#: Request headers that carry a credential: never stored in plain ``parameters``.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"})


def refuse_plain_credentials(parameters: Any) -> None:
    """Refuse credential headers in plain parameters, which are stored and shown as they are."""
    headers = parameters.get("headers") if isinstance(parameters, dict) else None
    if not isinstance(headers, dict):
        return
    found = sorted(str(name) for name in headers if str(name).lower() in CREDENTIAL_HEADERS)
    if found:
        names = ", ".join(f"headers.{name}" for name in found)
        raise ValidationError(
            {
                "parameters": f"{names} carries a credential, and parameters are stored and shown as they are: "
                'put it in secret_parameters (e.g. {"headers": {"Authorization": "..."}}), stored encrypted '
                "and never shown"
            }
        )


def stored_secret_parameters(task: Task | None) -> dict[str, Any]:
    """Return the task's decrypted secret parameters ({} when it has none)."""
    if task is None or not task.secret_parameters:
        return {}
    try:
        return encryption.decrypt_json(task.secret_parameters)
    except ConfigError as exc:
        raise ValidationError(
            {"secret_parameters": f"the stored secret parameters cannot be read ({exc}); send new ones to replace them"}
        ) from None


def validate_secret_parameters(task: Task | None, data: dict[str, Any]) -> dict[str, Any]:
    """Return the secret parameters the task will have: those given (a JSON object), else the stored ones."""
    value = data.get("secret_parameters")
    if value is None:
        return stored_secret_parameters(task)
    if not isinstance(value, dict):
        raise ValidationError({"secret_parameters": f"must be a JSON object, got a {type(value).__name__}"})
    if value and not encryption.configured():
        raise ValidationError(
            {
                "secret_parameters": f"cannot be stored: no encryption key is configured; set {encryption.KEYS_SETTING}"
                " (make a key with `manage.py encryption_keys --generate`)"
            }
        )
    validate_json_object("secret_parameters", value)
    validate_parameters_size("secret_parameters", value)
    return value


def destination_changed(task: Task | None, data: dict[str, Any], secret: dict[str, Any]) -> bool:
    """Whether an update points the task's ``url`` at another origin (scheme, host, port) than it had."""
    from scheduling.handlers.http_guard import origin

    if task is None or task.pk is None or not isinstance(data.get("parameters"), dict):
        return False
    # From the database: a model form has already copied the new parameters onto the instance.
    stored = Task.objects.filter(pk=task.pk).values_list("parameters", flat=True).first()
    before = encryption.merge(stored or {}, secret).get("url")
    after = encryption.merge(data["parameters"], secret).get("url")
    if before == after:
        return False
    return before is not None and origin(before) != origin(after)


def split_dependencies(task: Task | None, value: Any) -> tuple[Any, set[str]]:
    """Read ``dependencies`` as given: task ids (or tasks), or ``{"id": ..., "mode": "fresh" | "any"}``.

    Return the ids (for :func:`validate_dependencies`) and the ids, as text, of those in ``any`` mode. A plain
    id keeps the mode its dependency already has on ``task`` (``fresh`` for a new one).
    """
    if not isinstance(value, list | tuple):
        return value, set()
    current = (
        {str(pk) for pk in task.any_run_dependencies.values_list("pk", flat=True)}
        if task is not None and task.pk is not None
        else set()
    )
    ids: list[Any] = []
    any_run: set[str] = set()
    modes = [mode.value for mode in DependencyMode]
    for item in value:
        if isinstance(item, dict):
            unknown = sorted(str(key) for key in item if key not in ("id", "mode"))
            if unknown or "id" not in item:
                raise ValidationError(
                    {"dependencies": f'each dependency is a task id or {{"id": ..., "mode": ...}}, got {item!r}'}
                )
            mode = item.get("mode", DependencyMode.FRESH)
            if mode not in modes:
                raise ValidationError(
                    {"dependencies": f"mode must be one of {', '.join(modes)}, got {mode!r} (task {item['id']!r})"}
                )
            ids.append(item["id"])
            if mode == DependencyMode.ANY:
                any_run.add(_canonical_id(item["id"]))
        else:
            pk = item.pk if isinstance(item, Task) else item
            ids.append(pk)
            if _canonical_id(pk) in current:
                any_run.add(_canonical_id(pk))
    return ids, any_run


def _canonical_id(value: Any) -> str:
    """A task id as text in one spelling (lower case, hyphens), whatever way it was given."""
    try:
        return str(value if isinstance(value, UUID) else UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return str(value)


def validate_dependency_timeout(value: Any) -> None:
    """A dependency timeout is empty or a positive whole number of seconds."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationError(
            {"dependency_timeout": f"must be a positive whole number of seconds or null, got {value!r}"}
        )
    if value > 2**31 - 1:
        raise ValidationError({"dependency_timeout": f"must be at most {2**31 - 1} seconds, got {value}"})


def validate_dependencies(
    task: Task | None, dependency_ids: Iterable[UUID | str], actor: Any = None, known: dict[UUID, Task] | None = None
) -> list[Task]:
    """Return the dependency tasks; refuse self, unknown ids and cycles (naming the cycle).

    A task ``actor`` may not see is unknown to them, and is "a task you cannot see" in a cycle.
    ``known``: the tasks ``actor`` may see among these ids, already read (by :func:`visible_dependencies`,
    once for every item of a bulk create), instead of two queries here.
    """
    if dependency_ids is None:
        dependency_ids = []
    if isinstance(dependency_ids, str | bytes | dict) or not isinstance(dependency_ids, Iterable):
        raise ValidationError({"dependencies": f"must be a list of task ids, got {dependency_ids!r}"})
    ids: list[UUID] = []
    for raw in dependency_ids:
        try:
            ids.append(raw if isinstance(raw, UUID) else UUID(str(raw)))
        except (ValueError, TypeError, AttributeError):
            raise ValidationError({"dependencies": f"{raw!r} is not a task id (expected a UUID)"}) from None
    ids = list(dict.fromkeys(ids))
    if len(ids) > MAX_DEPENDENCIES:
        raise ValidationError({"dependencies": f"at most {MAX_DEPENDENCIES} dependencies, got {len(ids)}"})
    if task is not None and task.pk in ids:
        raise ValidationError({"dependencies": f"a task cannot depend on itself ({task.name})"})
    if known is not None:
        found = {i: known[i] for i in ids if i in known}
    else:
        found = visible_dependencies(ids, actor)
    unknown = [str(i) for i in ids if i not in found]
    if unknown:
        raise ValidationError({"dependencies": f"unknown task id(s): {', '.join(unknown)}"})
    if task is not None and ids:
        cycle = _find_cycle(task, ids)
        if cycle:
            seen = selectors.visible_task_ids(actor, [pk for pk, _ in cycle])
            names = " -> ".join(name if pk in seen else "(a task you cannot see)" for pk, name in cycle)
            raise ValidationError({"dependencies": f"would create a cycle: {names}"})
    return [found[i] for i in ids]


def visible_dependencies(dependency_ids: Iterable[Any], actor: Any = None) -> dict[UUID, Task]:
    """The tasks among ``dependency_ids`` that ``actor`` may see, by id (ids that are not UUIDs are skipped).

    Read 2,000 ids at a time, so a bulk create's many dependencies stay within SQLite's variable limit.
    """
    ids: set[UUID] = set()
    for raw in dependency_ids:
        try:
            ids.add(raw if isinstance(raw, UUID) else UUID(str(raw)))
        except (ValueError, TypeError, AttributeError):
            continue
    ordered, found = sorted(ids), {}
    for start in range(0, len(ordered), 2000):
        chunk = ordered[start : start + 2000]
        visible = selectors.visible_task_ids(actor, chunk)
        found.update({t.pk: t for t in Task.objects.filter(pk__in=[i for i in chunk if i in visible])})
    return found


def _find_cycle(task: Task, new_ids: list[UUID]) -> list[tuple[UUID, str]] | None:
    """Return (id, name) along a path from a new dependency back to ``task``, if one exists."""
    edges: dict[UUID, list[UUID]] = {}
    through = Task.dependencies.through
    # Walk upstream from the new dependencies, one query per level of the graph.
    frontier, parent = set(new_ids), {i: task.pk for i in new_ids}
    seen = set(new_ids)
    while frontier:
        rows = through.objects.filter(from_task_id__in=frontier).values_list("from_task_id", "to_task_id")
        frontier = set()
        for source, target in rows:
            edges.setdefault(source, []).append(target)
            if target == task.pk:
                path = [target, source]
                while path[-1] != task.pk:
                    path.append(parent[path[-1]])
                names = dict(Task.objects.filter(pk__in=path).values_list("pk", "name"))
                return [(i, names[i]) for i in reversed(path)]
            if target not in seen:
                seen.add(target)
                parent[target] = source
                frontier.add(target)
    return None


MAX_JSON_DEPTH = 32
# Unicode categories never accepted in names and tags: control characters (C0, DEL, C1: NUL, escape
# sequences, line breaks) and lone surrogates (not encodable as UTF-8; PostgreSQL refuses them).
FORBIDDEN_CATEGORIES = ("Cc", "Cs")


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a control character or a lone surrogate."""
    return any(unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in text)


def _unstorable(text: str) -> str:
    """Say why a JSON string cannot be stored ('' when it can): NUL and lone surrogates cannot, in PostgreSQL."""
    if "\x00" in text:
        return "must not contain the NUL character (\\u0000)"
    if any("\ud800" <= c <= "\udfff" for c in text):
        return "must not contain a lone UTF-16 surrogate (\\ud800-\\udfff): it is not valid Unicode text"
    return ""


def validate_json_object(field: str, value: Any) -> None:
    """Refuse what a JSON field cannot hold: nesting deeper than MAX_JSON_DEPTH, NUL, lone surrogates."""
    stack = [(value, 0)]
    while stack:  # iterative, so a hostile depth cannot exhaust the Python stack
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValidationError({field: f"is nested deeper than {MAX_JSON_DEPTH} levels"})
        if isinstance(item, str):
            problem = _unstorable(item)
            if problem:
                raise ValidationError({field: problem})
        elif isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)


def clean_tags(tags: Any) -> list[str]:
    """Return the stripped, de-duplicated tags: at most MAX_TAGS, each 1-TAG_MAX_LENGTH printable characters."""
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
        raise ValidationError({"tags": "must be a list of strings"})
    cleaned = list(dict.fromkeys(t.strip() for t in tags))
    if len(cleaned) > MAX_TAGS:
        raise ValidationError({"tags": f"at most {MAX_TAGS} tags per task, got {len(cleaned)}"})
    bad = [t for t in cleaned if not t or len(t) > TAG_MAX_LENGTH or has_control_characters(t)]
    if bad:
        raise ValidationError(
            {
                "tags": f"each tag must be 1-{TAG_MAX_LENGTH} printable characters (no control characters), "
                f"got {bad[0][:TAG_MAX_LENGTH]!r}" + (f" ({len(bad[0])} characters)" if bad[0] else "")
            }
        )
    return cleaned


#: What a retry policy decides: its fields besides its name (and owner).
POLICY_RULE = ("max_retries", "retry_delay", "backoff_factor", "max_delay", "jitter", "retry_on_timeout")
RETRY_POLICY_FIELDS = ("name", *POLICY_RULE)


def policy_default(field: str) -> Any:
    """What a new retry policy has in ``field`` when it is not given."""
    model_field = RetryPolicy._meta.get_field(field)
    assert isinstance(model_field, models.Field)
    return model_field.get_default()


def validate_retry_policy(
    values: dict[str, Any], owner: Any = None, instance: RetryPolicy | None = None
) -> RetryPolicy:
    """Return an unsaved RetryPolicy of ``owner`` (None: shared) from a dict of its fields.

    Refuses unknown fields, out-of-range values and a name ``owner`` already uses (the names of other
    users' policies are theirs: they neither clash nor show). ``instance``: the policy being changed.
    """
    unknown = sorted(str(key) for key in values if key not in RETRY_POLICY_FIELDS)
    if unknown:
        raise ValidationError(
            {"retry_policy": f"unknown field(s) {', '.join(unknown)}; known: {', '.join(RETRY_POLICY_FIELDS)}"}
        )
    # NaN and infinity pass the >= bounds (NaN compares false) and the database stores NaN as NULL.
    bad = [key for key, value in values.items() if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise ValidationError({"retry_policy": [f"{key}: must be a finite number" for key in bad]})
    if instance is not None:
        policy = instance
        for key, value in values.items():
            setattr(policy, key, value)
    else:
        policy = RetryPolicy(**values, owner=owner)
    try:
        # An empty name is filled in by the service; uniqueness is checked below with a clearer message.
        policy.full_clean(exclude=[] if policy.name else ["name"], validate_unique=False, validate_constraints=False)
    except DjangoValidationError as exc:
        raise ValidationError(
            {"retry_policy": [f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()]}
        ) from None
    same_name = RetryPolicy.objects.filter(name=policy.name, owner=policy.owner_id).exclude(pk=policy.pk)
    if policy.name and same_name.exists():
        raise ValidationError(
            {"retry_policy": f"a retry policy named {policy.name!r} exists; pass its id to share it, or another name"}
        )
    return policy


def free_policy_name(base: str, owner: Any = None) -> str:
    """Return ``base`` (cut to fit), or it with a number, so that ``owner`` has no retry policy of that name yet."""
    base = base[:90]
    name, number = base, 2
    while RetryPolicy.objects.filter(name=name, owner=owner).exists():
        name, number = f"{base} ({number})", number + 1
    return name
