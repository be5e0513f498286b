"""API representations of tasks, retry policies, attempts and handlers.

Reading uses TaskSerializer; writing uses TaskWriteSerializer, which only checks the
shape of the JSON (types, enums, read-only fields) and hands a plain dict to
scheduling.services, where every business rule lives.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from scheduling import selectors, validation
from scheduling.engine import cron
from scheduling.models import (
    COLUMN_FIELDS,
    EDITABLE_FIELDS,
    AttemptStatus,
    AuditAction,
    DependencyMode,
    OverlapPolicy,
    PipelineOrigin,
    PipelineRunStatus,
    Priority,
    RetryPolicy,
    Task,
    TaskAudit,
    TaskResult,
    TaskStatus,
    TaskType,
    Worker,
    full_write_defaults,
)

PRIORITY_NAMES = list(Priority.names)


def choice(choices: list[tuple[str, str]], **kwargs: Any) -> serializers.ChoiceField:
    """Return a ChoiceField whose error lists the valid values."""
    values = ", ".join(value for value, _ in choices)
    return serializers.ChoiceField(
        choices=choices,
        error_messages={"invalid_choice": f'"{{input}}" is not valid; expected one of {values}.'},
        **kwargs,
    )


POLICY_FIELDS = validation.POLICY_RULE


class RetryPolicySerializer(serializers.ModelSerializer):
    """A retry policy as the API shows it."""

    class Meta:
        model = RetryPolicy
        fields = ["id", "name", *POLICY_FIELDS]


class RetryPolicyInputSerializer(serializers.Serializer):
    """A retry policy on write: ``id`` reuses a stored policy; without it a new one is created."""

    id = serializers.IntegerField(required=False, help_text="Reuse this stored policy (other fields must match it).")
    name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    max_retries = serializers.IntegerField(required=False, min_value=0, max_value=1000)
    retry_delay = serializers.FloatField(required=False, min_value=0, max_value=7 * 86400, help_text="Seconds.")
    backoff_factor = serializers.FloatField(required=False, min_value=1, max_value=100)
    max_delay = serializers.FloatField(required=False, min_value=0, max_value=30 * 86400, help_text="Seconds.")
    jitter = serializers.BooleanField(required=False)
    retry_on_timeout = serializers.BooleanField(required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: [f"unknown field; expected {', '.join(self.fields)}"] for key in unknown}
                )
        return super().to_internal_value(data)


class LastResultSerializer(serializers.ModelSerializer):
    """The latest attempt of a task, in brief."""

    class Meta:
        model = TaskResult
        fields = [
            "id",
            "attempt",
            "status",
            "queued_at",
            "started_at",
            "finished_at",
            "duration",
            "progress",
            "progress_message",
            "error_message",
            "result",
        ]


def _related(task: Task, name: str) -> Any:
    """Return the prefetched rows of a many-to-many field without building a related manager per access.

    A manager per field and row is a third of a 100-task page's serialisation; without a prefetch
    (a task just written) this falls back to the manager.
    """
    cache = getattr(task, "_prefetched_objects_cache", {})
    return cache[name] if name in cache else getattr(task, name).all()


class TaskRefSerializer(serializers.Serializer):
    """Another task, by id, name and status."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=TaskStatus.choices)


class WaitingOnSerializer(TaskRefSerializer):
    """A dependency that holds a task's next run back."""

    since = serializers.DateTimeField(
        allow_null=True,
        help_text="null: the dependency is not DONE (see status). Else it is DONE but has no run that finished "
        "after this time (the start of this task's previous run): the next run waits for a fresh one.",
    )


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "uuid"},
            {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "mode": {"type": "string", "enum": [m.value for m in DependencyMode]},
                },
                "required": ["id"],
                "additionalProperties": False,
            },
        ]
    }
)
class DependencyInputField(serializers.Field):
    """A dependency on write: a task id, or {"id": ..., "mode": "fresh" | "any"} (the service checks the rest)."""

    default_error_messages = {
        "invalid": 'expected a task id or {{"id": "<task id>", "mode": "fresh" | "any"}}.',
        "invalid_id": "must be a valid UUID.",
    }

    def to_internal_value(self, data: Any) -> Any:
        raw = data.get("id") if isinstance(data, dict) else data
        if isinstance(data, dict) and (set(data) - {"id", "mode"} or "id" not in data):
            self.fail("invalid")
        if not isinstance(raw, str):
            self.fail("invalid")
        try:
            pk = str(uuid.UUID(raw))
        except ValueError:
            self.fail("invalid_id")
        if isinstance(data, dict):
            if data.get("mode", DependencyMode.FRESH) not in DependencyMode.values:
                raise serializers.ValidationError(f"mode must be one of {', '.join(DependencyMode.values)}.")
            return {"id": pk, "mode": data.get("mode", DependencyMode.FRESH)}
        return pk

    def to_representation(self, value: Any) -> Any:
        return value


