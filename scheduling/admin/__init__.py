"""Django admin for tasks, retry policies and results; actions call the service layer."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxLengthValidator
from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from scheduling import dashboard, selectors, services, validation
from scheduling.admin.lists import (
    ERROR_EXCERPT,
    FinishedWithinFilter,
    TaskNameFilter,
    WorkerFilter,
    badge,
    humanise_duration,
    local_time,
)
from scheduling.admin.views import ACTIONS, TaskAction, TaskPagesAdmin, running_attempts
from scheduling.engine import attempt_log, clock, cron
from scheduling.handlers import registry
from scheduling.models import (
    COLUMN_FIELDS,
    EDITABLE_FIELDS,
    FINISHED,
    AttemptStatus,
    RetryPolicy,
    Tag,
    Task,
    TaskAudit,
    TaskResult,
    TaskType,
    Worker,
)
from taskhub.admin_site import restrict_internals
from taskhub.exceptions import BulkValidationError, TaskHubError, ValidationError

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

    #: Who fills the form in (set by TaskAdmin.get_form): the service checks what they may see and use.
    actor: Any = None

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
        # The editable fields (scheduling.models.TASK_FIELDS), tags typed as text; TaskAdmin.fieldsets orders them.
        fields = [
            *("tag_names" if field == "tags" else field for field in EDITABLE_FIELDS),
            "any_run_dependencies",  # the mode of dependencies, written with them (service_data)
        ]
        field_classes = {"parameters": BoundedJSONField, "metadata": BoundedJSONField}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The name's length is the service's limit (validation.NAME_MAX_LENGTH), answered as on the API and CLI.
        if "name" in self.fields:  # not on a view-only page
            name = self.fields["name"]
            name.validators = [v for v in name.validators if not isinstance(v, MaxLengthValidator)]
        handler_field = self.fields["handler_tag"]
        assert isinstance(handler_field, forms.ChoiceField)
        handler_field.choices = [("", "---------")] + [
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
        data: dict[str, Any] = {name: self.cleaned_data.get(name) for name in self.Meta.fields if name != "tag_names"}
        data["tags"] = [t.strip() for t in (self.cleaned_data.get("tag_names") or "").split(",") if t.strip()]
        handler = self.cleaned_data.get("handler_tag")
        if handler and handler not in data["tags"]:
            data["tags"].insert(0, handler)
        # Every dependency with its mode: those also listed in "any run" count on any successful run of theirs.
        any_run = [t.pk for t in (self.cleaned_data.get("any_run_dependencies") or [])]
        listed = [t.pk for t in (self.cleaned_data.get("dependencies") or [])]
        data["dependencies"] = [
            {"id": pk, "mode": "any" if pk in any_run else "fresh"}
            for pk in [*listed, *(p for p in any_run if p not in listed)]
        ]
        data.pop("any_run_dependencies", None)
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
        cleaned = super().clean() or self.cleaned_data
        if self.errors:
            return cleaned
        try:
            services.task_validate(
                data=self.service_data(),
                task=self.instance if self.instance.pk else None,
                actor=self.actor,
                owner=None if self.instance.pk else self.actor,
            )
        except ValidationError as exc:
            renamed = {"tags": "tag_names", "secret_parameters": "secrets"}
            field_errors: dict[str, list[str]] = {}
            for field, msgs in exc.errors.items():  # "retry_policy.max_retries" is the form's retry_policy
                head = field.partition(".")[0]
                field_errors.setdefault(renamed.get(head, head), []).extend(msgs)
            known = {f: m for f, m in field_errors.items() if f in self.fields}
            other = [f"{f}: {' '.join(m)}" for f, m in field_errors.items() if f not in self.fields]
            raise DjangoValidationError({**known, **({"__all__": other} if other else {})}) from None
        return cleaned


def format_html_join_tags(names: list[str]) -> str:
    """Render tag names as small escaped chips."""
    if not names:
        return "-"
    return format_html_join(" ", '<span class="th-tag">{}</span>', ((name,) for name in names))


def timesince_short(moment: Any) -> str:
    """Say how long ago, in its largest unit only ('5 minutes')."""
    return timesince(moment, now=timezone.now(), depth=1)


class ResultInline(admin.TabularInline):
    model = TaskResult
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-created_at"]
    fields = readonly_fields = (
        "attempt",
        "status",
        "fire_time",
        "started_at",
        "duration",
        "worker",
        "progress",
        "error_message",
    )
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
        # The user's own and the shared tags only (scheduling.selectors): never other users' tag names.
        names = selectors.visible_tags(request.user).order_by("name").values_list("name", flat=True).distinct()
        return [(name, name) for name in names[:100]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        if self.value():
            return queryset.filter(tags__name=self.value())
        return queryset


def _report(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task], spec: TaskAction) -> None:
    done, refused = [], []
    for task in queryset:
        try:
            spec.call(task, request.user)
            done.append(task.name)
        except TaskHubError as exc:
            refused.append(f"{task.name}: {exc}")
    if done:
        modeladmin.message_user(request, f"{spec.verb}: {', '.join(done)}", messages.SUCCESS)
    for line in refused:
        modeladmin.message_user(request, f"Not {spec.verb.lower()}: {line}", messages.WARNING)


def _bulk_action(name: str) -> Callable[..., Any]:
    """The task list's action for ACTIONS[name]; cancel asks first while attempts of the selection run."""
    spec = ACTIONS[name]

    def action(modeladmin: TaskAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> Any:
        tasks = list(queryset)
        if name == "cancel" and request.POST.get("post") != "yes" and running_attempts(tasks):
            # Ask first, as delete_selected does.
            hidden = [("action", spec.bulk_name), ("post", "yes")] + [(ACTION_CHECKBOX_NAME, str(t.pk)) for t in tasks]
            return modeladmin.cancel_confirmation(request, tasks, form_url=request.get_full_path(), hidden=hidden)
        _report(modeladmin, request, queryset, spec)
        return None

    action.__name__ = spec.bulk_name
    return admin.action(description=spec.bulk_description, permissions=["change"])(action)


def _copy_of(task: Task) -> dict[str, Any]:
    """The fields of a new task like ``task``, named "<name> (copy)"; secret parameters are not copied."""
    data: dict[str, Any] = {field: getattr(task, field) for field in COLUMN_FIELDS}
    suffix = " (copy)"
    data["name"] = task.name[: validation.NAME_MAX_LENGTH - len(suffix)] + suffix
    data["tags"] = [tag.name for tag in task.tags.all()]
    data["dependencies"] = [dependency.pk for dependency in task.dependencies.all()]
    data["retry_policy"] = task.retry_policy
    return data


@admin.action(description="Duplicate selected tasks (all or none; not their secret parameters)", permissions=["add"])
def duplicate_selected(modeladmin: TaskAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    """Create a copy of each selected task, owned by the user, in one services.task_create_many call."""
    tasks = list(queryset.select_related("retry_policy").prefetch_related("tags", "dependencies").order_by("name"))
    try:
        created = services.task_create_many(
            items=[_copy_of(task) for task in tasks], owner=request.user, actor=request.user
        )
    except BulkValidationError as exc:
        for task, errors in zip(tasks, exc.items, strict=True):
            if errors:
                modeladmin.message_user(
                    request, f"Not duplicated: {task.name}: {ValidationError(errors)}", messages.WARNING
                )
        modeladmin.message_user(request, "Nothing was duplicated.", messages.ERROR)
        return
    except ValidationError as exc:  # more than security.max_bulk
        modeladmin.message_user(request, f"Nothing was duplicated: {exc}", messages.ERROR)
        return
    modeladmin.message_user(request, f"Duplicated: {', '.join(t.name for t in created)}", messages.SUCCESS)


class TaskChangeList(ChangeList):
    """The task list's rows carry their tags (one prefetch) and their last started attempt (subqueries, no N+1)."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Task]:
        queryset = super().get_queryset(request, exclude_parameters)
        # The latest attempt that started, found through result_task_idx (task, -created_at).
        last = TaskResult.objects.filter(task=OuterRef("pk"), started_at__isnull=False).order_by("-created_at", "-pk")
        return queryset.prefetch_related(Prefetch("tags", queryset=Tag.objects.only("id", "name"))).annotate(
            last_started=Subquery(last.values("started_at")[:1]),
            last_status=Subquery(last.values("status")[:1]),
            last_duration=Subquery(last.values("duration")[:1]),
        )


@admin.register(Task)
class TaskAdmin(TaskPagesAdmin):
    form = TaskForm
    list_display = [
        "name",
        "status_badge",
        "task_type",
        "tag_list",
        "schedule",
        "last_run",
        "attempts",
        "priority",
        "owner",
        "updated_at",
    ]
    # Owners of the tasks the user may see only: the filter must not list every user.
    list_filter = ["status", "priority", "task_type", "enabled", TagFilter, ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "id"]
    list_select_related = ["owner", "retry_policy"]
    ordering = ["-updated_at"]  # what changed last first (task_updated_idx)
    change_list_template = "admin/scheduling/task/change_list.html"
    autocomplete_fields = ["dependencies", "any_run_dependencies", "retry_policy"]
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
    actions = [*(_bulk_action(name) for name in ACTIONS), duplicate_selected]
    fieldsets = [
        (
            None,
            {"fields": ["name", "handler_tag", "tag_names", "parameters", "secrets", "priority", "enabled"]},
        ),
        (
            "Schedule",
            {"fields": ["task_type", "cron_expr", "timezone", "cron_description", "next_fire_at", "overlap_policy"]},
        ),
        (
            "Execution",
            {
                "fields": [
                    "dependencies",
                    "any_run_dependencies",
                    "dependency_timeout",
                    "timeout_seconds",
                    "retry_policy",
                ]
            },
        ),
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

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TaskChangeList

    def get_inlines(self, request: HttpRequest, obj: Task | None) -> list[Any]:
        return list(super().get_inlines(request, obj)) if obj is not None and obj.pk else []  # no attempts yet

    def get_fieldsets(self, request: HttpRequest, obj: Task | None = None) -> Any:
        """Before the first save there is no state and no computed schedule to show: leave those out."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and obj.pk:
            return fieldsets
        unsaved = {"cron_description", "next_fire_at"}
        return [
            (title, {**options, "fields": [f for f in options["fields"] if f not in unsaved]})
            for title, options in fieldsets
            if title != "State"
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra = {
            "live_counts": dashboard.live_counts(),
            # Only tag names the user may see (their own and the shared ones), each name once.
            "pipeline_tags": list(
                selectors.visible_tags(request.user).order_by("name").values_list("name", flat=True).distinct()[:200]
            ),
            "current_tag": request.GET.get("tag", ""),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra)

    @admin.display(description="status", ordering="status")
    def status_badge(self, task: Task) -> str:
        paused = badge("PAUSED", "paused") if not task.enabled else ""
        return format_html("{} {}", badge(task.status), paused)

    @admin.display(description="tags")
    def tag_list(self, task: Task) -> str:
        names = sorted(tag.name for tag in task.tags.all())  # prefetched by TaskChangeList
        return format_html_join_tags(names)

    @admin.display(description="schedule", ordering="next_fire_at")
    def schedule(self, task: Task) -> str:
        if task.task_type != TaskType.SCHEDULED or not task.cron_expr:
            return "-"
        upcoming = local_time(task.next_fire_at, task.timezone) if task.next_fire_at else "paused"
        return format_html(
            "<code>{}</code> <small>{}</small><br><small>next: {}</small>", task.cron_expr, task.timezone, upcoming
        )

    @admin.display(description="last run")
    def last_run(self, task: Task) -> str:
        started = getattr(task, "last_started", None)
        if started is None:
            return "-"
        # last_started, last_status and last_duration are TaskChangeList's annotations.
        duration = getattr(task, "last_duration", None)
        took = humanise_duration(duration) if duration is not None else "running"
        return format_html(
            '{} <small title="{}">{} ago</small> <small class="th-duration">{}</small>',
            badge(getattr(task, "last_status", "")),
            f"{started:%Y-%m-%d %H:%M:%S %Z}",
            timesince_short(started),
            took,
        )

    @admin.display(description="attempts")
    def attempts(self, task: Task) -> str:
        if task.retry_policy_id and task.retry_policy:
            return f"{task.attempt} of {task.retry_policy.max_retries + 1}"
        return str(task.attempt)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name in ("dependencies", "any_run_dependencies"):  # only tasks its editor can see
            kwargs["queryset"] = selectors.visible_tasks(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "retry_policy":  # the editor's own and the shared policies (the service checks again)
            kwargs["queryset"] = selectors.visible_policies(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

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
            dependents = list(task.dependents.exclude(pk__in=selected).values_list("pk", "name"))
            seen = selectors.visible_task_ids(request.user, [pk for pk, _ in dependents])
            for _, name in [d for d in dependents if d[0] in seen][:10]:
                protected.append(f"Task: {name} (depends on {task.name})")
            hidden = len(dependents) - len(seen)
            if hidden:  # counted, never named
                protected.append(f"{hidden} task(s) you cannot see (depend on {task.name})")
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


class SharedFieldForm(forms.ModelForm):
    """A retry policy or tag form with a "shared" box (shown to users allowed to share only).

    clean() asks the service whether the change may be made; OwnedAdmin.save_model makes it through the service.
    """

    shared = forms.BooleanField(
        label="Shared",
        required=False,
        help_text="Every user's tasks may use it (only users allowed to share may set this); else it is yours.",
    )
    actor: Any = None

    def _post_clean(self) -> None:
        # No model validation here: names are unique per owner, which the service checks (the model's
        # unique check would tell whether another user has that name).
        pass

    def service_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        if self.errors:
            return cleaned
        validate = services.policy_validate if self._meta.model is RetryPolicy else services.tag_validate
        try:
            validate(**self.service_kwargs())
        except ValidationError as exc:
            errors: dict[str, list[str]] = {}
            for field, msgs in exc.errors.items():
                for msg in msgs:
                    # validate_retry_policy says "backoff_factor: ..." under retry_policy: put it on its field.
                    name, sep, rest = msg.partition(": ")
                    if field == "retry_policy" and sep and name in self.fields:
                        errors.setdefault(name, []).append(rest)
                    elif field == "retry_policy" and "named" in msg:
                        errors.setdefault("name", []).append(msg)
                    else:
                        errors.setdefault(field if field in self.fields else "__all__", []).append(msg)
            raise DjangoValidationError(errors) from None
        return cleaned

    def save_through_service(self) -> Any:
        save = services.policy_save if self._meta.model is RetryPolicy else services.tag_save
        return save(**self.service_kwargs())


class RetryPolicyForm(SharedFieldForm):
    class Meta:
        model = RetryPolicy
        fields = list(validation.RETRY_POLICY_FIELDS)

    def service_kwargs(self) -> dict[str, Any]:
        return {
            "data": {f: self.cleaned_data.get(f) for f in self.Meta.fields},
            "policy": self.instance if self.instance.pk else None,
            "actor": self.actor,
            "shared": bool(self.cleaned_data.get("shared")),
        }


class TagForm(SharedFieldForm):
    class Meta:
        model = Tag
        fields = ["name"]

    def service_kwargs(self) -> dict[str, Any]:
        return {
            "name": self.cleaned_data.get("name"),
            "tag": self.instance if self.instance.pk else None,
            "actor": self.actor,
            "shared": bool(self.cleaned_data.get("shared")),
        }


class OwnedAdmin(admin.ModelAdmin):
    """Retry policies and tags: a user sees their own and the shared ones, and changes only what they manage.

    Every rule is scheduling.selectors' and the services'; writes go through services (audited on the tasks).
    """

    list_select_related = ["owner"]
    search_fields = ["name"]
    readonly_fields = ["owner"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The change list, the change page and the autocomplete of the task form all read this.
        return selectors.visible(self.model, request.user, super().get_queryset(request))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        fields = form.base_fields
        if "shared" in fields and not selectors.may_share(request.user, self.model):
            fields = {k: v for k, v in fields.items() if k != "shared"}
        return type(form.__name__, (form,), {"actor": request.user, "base_fields": fields})

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [f for f in super().get_fields(request, obj) if f not in ("owner", "shared")]
        if obj is None:
            return [*fields, "shared"] if selectors.may_share(request.user, self.model) else fields
        return [*fields, "owner"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or selectors.may_manage(request.user, obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or selectors.may_manage(request.user, obj))

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        saved = form.save_through_service()
        for field in saved._meta.concrete_fields:  # the admin's message, log entry and redirect use obj
            setattr(obj, field.attname, getattr(saved, field.attname))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, list[Any]]:
        """List what deleting removes without naming tasks the user cannot see; refuse what they may not delete."""
        deleted = [str(obj) for obj in objs]
        protected: list[str] = []
        for obj in objs:
            if not selectors.may_manage(request.user, obj):
                protected.append(f"{obj} (not yours: you may delete only your own)")
            elif isinstance(obj, RetryPolicy):
                users = list(obj.tasks.values_list("pk", "name"))
                if users:
                    protected.append(f"{obj} (used by {selectors.describe_tasks(request.user, users)})")
            elif obj.name in registry and Task.objects.filter(handler=obj.name, tags=obj).exists():
                protected.append(f"{obj} (a handler's tag, in use)")
        return deleted, {self.model._meta.verbose_name_plural: len(deleted)}, set(), protected

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_queryset(request, self.model.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        delete = services.policy_delete if self.model is RetryPolicy else services.tag_delete
        keyword = "policy" if self.model is RetryPolicy else "tag"
        for obj in queryset:
            try:
                delete(**{keyword: obj}, actor=request.user)
            except TaskHubError as exc:
                self.message_user(request, f"Not deleted: {exc}", messages.ERROR)


@admin.register(RetryPolicy)
class RetryPolicyAdmin(OwnedAdmin):
    form = RetryPolicyForm
    list_display = [
        "name",
        "owner",
        "max_retries",
        "retry_delay",
        "backoff_factor",
        "max_delay",
        "jitter",
        "retry_on_timeout",
    ]


RESULT_FIELDS = [f.name for f in TaskResult._meta.fields]
RESULT_OUTCOME = ["task", "attempt", "status_badge", "took", "worker", "worker_link", "started_at", "finished_at"]
RESULT_SHOWN_OTHERWISE = {"id", "duration", "error_message", "traceback", *RESULT_OUTCOME}
RESULT_DETAILS: list[Any] = [f for f in RESULT_FIELDS if f not in RESULT_SHOWN_OTHERWISE]


@admin.register(TaskResult)
class TaskResultAdmin(admin.ModelAdmin):
    list_display = [
        "attempt_link",
        "task_name",
        "attempt",
        "status_badge",
        "started_at",
        "took",
        "error_excerpt",
        "worker",
        "pipeline_run_link",
    ]
    list_display_links = ["attempt_link"]
    list_filter = ["status", TaskNameFilter, WorkerFilter, FinishedWithinFilter]
    search_fields = ["task__name", "celery_task_id"]
    list_select_related = ["task"]
    show_full_result_count = False
    # Newest first by the primary key: no index serves -created_at over every attempt (1 s at 1M on
    # PostgreSQL), and a date hierarchy's SELECT DISTINCT by month read every row (bench/scale.py).
    ordering = ["-id"]
    change_list_template = "admin/scheduling/taskresult/change_list.html"
    change_form_template = "admin/scheduling/taskresult/change_form.html"
    # The page leads with the outcome: a status badge, the duration humanised, the error and the traceback as
    # preformatted blocks (indentation kept); the machine fields follow, collapsed.
    fieldsets = [
        (None, {"fields": [*RESULT_OUTCOME, "error_block", "traceback_block"]}),
        ("Details", {"classes": ["collapse"], "fields": RESULT_DETAILS}),
    ]
    readonly_fields = [*RESULT_FIELDS, "status_badge", "took", "worker_link", "error_block", "traceback_block"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskResult]:
        """The attempts of the tasks the user may see (view_all_tasks, or their own), as in the API."""
        return selectors.visible_results(request.user, super().get_queryset(request))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        return super().changelist_view(request, {"live_counts": dashboard.live_counts(), **(extra_context or {})})

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        return lookup in ("task__id__exact", "task__id") or super().lookup_allowed(lookup, value, request)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> Any:
        extra = dict(extra_context or {})
        result = self.get_object(request, object_id)  # None (not visible): Django's "doesn't exist" follows
        extra["attempt_log"] = attempt_log.admin_context(result)
        if result is not None:  # "export-jira, attempt 3", not the task's UUID
            extra["title"] = f"{result.task.name}, attempt {result.attempt}"
            extra["subtitle"] = None
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="result")
    def attempt_link(self, result: TaskResult) -> str:
        return f"#{result.pk}"

    @admin.display(description="pipeline run", ordering="pipeline_run")
    def pipeline_run_link(self, result: TaskResult) -> str:
        if result.pipeline_run_id is None:
            return ""
        url = f"{reverse('admin:scheduling_task_pipeline')}?task={result.task_id}&pipeline_run={result.pipeline_run_id}"
        return format_html('<a href="{}">{}</a>', url, result.pipeline_run_id)

    @admin.display(description="task", ordering="task__name")
    def task_name(self, result: TaskResult) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:scheduling_task_change", args=[result.task_id]), result.task.name
        )

    @admin.display(description="status", ordering="status")
    def status_badge(self, result: TaskResult) -> str:
        return badge(result.status)

    @admin.display(description="duration", ordering="duration")
    def took(self, result: TaskResult) -> str:
        return humanise_duration(result.duration) or "-"

    @admin.display(description="error")
    def error_excerpt(self, result: TaskResult) -> str:
        text = " ".join(result.error_message.split())
        if not text:
            return ""
        short = text if len(text) <= ERROR_EXCERPT else text[: ERROR_EXCERPT - 1] + "…"
        return format_html('<span class="th-error-cell" title="{}">{}</span>', text[:1000], short)

    @admin.display(description="error")
    def error_block(self, result: TaskResult) -> str:
        if not result.error_message:
            return "-"
        return format_html('<pre class="th-error">{}</pre>', result.error_message)

    @admin.display(description="traceback")
    def traceback_block(self, result: TaskResult) -> str:
        if not result.traceback:
            return "-"
        return format_html('<pre class="th-traceback">{}</pre>', result.traceback)

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

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, list[Any]]:
        """Refuse up front what services.results_delete keeps: unfinished attempts and each task's last result.

        (Not has_delete_permission per attempt: deleting a task through the task admin removes its attempts.)
        """
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        objs = list(objs)
        for result in objs:
            if result.status not in FINISHED:
                protected.append(f"{result}: waiting or running; cancel the task first (through the lifecycle)")
        for task_id in {result.task_id for result in objs}:
            last = (
                TaskResult.objects.filter(task_id=task_id, status__in=FINISHED).order_by("-created_at", "-id").first()
            )
            if last is not None and any(result.pk == last.pk for result in objs):
                protected.append(f"{last}: the task's last result (kept, as by result retention)")
        return deleted, model_count, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: TaskResult) -> None:
        self.delete_queryset(request, TaskResult.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TaskResult]) -> None:
        _, refused = services.results_delete(results=list(queryset.values_list("pk", flat=True)), actor=request.user)
        for line in refused:
            self.message_user(request, f"Not deleted: {line}", messages.ERROR)


@admin.register(Tag)
class TagAdmin(OwnedAdmin):
    form = TagForm
    list_display = ["name", "owner"]


@admin.register(TaskAudit)
class TaskAuditAdmin(admin.ModelAdmin):
    list_display = ["created_at", "task_name", "task_ref", "action", "actor", "detail"]
    list_filter = ["action"]
    search_fields = ["task_name", "task__id"]
    list_select_related = ["actor"]
    show_full_result_count = False
    # "task" itself would render empty once the task is deleted; task_ref says so and keeps the id.
    fields = readonly_fields = ("created_at", "task_name", "task_ref", "action", "actor", "changes", "detail")

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskAudit]:
        exists = Task.objects.filter(pk=OuterRef("task_id"))
        queryset = super().get_queryset(request).annotate(task_exists=Exists(exists))
        if not selectors.sees_all_tasks(request.user):  # the user's own tasks' entries only, as in the API
            queryset = queryset.filter(task_id__in=selectors.visible_tasks(request.user).values("pk"))
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
    fields = readonly_fields = (
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
    )

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


# django-celery-beat's admin registered first (INSTALLED_APPS order); its tables are TaskHub's internals.
restrict_internals(admin.site)
