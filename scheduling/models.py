"""The scheduling domain: tasks, retry policies, dependencies and execution attempts."""

from __future__ import annotations

import copy
import random
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils.timezone import now


class TaskType(models.TextChoices):
    IMMEDIATE = "IMMEDIATE", "Immediate"
    SCHEDULED = "SCHEDULED", "Scheduled (cron)"


class TaskStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    QUEUED = "QUEUED", "Queued"
    RUNNING = "RUNNING", "Running"
    DONE = "DONE", "Done"
    FAILED = "FAILED", "Failed"
    TIMEOUT = "TIMEOUT", "Timed out"
    RETRY = "RETRY", "Waiting to retry"
    CANCELLED = "CANCELLED", "Cancelled"


class AttemptStatus(models.TextChoices):
    """Status of one execution attempt; PENDING and RETRY attempts are the dispatcher's queue."""

    PENDING = "PENDING", "Pending"
    RETRY = "RETRY", "Waiting to retry"
    QUEUED = "QUEUED", "Queued"
    RUNNING = "RUNNING", "Running"
    DONE = "DONE", "Done"
    FAILED = "FAILED", "Failed"
    TIMEOUT = "TIMEOUT", "Timed out"
    CANCELLED = "CANCELLED", "Cancelled"
    SKIPPED = "SKIPPED", "Skipped"


WAITING = (AttemptStatus.PENDING, AttemptStatus.RETRY)
IN_FLIGHT = (AttemptStatus.QUEUED, AttemptStatus.RUNNING)
FINISHED = (
    AttemptStatus.DONE,
    AttemptStatus.FAILED,
    AttemptStatus.TIMEOUT,
    AttemptStatus.CANCELLED,
    AttemptStatus.SKIPPED,
)


def status_in(statuses: tuple[str, ...]) -> RawSQL:
    """Filter attempts on status with the values written into the SQL, in the partial indexes' order.

    SQLite uses a partial index only when the query states the index's condition literally; Django binds
    ``status__in`` values as parameters, which turns result_inflight_idx / result_pick_idx lookups into
    scans of the whole results table. The values are our own enum constants, never user input.
    """
    assert all(value.isalpha() and value.isupper() for value in statuses)
    values = ", ".join(f"'{value}'" for value in statuses)
    return RawSQL(f'"scheduling_taskresult"."status" IN ({values})', [], output_field=models.BooleanField())


#: Marks a task field that a full write (create, PUT) must give: it has no default.
REQUIRED = object()

#: The task fields a person sets, each with what leaving it out of a full write (create, PUT) means.
#: The one declaration of them: the services write these, the audit trail records them, the API's write
#: serializer, its PUT defaults and read-only list, the admin form and ``manage.py task_action --set``
#: follow from it. (``secret_parameters`` is writable too, but write-only and never audited by value.)
TASK_FIELDS: dict[str, Any] = {
    "name": REQUIRED,
    "task_type": "IMMEDIATE",
    "cron_expr": "",
    "timezone": "UTC",
    "priority": "MEDIUM",
    "metadata": {},
    "parameters": {},
    "tags": REQUIRED,
    "dependencies": [],
    "timeout_seconds": None,
    "dependency_timeout": None,
    "retry_policy": None,
    "enabled": True,
    "overlap_policy": "skip",
}

EDITABLE_FIELDS = tuple(TASK_FIELDS)

#: Editable fields that are related rows rather than columns of the task.
RELATED_FIELDS = ("tags", "dependencies", "retry_policy")

#: Editable fields that are columns of the task.
COLUMN_FIELDS = tuple(field for field in EDITABLE_FIELDS if field not in RELATED_FIELDS)


def default_of(field: str) -> Any:
    """What a full write that leaves ``field`` out means (a fresh copy: defaults are never shared)."""
    return copy.deepcopy(TASK_FIELDS[field])


def full_write_defaults() -> dict[str, Any]:
    """The value of each optional editable field that a full write (create, PUT) leaves out."""
    return {field: default_of(field) for field, value in TASK_FIELDS.items() if value is not REQUIRED}