class TaskSerializer(serializers.ModelSerializer):
    """A task as the API shows it; expects the prefetches of views.task_queryset()."""

    priority = serializers.SerializerMethodField()
    tags = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()
    dependencies = serializers.SerializerMethodField()
    dependency_modes = serializers.SerializerMethodField()
    waiting_on = serializers.SerializerMethodField()
    retry_policy = RetryPolicySerializer(allow_null=True)
    last_result = LastResultSerializer(source="latest_result", read_only=True, allow_null=True)
    cron_description = serializers.SerializerMethodField()
    next_run_at = serializers.SerializerMethodField()
    secret_parameters = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "name",
            "task_type",
            "cron_expr",
            "timezone",
            "cron_description",
            "status",
            "status_reason",
            "created_at",
            "updated_at",
            "priority",
            "metadata",
            "tags",
            "handler",
            "owner",
            "dependencies",
            "dependency_modes",
            "waiting_on",
            "dependency_timeout",
            "timeout_seconds",
            "retry_policy",
            "parameters",
            "secret_parameters",
            "enabled",
            "overlap_policy",
            "attempt",
            "next_run_at",
            "last_result",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "enum": PRIORITY_NAMES})
    def get_priority(self, task: Task) -> str:
        return Priority(task.priority).name

    def get_tags(self, task: Task) -> list[str]:
        return [tag.name for tag in _related(task, "tags")]

    @extend_schema_field({"type": "string", "nullable": True, "description": "Username of the task's creator."})
    def get_owner(self, task: Task) -> str | None:
        return task.owner.get_username() if task.owner is not None else None

    def get_dependencies(self, task: Task) -> list[uuid.UUID]:
        return [dep.pk for dep in _related(task, "dependencies")]

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {"type": "string", "enum": [m.value for m in DependencyMode]},
            "description": "Each dependency's mode by id: fresh (a run that finished after this task's previous "
            "run started) or any (any successful run).",
        }
    )
    def get_dependency_modes(self, task: Task) -> dict[str, str]:
        any_run = {dep.pk for dep in _related(task, "any_run_dependencies")}
        return {
            str(dep.pk): DependencyMode.ANY if dep.pk in any_run else DependencyMode.FRESH
            for dep in _related(task, "dependencies")
        }

    @extend_schema_field(WaitingOnSerializer(many=True))
    def get_waiting_on(self, task: Task) -> list[dict[str, Any]]:
        """List the dependencies that hold the task's run back (selectors.waiting_on), by name."""
        if not _related(task, "dependencies"):
            return []
        return [
            {"id": dep.pk, "name": dep.name, "status": dep.status, "since": dep.since}  # type: ignore[attr-defined]  # set by selectors.waiting_on_many
            for dep in self._waiting_on(task)
        ]

    def _waiting_on(self, task: Task) -> list[Task]:
        """selectors.waiting_on, for every waiting task of the page at once (a fixed number of queries)."""
        context = cast(dict[str, Any], self.context)  # the root serializer's own dict, shared by the page's rows
        cache: dict[Any, list[Task]] = context.setdefault("waiting_on", {})
        if task.pk not in cache:
            page = self.parent.instance if isinstance(self.parent, serializers.ListSerializer) else None
            tasks = [t for t in page if _related(t, "dependencies")] if page else []
            cache.update(selectors.waiting_on_many([*tasks, task] if task not in tasks else tasks))
        return cache[task.pk]

    def to_representation(self, instance: Task) -> dict[str, Any]:
        # One nested serializer for every row (a fresh one per row costs more than the rest of the row).
        latest = getattr(instance, "latest_results", None)
        if latest is None:  # not prefetched (e.g. a task just written)
            latest = list(instance.results.order_by("-created_at", "-id")[:1])
        instance.latest_result = latest[0] if latest else None  # type: ignore[attr-defined]  # read by last_result
        return super().to_representation(instance)

    @extend_schema_field(
        {
            "type": "string",
            "nullable": True,
            "enum": ["<hidden>", None],
            "description": "'<hidden>' when secret parameters are stored (write-only: never returned), else null.",
        }
    )
    def get_secret_parameters(self, task: Task) -> str | None:
        return "<hidden>" if task.secret_parameters else None

    def get_cron_description(self, task: Task) -> str:
        return cron.describe(task.cron_expr) if task.cron_expr else ""

    @extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
    def get_next_run_at(self, task: Task) -> Any:
        """Return when the task runs next: its retry if one waits, else its next cron fire."""
        moment = task.next_attempt_at if task.status == TaskStatus.RETRY and task.next_attempt_at else task.next_fire_at
        return serializers.DateTimeField().to_representation(moment) if moment else None


