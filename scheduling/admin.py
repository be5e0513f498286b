"""Django admin for tasks, retry policies and results; actions call the service layer."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from scheduling import clock, cron, services
from scheduling.admin_views import TaskPagesMixin
from scheduling.api.permissions import VIEW_ALL, visible_results, visible_tasks
from scheduling.handlers import registry
from scheduling.models import AttemptStatus, RetryPolicy, Tag, Task, TaskAudit, TaskResult, Worker
from taskhub.exceptions import TaskHubError, ValidationError

# Form field suffix -> RetryPolicy field, for a retry policy typed in the task form.
NEW_POLICY_FIELDS = {
    "retries": "max_retries",
    "delay": "retry_delay",
    "backoff": "backoff_factor",
    "max_delay": "max_delay",
}


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders its value, not even the one just typed (a form shown again after an error)."""

    def format_value(self, value: Any) -> None:
        return None


class BoundedJSONField(forms.JSONField):
    """A JSON form field whose input nested past Python's recursion limit is a form error, not a 500."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise DjangoValidationError("is nested too deeply to be read as JSON.", code="invalid") from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:  # shown back as typed, with the error above it
            return forms.fields.InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> Any:
        text = super().prepare_value(value)
        if isinstance(text, str) and any("\ud800" <= c <= "\udfff" for c in text):
            # A lone surrogate (sent as \ud800 in JSON) cannot be written into the UTF-8 page: show it escaped.
            return json.dumps(value, cls=self.encoder)
        return text


class TaskForm(forms.ModelForm):
    """Task form whose clean() runs the same validation as the API and the CLI."""

    handler_tag = forms.ChoiceField(
        label="Handler",
        required=False,
        help_text="What the task runs. Its parameters are checked against the handler's schema.",
    )
    new_policy_retries = forms.IntegerField(
        label="Retries", required=False, min_value=0, help_text="Retries after the first attempt (0 = never)."
    )
    new_policy_delay = forms.FloatField(
        label="First delay (s)", required=False, min_value=0, help_text="Seconds before the first retry (default 60)."
    )
    new_policy_backoff = forms.FloatField(
        label="Backoff factor",
        required=False,
        min_value=1,
        help_text="Each further retry waits this many times longer.",
    )
    new_policy_max_delay = forms.FloatField(
        label="Max delay (s)", required=False, min_value=0, help_text="Upper bound on any one delay (default 3600)."
    )
    secrets = forms.JSONField(
        label="Secret parameters",
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text='Write-only JSON merged over the parameters when the handler runs, e.g. {"headers": '
        '{"Authorization": "Bearer ..."}}. Stored encrypted and never shown. Leave empty to keep what is stored; '
        "{} removes it.",
    )
    tag_names = forms.CharField(
        label="Tags",
        required=False,
        help_text="Comma-separated labels. Without a handler chosen above, exactly one must be a handler tag.",
    )

    class Meta:
        model = Task
        fields = [
            "name",
            "task_type",
            "cron_expr",
            "timezone",
            "overlap_policy",
            "priority",
            "tag_names",
            "parameters",
            "metadata",
            "dependencies",
            "timeout_seconds",
            "retry_policy",
            "enabled",
        ]
        field_classes = {"parameters": BoundedJSONField, "metadata": BoundedJSONField}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["handler_tag"].choices = [("", "---------")] + [
            (spec.tag, f"{spec.tag} - {spec.description}"[:90] if spec.description else spec.tag)
            for spec in registry.all()
        ]
        if self.instance.pk and self.instance.secret_parameters:
            self.fields["secrets"].help_text += " Currently: set (hidden)."
        if self.instance.pk:
            handler = self.instance.handler
            self.fields["handler_tag"].initial = handler if handler in registry else ""
            names = self.instance.tags.values_list("name", flat=True)
            self.fields["tag_names"].initial = ", ".join(n for n in names if n != self.fields["handler_tag"].initial)

    def service_data(self) -> dict[str, Any]:
        data = {name: self.cleaned_data.get(name) for name in self.Meta.fields if name != "tag_names"}
        data["tags"] = [t.strip() for t in (self.cleaned_data.get("tag_names") or "").split(",") if t.strip()]
        handler = self.cleaned_data.get("handler_tag")
        if handler and handler not in data["tags"]:
            data["tags"].insert(0, handler)
        data["dependencies"] = [t.pk for t in (self.cleaned_data.get("dependencies") or [])]
        data["timeout_seconds"] = self.cleaned_data.get("timeout_seconds")
        data["cron_expr"] = self.cleaned_data.get("cron_expr") or ""
        if self.cleaned_data.get("secrets") is not None:  # empty box: keep the stored secrets
            data["secret_parameters"] = self.cleaned_data["secrets"]
        # A policy typed in place (no stored one chosen) is created by the service as "policy for <task>".
        inline_policy = {
            field: self.cleaned_data.get(f"new_policy_{key}")
            for key, field in NEW_POLICY_FIELDS.items()
            if self.cleaned_data.get(f"new_policy_{key}") is not None
        }
        if inline_policy and not data.get("retry_policy"):
            data["retry_policy"] = inline_policy
        return data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            services.task_validate(data=self.service_data(), task=self.instance if self.instance.pk else None)
        except ValidationError as exc:
            renamed = {"tags": "tag_names", "secret_parameters": "secrets"}
            field_errors = {renamed.get(field, field): msgs for field, msgs in exc.errors.items()}
            known = {f: m for f, m in field_errors.items() if f in self.fields}
            other = [f"{f}: {' '.join(m)}" for f, m in field_errors.items() if f not in self.fields]
            raise DjangoValidationError({**known, **({"__all__": other} if other else {})}) from None
        return cleaned


class ResultInline(admin.TabularInline):
    model = TaskResult
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-created_at"]
    fields = ["attempt", "status", "fire_time", "started_at", "duration", "worker", "progress", "error_message"]
    readonly_fields = fields
    max_num = 0
    classes = ["collapse"]  # the task page's attempts timeline comes first; this is the raw table
    verbose_name_plural = "task results (table)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskResult]:
        return super().get_queryset(request).order_by("-created_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # attempts are made by the dispatcher, never by hand

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in Tag.objects.values_list("name", flat=True)[:100]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        if self.value():
            return queryset.filter(tags__name=self.value())
        return queryset


def _report(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task], verb: str, op: Any) -> None:
    done, refused = [], []
    for task in queryset:
        try:
            op(task=task, actor=request.user)
            done.append(task.name)
        except TaskHubError as exc:
            refused.append(f"{task.name}: {exc}")
    if done:
        modeladmin.message_user(request, f"{verb}: {', '.join(done)}", messages.SUCCESS)
    for line in refused:
        modeladmin.message_user(request, f"Not {verb.lower()}: {line}", messages.WARNING)


@admin.action(description="Run selected tasks now", permissions=["change"])
def run_now(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    _report(modeladmin, request, queryset, "Started", services.task_run_now)


@admin.action(description="Cancel selected tasks", permissions=["change"])
def cancel(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    _report(modeladmin, request, queryset, "Cancelled", services.task_cancel)


@admin.action(description="Retry selected failed tasks", permissions=["change"])
def retry(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    _report(modeladmin, request, queryset, "Retried", services.task_retry)


@admin.action(description="Pause selected tasks", permissions=["change"])
def pause(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    _report(modeladmin, request, queryset, "Paused", services.task_pause)


@admin.action(description="Resume selected tasks", permissions=["change"])
def resume(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    _report(modeladmin, request, queryset, "Resumed", services.task_resume)


@admin.register(Task)
class TaskAdmin(TaskPagesMixin, admin.ModelAdmin):
    form = TaskForm
    list_display = ["name", "task_type", "status", "priority", "enabled", "owner", "next_fire_at", "updated_at"]
    # Owners of the tasks the user may see only: the filter must not list every user.
    list_filter = ["status", "priority", "task_type", "enabled", TagFilter, ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "id"]
    list_select_related = ["owner"]
    autocomplete_fields = ["dependencies", "retry_policy"]
    readonly_fields = [
        "status",
        "status_reason",
        "handler",
        "cron_description",
        "next_fire_at",
        "attempt",
        "next_attempt_at",
        "owner",
        "created_at",
        "updated_at",
    ]
    inlines = [ResultInline]
    actions = [run_now, cancel, retry, pause, resume]
    fieldsets = [
        (
            None,
            {"fields": ["name", "handler_tag", "tag_names", "parameters", "secrets", "priority", "enabled"]},
        ),
        (
            "Schedule",
            {"fields": ["task_type", "cron_expr", "timezone", "cron_description", "next_fire_at", "overlap_policy"]},
        ),
        ("Execution", {"fields": ["dependencies", "timeout_seconds", "retry_policy"]}),
        (
            "New retry policy (instead of choosing one above)",
            {
                "classes": ["collapse"],
                "fields": ["new_policy_retries", "new_policy_delay", "new_policy_backoff", "new_policy_max_delay"],
            },
        ),
        (
            "State",
            {
                "fields": [
                    "status",
                    "status_reason",
                    "attempt",
                    "next_attempt_at",
                    "handler",
                    "owner",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
        ("Metadata", {"classes": ["collapse"], "fields": ["metadata"]}),
    ]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "dependencies":  # a task may only depend on tasks its editor can see
            kwargs["queryset"] = visible_tasks(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="schedule")
    def cron_description(self, task: Task) -> str:
        if not task.cron_expr:
            return "-"
        # Start just before the stored next fire so it is listed first; a paused task shows fires from now.
        after = task.next_fire_at - timedelta(microseconds=1) if task.next_fire_at else timezone.now()
        upcoming = cron.next_fires(task.cron_expr, task.timezone, after, 4)
        return format_html(
            "{}<br><small>next: {}</small>",
            cron.describe(task.cron_expr),
            ", ".join(f"{m.astimezone(cron.timezone_of(task.timezone)):%Y-%m-%d %H:%M %Z}" for m in upcoming),
        )

    def save_model(self, request: HttpRequest, obj: Task, form: TaskForm, change: bool) -> None:
        data = form.service_data()
        if change:
            form.instance = services.task_update(task=obj, data=data, actor=request.user)
        else:
            form.instance = services.task_create(data=data, owner=request.user)
            # The admin links the message, the log entry and "Save and continue" to obj, not form.instance.
            obj.pk = form.instance.pk

    def save_related(self, request: HttpRequest, form: TaskForm, formsets: Any, change: bool) -> None:
        # Tags and dependencies were written by the service; only the (read-only) inlines remain.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, list[Any]]:
        """List tasks outside the selection that depend on it as protected, so the admin refuses up front."""
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        selected = {task.pk for task in objs}
        for task in objs:
            for dependent in task.dependents.exclude(pk__in=selected).only("name")[:10]:
                protected.append(f"Task: {dependent.name} (depends on {task.name})")
        return deleted, model_count, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: Task) -> None:
        try:
            services.task_delete(task=obj, actor=request.user)
        except TaskHubError as exc:  # a dependent was added after the confirmation page
            self.message_user(request, str(exc), messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        # A task cannot go while others depend on it: delete dependents first, pass after pass.
        pending = list(queryset)
        while pending:
            refused = []
            for task in pending:
                try:
                    services.task_delete(task=task, actor=request.user)
                except TaskHubError:
                    refused.append(task)
            if len(refused) == len(pending):
                break
            pending = refused
        for task in pending:
            self.message_user(request, f"Not deleted: {task.name} (other tasks depend on it)", messages.ERROR)


@admin.register(RetryPolicy)
class RetryPolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "max_retries", "retry_delay", "backoff_factor", "max_delay", "jitter", "retry_on_timeout"]
    search_fields = ["name"]


@admin.register(TaskResult)
class TaskResultAdmin(admin.ModelAdmin):
    list_display = ["task", "attempt", "status", "fire_time", "started_at", "finished_at", "duration", "worker"]
    list_filter = ["status"]
    search_fields = ["task__name", "celery_task_id"]
    list_select_related = ["task"]
    show_full_result_count = False
    # Newest first by the primary key: no index serves -created_at over every attempt (1 s at 1M on
    # PostgreSQL), and a date hierarchy's SELECT DISTINCT by month read every row (bench/scale.py).
    ordering = ["-id"]
    readonly_fields = [
        name
        for f in TaskResult._meta.fields
        for name in ((f.name, "worker_link") if f.name == "worker_node" else (f.name,))
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskResult]:
        """The attempts of the tasks the user may see (view_all_tasks, or their own), as in the API."""
        return visible_results(request.user, super().get_queryset(request))

    @admin.display(description="worker page")
    def worker_link(self, result: TaskResult) -> str:
        """Link the attempt to the worker that ran it (its heartbeat row), when that row is still known."""
        if not result.worker_node:
            return "-"
        worker = Worker.objects.filter(name=result.worker_node).only("pk").first()
        if worker is None:
            return format_html("{} <small>(no longer known)</small>", result.worker_node)
        return format_html('<a href="{}">{}</a>', reverse("admin:scheduling_worker_change", args=[worker.pk]), worker)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(TaskAudit)
class TaskAuditAdmin(admin.ModelAdmin):
    list_display = ["created_at", "task_name", "task_ref", "action", "actor", "detail"]
    list_filter = ["action"]
    search_fields = ["task_name", "task__id"]
    list_select_related = ["actor"]
    show_full_result_count = False
    # "task" itself would render empty once the task is deleted; task_ref says so and keeps the id.
    fields = ["created_at", "task_name", "task_ref", "action", "actor", "changes", "detail"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskAudit]:
        exists = Task.objects.filter(pk=OuterRef("task_id"))
        queryset = super().get_queryset(request).annotate(task_exists=Exists(exists))
        if not request.user.has_perm(VIEW_ALL):  # the user's own tasks' entries only, as in the API
            queryset = queryset.filter(task_id__in=visible_tasks(request.user).values("pk"))
        return queryset

    @admin.display(description="task")
    def task_ref(self, entry: TaskAudit) -> str:
        exists = getattr(entry, "task_exists", None)
        if exists is None:
            exists = Task.objects.filter(pk=entry.task_id).exists()
        if not exists:
            return format_html("{} <small>(deleted)</small>", entry.task_id)
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:scheduling_task_change", args=[entry.task_id]), entry.task_id
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # written by the service layer only

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Workers from their heartbeats; read-only (each worker writes its own row)."""

    list_display = [
        "name",
        "online",
        "host",
        "running_now",
        "concurrency",
        "pool_processes",
        "queue_names",
        "last_seen",
    ]
    search_fields = ["name", "host"]
    fields = [
        "name",
        "state",
        "host",
        "pid",
        "pool_processes",
        "concurrency",
        "running_now",
        "queue_names",
        "heartbeat_interval",
        "started_at",
        "heard_from",
        "offline_after",
        "stopped_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        running = (
            TaskResult.objects.filter(status=AttemptStatus.RUNNING, worker_node=OuterRef("name"))
            .order_by()
            .values("worker_node")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(running=Subquery(running))

    @admin.display(description="online", boolean=True)
    def online(self, worker: Worker) -> bool:
        return worker.is_online(clock.now())

    @admin.display(description="state")
    def state(self, worker: Worker) -> str:
        if worker.is_online(clock.now()):
            return "online"
        return "stopped (clean shutdown)" if worker.stopped_at else "offline (no heartbeat for two intervals)"

    @admin.display(description="last heartbeat")
    def heard_from(self, worker: Worker) -> str:
        ago = max((clock.now() - worker.last_seen).total_seconds(), 0.0)
        return f"{timezone.localtime(worker.last_seen):%Y-%m-%d %H:%M:%S %Z} ({ago:.0f} s ago)"

    @admin.display(description="running now")
    def running_now(self, worker: Worker) -> str:
        url = reverse("admin:scheduling_taskresult_changelist")
        count = getattr(worker, "running", None) or 0
        return format_html('<a href="{}?worker_node={}&amp;status__exact=RUNNING">{}</a>', url, worker.name, count)

    @admin.display(description="pool")
    def pool_processes(self, worker: Worker) -> str:
        return f"{worker.pool}: {', '.join(str(pid) for pid in worker.processes) or '-'}"

    @admin.display(description="queues")
    def queue_names(self, worker: Worker) -> str:
        return ", ".join(worker.queues)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