class Priority(models.IntegerChoices):
    """Stored as a small integer so that ORDER BY priority gives HIGH first."""

    HIGH = 1, "HIGH"
    MEDIUM = 2, "MEDIUM"
    LOW = 3, "LOW"


class DependencyMode(models.TextChoices):
    """When a dependency counts as met for a run of the task that depends on it (scheduling/engine/pipelines.py).

    Stored as ``Task.any_run_dependencies`` (the dependencies in ``any`` mode); every other dependency is ``fresh``.
    """

    FRESH = "fresh", "A run that finished after this task's previous run started"
    ANY = "any", "Any successful run (the dependency is DONE)"


class OverlapPolicy(models.TextChoices):
    """What a cron fire does when ``scheduler.max_instances`` runs are already in flight."""

    SKIP = "skip", "Skip the new fire"
    QUEUE = "queue", "Queue the new fire behind the running ones"
    REPLACE = "replace", "Cancel the running ones and start the new fire"


class OwnedModel(models.Model):
    """A row owned by one user (only that user's tasks use it) or shared (``owner`` empty).

    Shared rows are made on purpose by a user with the model's ``share_<model>`` permission
    (``scheduling.selectors`` holds who sees and manages which); names are unique per owner and among
    the shared ones.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="owner",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty: shared with every user (set by a user allowed to share them).",
    )

    class Meta:
        abstract = True
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="%(class)s_owner_name_uniq"),
            models.UniqueConstraint(
                fields=["name"], name="%(class)s_shared_name_uniq", condition=Q(owner__isnull=True)
            ),
        ]

    name: models.CharField

    def __str__(self) -> str:
        return self.name


class RetryPolicy(OwnedModel):
    """A reusable retry rule: how many retries and how long to wait before each (an owned or shared row)."""

    name = models.CharField("name", max_length=100)
    max_retries = models.PositiveIntegerField(
        "max retries", default=3, help_text="Retries after the first attempt; 0 means never retry."
    )
    retry_delay = models.FloatField(
        "retry delay (s)",
        default=60.0,
        validators=[MinValueValidator(0)],
        help_text="Seconds to wait before the first retry.",
    )
    backoff_factor = models.FloatField(
        "backoff factor",
        default=2.0,
        validators=[MinValueValidator(1)],
        help_text="Each further retry waits this many times longer (1 = constant delay).",
    )
    max_delay = models.FloatField(
        "max delay (s)",
        default=3600.0,
        validators=[MinValueValidator(0)],
        help_text="Upper bound on any single delay.",
    )
    jitter = models.BooleanField(
        "jitter", default=False, help_text="Randomise each delay within ±50% so retries do not stampede."
    )
    retry_on_timeout = models.BooleanField(
        "retry on timeout", default=True, help_text="Whether an attempt that timed out is retried."
    )

    class Meta(OwnedModel.Meta):
        verbose_name = "retry policy"
        verbose_name_plural = "retry policies"
        permissions = [("share_retrypolicy", "Can create, change and delete shared retry policies")]
        constraints = [
            *OwnedModel.Meta.constraints,
            models.CheckConstraint(condition=Q(retry_delay__gte=0), name="retrypolicy_delay_gte_0"),
            models.CheckConstraint(condition=Q(backoff_factor__gte=1), name="retrypolicy_backoff_gte_1"),
            models.CheckConstraint(condition=Q(max_delay__gte=0), name="retrypolicy_max_delay_gte_0"),
        ]

    def delay_for(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Return the seconds to wait before retry ``retry_number`` (1 = the first retry)."""
        exponent = max(retry_number - 1, 0)
        try:
            delay = self.retry_delay * self.backoff_factor**exponent
        except OverflowError:
            # Too large for a float: the cap applies, unless there is no delay at all (0 stays 0).
            delay = self.max_delay if self.retry_delay > 0 else 0.0
        delay = min(self.max_delay, delay)
        if self.jitter:
            delay *= (rng or random).uniform(0.5, 1.5)
            delay = min(self.max_delay, delay)
        return delay