# Fields the server sets; a client that sends one gets a 400 naming it instead of a silent ignore.
READ_ONLY_FIELDS = frozenset(TaskSerializer.Meta.fields) - {*EDITABLE_FIELDS, "secret_parameters"}

# What a PUT means for a field it leaves out (scheduling.models.TASK_FIELDS).
PUT_DEFAULTS: dict[str, Any] = full_write_defaults()


class TaskWriteSerializer(serializers.Serializer):
    """The JSON a client sends to create or change a task; rules are checked by scheduling.services."""

    # Lengths and counts (name, tags, dependencies) are checked by the service: scheduling.validation's limits.
    name = serializers.CharField()
    task_type = choice(TaskType.choices, required=False)
    cron_expr = serializers.CharField(required=False, allow_blank=True, max_length=120, trim_whitespace=True)
    timezone = serializers.CharField(required=False, max_length=64, help_text="IANA time zone, e.g. Europe/Paris.")
    priority = choice([(name, name) for name in PRIORITY_NAMES], required=False)
    metadata = serializers.DictField(required=False)
    parameters = serializers.DictField(required=False, help_text="Checked against the handler's JSON schema.")
    secret_parameters = serializers.DictField(
        required=False,
        allow_null=True,
        write_only=True,
        help_text='Parameters that must stay secret (e.g. {"headers": {"Authorization": "Bearer ..."}}): '
        "stored encrypted, merged over parameters when the handler runs, never returned. "
        "Leave out to keep the stored ones; {} clears them.",
    )
    tags = serializers.ListField(
        child=serializers.CharField(),
        help_text=f"At most {validation.MAX_TAGS}, each up to {validation.TAG_MAX_LENGTH} characters; exactly one "
        "must be a registered handler tag (see /handlers).",
    )
    dependencies = serializers.ListField(
        child=DependencyInputField(),
        required=False,
        help_text=f'At most {validation.MAX_DEPENDENCIES}: task ids, or {{"id": ..., "mode": "any"}} for one '
        "that any successful run satisfies (default mode fresh: a run that finished after this task's previous run "
        "started). A plain id keeps the mode the dependency has.",
    )
    timeout_seconds = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    dependency_timeout = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**31 - 1,
        help_text="Seconds a run may wait for fresh dependency runs before it fails; null: "
        "scheduler.dependency_timeout for SCHEDULED tasks, no limit for IMMEDIATE ones.",
    )
    retry_policy = RetryPolicyInputSerializer(required=False, allow_null=True)
    enabled = serializers.BooleanField(required=False)
    overlap_policy = choice(OverlapPolicy.choices, required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        if isinstance(data, dict):
            for key in sorted(set(data) - set(self.fields)):
                if key in READ_ONLY_FIELDS:
                    errors[key] = ["is read-only: the server sets it; leave it out of the request."]
                else:
                    errors[key] = [f"unknown field; writable fields are {', '.join(self.fields)}."]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not isinstance(exc.detail, dict):
                raise
            errors = {**exc.detail, **errors}
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def to_representation(self, instance: Any) -> dict[str, Any]:
        """Show a task as the writable fields (used by the browsable API's edit form)."""
        if not isinstance(instance, Task):
            return super().to_representation(instance)
        shown: dict[str, Any] = {field: getattr(instance, field) for field in COLUMN_FIELDS}
        shown["priority"] = Priority(instance.priority).name
        shown["tags"] = list(instance.tags.values_list("name", flat=True))
        any_run = set(instance.any_run_dependencies.values_list("pk", flat=True))
        shown["dependencies"] = [
            {"id": str(pk), "mode": DependencyMode.ANY if pk in any_run else DependencyMode.FRESH}
            for pk in instance.dependencies.values_list("pk", flat=True)
        ]
        shown["retry_policy"] = {"id": instance.retry_policy_id} if instance.retry_policy_id else None
        return {field: shown[field] for field in EDITABLE_FIELDS}


class CancelSerializer(serializers.Serializer):
    """Optional body of POST /tasks/{id}/cancel."""

    reason = serializers.CharField(required=False, max_length=500, default="cancelled through the API")


class TaskResultSerializer(serializers.ModelSerializer):
    """One execution attempt."""

    task_name = serializers.CharField(source="task.name", read_only=True)
    status = serializers.ChoiceField(choices=AttemptStatus.choices, read_only=True)

    class Meta:
        model = TaskResult
        fields = [
            "id",
            "task",
            "task_name",
            "attempt",
            "status",
            "fire_time",
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
            "duration",
            "worker",
            "worker_node",
            "celery_task_id",
            "progress",
            "progress_message",
            "result",
            "error_message",
            "traceback",
            "artifacts",
            "pipeline_run",
        ]
        read_only_fields = fields


class PipelineRunTaskSerializer(serializers.Serializer):
    """One task of a pipeline run, with its latest attempt in that run."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    attempt = serializers.IntegerField(help_text="Its latest attempt in the run (1 for the first try).")
    status = serializers.ChoiceField(choices=AttemptStatus.choices)
    started_at = serializers.DateTimeField(allow_null=True, help_text="When its first attempt in the run started.")
    finished_at = serializers.DateTimeField(allow_null=True, help_text="When its latest attempt in the run ended.")


class PipelineRunSerializer(serializers.Serializer):
    """A pipeline run: a task and its dependents run together, each once (``selectors.pipeline_run_view``)."""

    id = serializers.IntegerField()
    root_task = serializers.UUIDField(help_text="The task the run was started from.")
    root_task_name = serializers.CharField()
    which = serializers.CharField(help_text="Which dependents came along: failed or all.")
    origin = serializers.ChoiceField(choices=PipelineOrigin.choices)
    fire_time = serializers.DateTimeField(allow_null=True, help_text="The cron fire a backfill ran.")
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(
        choices=PipelineRunStatus.choices,
        help_text="RUNNING while a task of it waits or runs, else FAILED if one failed, else DONE.",
    )
    tasks = PipelineRunTaskSerializer(many=True, help_text="Its tasks you may see.")
    hidden_tasks = serializers.IntegerField(help_text="Its tasks you may not see: counted, never named.")


class TaskAuditSerializer(serializers.ModelSerializer):
    """One entry of a task's audit trail."""

    actor = serializers.SerializerMethodField()
    action = serializers.ChoiceField(choices=AuditAction.choices, read_only=True)

    class Meta:
        model = TaskAudit
        fields = ["id", "created_at", "actor", "action", "changes", "detail", "task_name"]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "nullable": True, "description": "Username; null for the system."})
    def get_actor(self, entry: TaskAudit) -> str | None:
        return entry.actor.get_username() if entry.actor is not None else None