class Tag(OwnedModel):
    """A label on tasks; one of a task's tags names its handler (handler tags are always shared)."""

    name = models.CharField("name", max_length=64)

    class Meta(OwnedModel.Meta):
        permissions = [("share_tag", "Can create, change and delete shared tags")]


class Task(models.Model):
    """Something to run now or on a cron schedule, with its priority, dependencies and policies."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField("name", max_length=200)
    task_type = models.CharField("type", max_length=16, choices=TaskType.choices, default=TaskType.IMMEDIATE)
    cron_expr = models.CharField(
        "cron expression",
        max_length=120,
        blank=True,
        default="",
        help_text="Five fields: minute hour day-of-month month day-of-week. SCHEDULED tasks only.",
    )
    timezone = models.CharField(
        "time zone", max_length=64, default="UTC", help_text="IANA zone the cron expression is read in."
    )
    crontab = models.ForeignKey(
        "django_celery_beat.CrontabSchedule",
        verbose_name="crontab",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="django-celery-beat's schedule row for this cron; shared by tasks with the same cron and zone.",
    )
    next_fire_at = models.DateTimeField(
        "next fire", null=True, blank=True, editable=False, help_text="When the cron fires next."
    )
    overlap_policy = models.CharField(
        "when still running",
        max_length=8,
        choices=OverlapPolicy.choices,
        default=OverlapPolicy.SKIP,
        help_text="What a cron fire does when scheduler.max_instances runs of this task are in flight.",
    )
    status = models.CharField(
        "status", max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING, editable=False
    )
    status_reason = models.CharField(
        "reason", max_length=500, blank=True, default="", editable=False, help_text="Why the status is what it is."
    )
    priority = models.PositiveSmallIntegerField("priority", choices=Priority.choices, default=Priority.MEDIUM)
    created_at = models.DateTimeField("created", default=now, editable=False)
    updated_at = models.DateTimeField("updated", auto_now=True)
    metadata = models.JSONField("metadata", default=dict, blank=True, help_text="Free-form data about the task.")
    parameters = models.JSONField(
        "parameters", default=dict, blank=True, help_text="Input for the handler, checked against its schema."
    )
    secret_parameters = models.TextField(
        "secret parameters (encrypted)",
        blank=True,
        default="",
        editable=False,
        help_text="Handler input that must stay secret (e.g. an Authorization header): JSON encrypted with "
        "security.encryption_keys, merged over parameters only when the handler runs. Never shown.",
    )
    tags = models.ManyToManyField(Tag, verbose_name="tags", blank=True, related_name="tasks")
    handler = models.CharField(
        "handler", max_length=64, editable=False, help_text="The registered handler tag among the task's tags."
    )
    # No index of its own: task_owner_idx and task_owner_list_idx lead with it, and a beat tick rewrites
    # each index of the table for every task it fires (its status and next fire change).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="owner",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
        db_index=False,
    )
    dependencies = models.ManyToManyField(
        "self",
        verbose_name="dependencies",
        symmetrical=False,
        blank=True,
        related_name="dependents",
        help_text="Tasks that must be DONE before this one starts, each with a run that finished after this "
        "task's previous run started (unless listed in any_run_dependencies).",
    )
    any_run_dependencies = models.ManyToManyField(
        "self",
        verbose_name="dependencies met by any successful run",
        symmetrical=False,
        blank=True,
        related_name="+",
        help_text="Among the dependencies, those for which any DONE run counts, however old (the former rule); "
        "the others need a run that finished after this task's previous run started.",
    )
    dependency_timeout = models.PositiveIntegerField(
        "dependency timeout (s)",
        null=True,
        blank=True,
        help_text="A run still waiting for its dependencies this long after it was due fails, naming the upstream. "
        "Empty: scheduler.dependency_timeout for SCHEDULED tasks; an IMMEDIATE task waits as long as it takes.",
    )
    timeout_seconds = models.PositiveIntegerField(
        "timeout (s)", null=True, blank=True, help_text="Stop an attempt that runs longer than this."
    )
    retry_policy = models.ForeignKey(
        RetryPolicy,
        verbose_name="retry policy",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="tasks",
        help_text="Empty: a failed attempt is not retried.",
    )
    enabled = models.BooleanField("enabled", default=True, help_text="Paused tasks neither fire nor start.")
    attempt = models.PositiveIntegerField(
        "attempt", default=0, editable=False, help_text="Number of the current or last attempt of the current run."
    )
    next_attempt_at = models.DateTimeField(
        "next attempt", null=True, blank=True, editable=False, help_text="When a waiting retry becomes due."
    )

    class Meta:
        ordering = ["priority", "created_at"]
        permissions = [("view_all_tasks", "Can view every user's tasks (not only their own)")]
        indexes = [
            models.Index(fields=["status", "priority", "created_at"], name="task_status_prio_idx"),
            # GET /tasks and the admin change list in their default order, without sorting the whole table.
            models.Index(fields=["priority", "created_at", "id"], name="task_list_idx"),
            # The same for a user who sees only their own tasks.
            models.Index(fields=["owner", "priority", "created_at", "id"], name="task_owner_list_idx"),
            # The beat tick: enabled SCHEDULED tasks whose next_fire_at has come.
            models.Index(
                fields=["next_fire_at"],
                name="task_due_fire_idx",
                condition=Q(enabled=True, task_type="SCHEDULED"),
            ),
            models.Index(fields=["owner", "-created_at"], name="task_owner_idx"),
            models.Index(fields=["-updated_at"], name="task_updated_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(timeout_seconds__isnull=True) | Q(timeout_seconds__gt=0),
                name="task_timeout_positive",
            ),
            models.CheckConstraint(
                condition=Q(dependency_timeout__isnull=True) | Q(dependency_timeout__gt=0),
                name="task_dependency_timeout_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def priority_name(self) -> str:
        return Priority(self.priority).label

    def effective_timeout(self) -> int:
        """Return the seconds an attempt may run before it is stopped."""
        return self.timeout_seconds or settings.TASKHUB.scheduler.default_timeout_seconds

    def effective_dependency_timeout(self) -> int | None:
        """Seconds a run may wait for its dependencies before it fails (None: as long as it takes)."""
        if self.dependency_timeout:
            return self.dependency_timeout
        if self.task_type == TaskType.SCHEDULED:
            return settings.TASKHUB.scheduler.dependency_timeout or None
        return None


class PipelineOrigin(models.TextChoices):
    RUN = "run", "Run now"
    RETRY = "retry", "Retry"
    BACKFILL = "backfill", "Backfill"


class PipelineRunStatus(models.TextChoices):
    RUNNING = "RUNNING", "Running"
    DONE = "DONE", "Done"
    FAILED = "FAILED", "Failed"


class PipelineRun(models.Model):
    """One run of a task and its dependents together (``downstream=failed|all``, a backfill fire).

    Its tasks are those with an attempt in it (``TaskResult.pipeline_run``): each runs once in it, and an
    attempt of it waits for its dependencies that are part of it to be DONE in it (engine/pipelines.py).
    Its status is derived from those attempts (``scheduling.selectors.pipeline_run_status``), never stored.
    """

    root = models.ForeignKey(Task, verbose_name="root task", on_delete=models.CASCADE, related_name="pipeline_runs")
    which = models.CharField(
        "downstream", max_length=8, blank=True, default="", help_text="failed or all: which dependents came along."
    )
    origin = models.CharField("origin", max_length=8, choices=PipelineOrigin.choices, default=PipelineOrigin.RUN)
    fire_time = models.DateTimeField("fire time", null=True, blank=True, help_text="The backfilled cron fire.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="started by",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField("created", default=now)

    class Meta:
        verbose_name = "pipeline run"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["root", "-created_at"], name="pipelinerun_root_idx")]

    def __str__(self) -> str:
        return f"pipeline run {self.pk}"


class TaskResult(models.Model):
    """One execution attempt of a task; PENDING and RETRY rows are waiting to be dispatched."""

    # No index of its own: result_task_idx and result_task_done_idx lead with it, and every attempt's
    # insert and status change writes each index of the table.
    task = models.ForeignKey(
        Task, verbose_name="task", on_delete=models.CASCADE, related_name="results", db_index=False
    )
    attempt = models.PositiveIntegerField("attempt", default=1, help_text="1 for the first try of a run.")
    status = models.CharField("status", max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.PENDING)
    priority = models.PositiveSmallIntegerField(
        "priority", choices=Priority.choices, default=Priority.MEDIUM, help_text="Copied from the task."
    )
    fire_time = models.DateTimeField(
        "fire time", null=True, blank=True, help_text="The cron fire this run belongs to, if any."
    )
    available_at = models.DateTimeField("available at", default=now, help_text="Earliest time the attempt may start.")
    created_at = models.DateTimeField("created", default=now)
    queued_at = models.DateTimeField("queued", null=True, blank=True)
    started_at = models.DateTimeField("started", null=True, blank=True)
    finished_at = models.DateTimeField("finished", null=True, blank=True)
    deadline = models.DateTimeField(
        "deadline", null=True, blank=True, help_text="A RUNNING attempt past this is presumed lost."
    )
    duration = models.FloatField("duration (s)", null=True, blank=True)
    worker = models.CharField("worker", max_length=200, blank=True, default="")
    worker_node = models.CharField(
        "worker node",
        max_length=200,
        blank=True,
        default="",
        db_default="",  # raw INSERTs (firing's INSERT ... SELECT, bench/scale.py) name no such column
        help_text="The Celery worker (node name, as in Workers) whose pool process ran the attempt.",
    )
    celery_task_id = models.CharField("Celery task id", max_length=64, blank=True, default="")
    claim = models.PositiveIntegerField(
        "claim", default=0, help_text="Fencing token: bumped at each claim; a completion must present it."
    )
    progress = models.PositiveSmallIntegerField("progress (%)", null=True, blank=True)
    progress_message = models.CharField("progress message", max_length=500, blank=True, default="")
    result = models.JSONField("result", null=True, blank=True)
    error_message = models.TextField("error", blank=True, default="")
    traceback = models.TextField("traceback", blank=True, default="")
    artifacts = models.JSONField(
        "artifacts", default=list, blank=True, help_text="Files produced, relative to storage.path."
    )
    pipeline_run = models.ForeignKey(
        PipelineRun,
        verbose_name="pipeline run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_index=False,  # result_pipeline_idx below
        related_name="attempts",
        help_text="The pipeline run this attempt belongs to, if any.",
    )

    class Meta:
        verbose_name = "task result"
        ordering = ["-created_at"]
        indexes = [
            # The dispatcher's pick: waiting attempts by priority then age.
            models.Index(
                fields=["priority", "available_at"],
                name="result_pick_idx",
                condition=Q(status__in=["PENDING", "RETRY"]),
            ),
            # In-flight counting and the sweep (QUEUED not taken, RUNNING past deadline).
            models.Index(
                fields=["status", "deadline"], name="result_inflight_idx", condition=Q(status__in=["QUEUED", "RUNNING"])
            ),
            # /task_history: finished attempts, newest first.
            models.Index(fields=["-finished_at"], name="result_history_idx", condition=Q(finished_at__isnull=False)),
            models.Index(fields=["task", "-created_at"], name="result_task_idx"),
            # Run-scoped dependencies (engine/pipelines.py): has this upstream a DONE attempt finished after T?
            models.Index(fields=["task", "status", "finished_at"], name="result_task_done_idx"),
            # Pipeline runs (engine/pipelines.py): is this upstream part of the run, and DONE in it?
            models.Index(
                fields=["pipeline_run", "task", "status"],
                name="result_pipeline_idx",
                condition=Q(pipeline_run__isnull=False),
            ),
        ]
        constraints = [
            # A cron fire creates its run once, even if two beats run by mistake.
            models.UniqueConstraint(
                fields=["task", "fire_time"], name="result_one_run_per_fire", condition=Q(attempt=1)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} attempt {self.attempt} ({self.status})"


class AuditAction(models.TextChoices):
    CREATED = "created", "Created"
    CHANGED = "changed", "Changed"
    RUN = "run", "Run now"
    CANCELLED = "cancelled", "Cancelled"
    RETRIED = "retried", "Retried"
    PAUSED = "paused", "Paused"
    RESUMED = "resumed", "Resumed"
    DELETED = "deleted", "Deleted"
    ATTEMPTS_DELETED = "attempts_deleted", "Attempts deleted"
    BACKFILLED = "backfilled", "Backfilled"


class TaskAudit(models.Model):
    """Who created, changed, ran, cancelled, paused, resumed or deleted a task, and which fields changed."""

    # No database constraint: a deleted task's history stays readable by its id.
    task = models.ForeignKey(
        Task, verbose_name="task", on_delete=models.DO_NOTHING, db_constraint=False, related_name="audit"
    )
    task_name = models.CharField("task name", max_length=200, help_text="The task's name at the time.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="who",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when the system or an unauthenticated caller acted.",
    )
    action = models.CharField("action", max_length=16, choices=AuditAction.choices)
    changes = models.JSONField(
        "changes", default=dict, blank=True, help_text="Changed fields: {field: [before, after]}."
    )
    detail = models.CharField("detail", max_length=500, blank=True, default="")
    created_at = models.DateTimeField("when", default=now)

    class Meta:
        verbose_name = "task audit entry"
        verbose_name_plural = "task audit entries"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["task", "-created_at"], name="taskaudit_task_idx")]

    def __str__(self) -> str:
        return f"{self.task_name}: {self.action}"


class AttemptLog(models.Model):
    """What an attempt's handler logged through ``context.logger``: the last 1 MiB, secrets scrubbed.

    One row per attempt that logged anything, rewritten by its worker about once a second while it
    runs (see scheduling/engine/attempt_log.py); deleted with its attempt (retention, task deletion).
    Kept out of TaskResult so the results lists and the dispatcher never read it.
    """

    result = models.OneToOneField(
        TaskResult, verbose_name="attempt", primary_key=True, on_delete=models.CASCADE, related_name="log"
    )
    text = models.TextField("log", blank=True, default="")
    lines = models.PositiveIntegerField("lines logged", default=0, help_text="Every line, the dropped ones too.")
    dropped_lines = models.PositiveIntegerField(
        "lines dropped", default=0, help_text="Oldest lines dropped to keep the log within its bound."
    )
    updated_at = models.DateTimeField("updated", default=now)

    class Meta:
        verbose_name = "attempt log"

    def __str__(self) -> str:
        return f"log of attempt {self.result_id}"


class Worker(models.Model):
    """A Celery worker, as its heartbeat reports it: a row its main process keeps fresh (engine/workers.py)."""

    name = models.CharField("name", max_length=200, unique=True, help_text="Celery node name, e.g. w1@host.")
    host = models.CharField("host", max_length=200)
    pid = models.PositiveIntegerField("main process id")
    pool = models.CharField("pool", max_length=32, help_text="prefork, threads, solo, ...")
    concurrency = models.PositiveIntegerField("concurrency", help_text="Attempts it runs at once at most.")
    processes = models.JSONField("pool processes", default=list, blank=True, help_text="Pool process ids.")
    queues = models.JSONField("queues", default=list, blank=True)
    heartbeat_interval = models.FloatField("heartbeat interval (s)")
    started_at = models.DateTimeField("started")
    last_seen = models.DateTimeField("last seen", help_text="Its latest heartbeat (database clock).")
    offline_after = models.DateTimeField(
        "offline after", help_text="Two heartbeat intervals after the last one: silent past this, it is offline."
    )
    stopped_at = models.DateTimeField("stopped", null=True, blank=True, help_text="Set by a clean shutdown.")

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["offline_after"], name="worker_offline_after_idx")]

    def __str__(self) -> str:
        return self.name

    def is_online(self, at: datetime) -> bool:
        """Whether it has sent a heartbeat within two intervals of ``at`` and has not stopped."""
        return self.stopped_at is None and self.offline_after > at