class HandlerSerializer(serializers.Serializer):
    """A registered handler tag with its parameter schema."""

    tag = serializers.CharField()
    description = serializers.CharField()
    schema = serializers.JSONField(help_text="JSON schema the task's parameters must satisfy.")


class AttemptLogSerializer(serializers.Serializer):
    """What one attempt's handler logged (the last 1 MiB, secrets hidden); ``finished``: no more lines will come."""

    task = serializers.UUIDField()
    attempt_id = serializers.IntegerField(help_text="The attempt's id, as in /tasks/{id}/results.")
    attempt = serializers.IntegerField(help_text="The attempt's number within its run (1 = first try).")
    status = serializers.ChoiceField(choices=AttemptStatus.choices)
    finished = serializers.BooleanField()
    text = serializers.CharField(help_text="The log lines; a first line says how many older lines were dropped.")
    lines = serializers.IntegerField(help_text="Lines logged in all, the dropped ones included.")
    dropped_lines = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True, help_text="When the worker last wrote the log.")


class WorkerSerializer(serializers.ModelSerializer):
    """A Celery worker as its heartbeat reports it."""

    online = serializers.BooleanField(
        read_only=True, help_text="A heartbeat within two intervals and no clean shutdown since."
    )
    state = serializers.SerializerMethodField()
    running = serializers.IntegerField(read_only=True, help_text="Attempts RUNNING on it now.")
    processes = serializers.ListField(child=serializers.IntegerField(), read_only=True, help_text="Its pool's pids.")
    queues = serializers.ListField(child=serializers.CharField(), read_only=True, help_text="Queues it consumes.")

    class Meta:
        model = Worker
        fields = [
            "name",
            "host",
            "state",
            "online",
            "pid",
            "pool",
            "concurrency",
            "processes",
            "queues",
            "running",
            "heartbeat_interval",
            "started_at",
            "last_seen",
            "offline_after",
            "stopped_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "name": {"help_text": "Celery node name; attempts name it in worker_node."},
        }

    @extend_schema_field({"type": "string", "enum": ["online", "offline", "stopped"]})
    def get_state(self, worker: Worker) -> str:
        if worker.online:  # type: ignore[attr-defined]  # workers.listing() annotates it
            return "online"
        return "stopped" if worker.stopped_at is not None else "offline"
