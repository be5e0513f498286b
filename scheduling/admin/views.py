"""Extra admin pages for tasks: action buttons, live attempts, artifacts, dependency graph, cron preview, dashboard.

``TaskPagesAdmin`` is the base of ``TaskAdmin``; every view goes through ``admin_site.admin_view`` (staff login)
and then checks the model admin's own view/change permission for the task it touches.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from scheduling import dashboard, selectors, services
from scheduling.admin import graph as admin_graph
from scheduling.engine import attempt_log, cron
from scheduling.handlers import registry
from scheduling.models import AttemptStatus, Task, TaskAudit, TaskResult, TaskStatus, TaskType
from taskhub.exceptions import TaskHubError

TIMELINE_LIMIT = 50  # attempts shown on the task page; the results list has the rest
AUDIT_LIMIT = 30  # latest audit entries shown on the task page
ACTIVE = (TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.RETRY)


@dataclass(frozen=True)
class TaskAction:
    """One thing a person does to a task: a button on its page and an action on the task list."""

    label: str  #: the button's text
    bulk_name: str  #: the list action's name (what the changelist form posts)
    bulk_description: str  #: the list action's entry in the "Action" menu
    verb: str  #: what the list action reports it did: "Started: a, b"
    call: Callable[[Task, Any], Any]  #: the service call, with the acting user
    said: Callable[[Task, Any], str]  #: what the button reports, given the call's result


def _downstream_said(result: Any) -> str:
    outcome = services.downstream_of(result)
    return outcome.summary() if outcome is not None else "no dependent run again"


def _cancel(task: Task, user: Any) -> int:
    return services.task_cancel(task=task, reason=f"cancelled from the admin by {user}", actor=user)


# The task actions, listed once: the task page's buttons and the list's bulk actions both come from here.
ACTIONS: dict[str, TaskAction] = {
    "run": TaskAction(
        "Run now",
        "run_now",
        "Run selected tasks now",
        "Started",
        lambda t, user: services.task_run_now(task=t, actor=user),
        lambda t, r: f"Started a new run of {t.name!r}.",
    ),
    "cancel": TaskAction(
        "Cancel",
        "cancel",
        "Cancel selected tasks",
        "Cancelled",
        _cancel,
        lambda t, n: f"Cancelled {n} attempt{'s' if n != 1 else ''} of {t.name!r}.",
    ),
    "retry": TaskAction(
        "Retry",
        "retry",
        "Retry selected failed tasks",
        "Retried",
        lambda t, user: services.task_retry(task=t, actor=user),
        lambda t, r: f"Retrying {t.name!r} from attempt 1.",
    ),
    "retry_downstream": TaskAction(
        "Retry with failed downstream",
        "retry_downstream",
        "Retry selected failed tasks and the dependents that failed because of them",
        "Retried",
        lambda t, user: services.task_retry(task=t, actor=user, downstream="failed"),
        lambda t, r: f"Retrying {t.name!r} from attempt 1; {_downstream_said(r)}.",
    ),
    "pause": TaskAction(
        "Pause",
        "pause",
        "Pause selected tasks",
        "Paused",
        lambda t, user: services.task_pause(task=t, actor=user),
        lambda t, r: f"Paused {t.name!r}: it will not fire or start.",
    ),
    "resume": TaskAction(
        "Resume",
        "resume",
        "Resume selected tasks",
        "Resumed",
        lambda t, user: services.task_resume(task=t, actor=user),
        lambda t, r: f"Resumed {t.name!r}.",
    ),
}


def available_actions(task: Task) -> list[tuple[str, str]]:
    """Return the (name, label) of the buttons that make sense for the task's current state."""
    names = ["run"]
    if task.status in ACTIVE:
        names.append("cancel")
    if task.status in (TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.CANCELLED):
        names.append("retry")
        if task.dependents.exists():
            names.append("retry_downstream")
    names.append("pause" if task.enabled else "resume")
    return [(name, ACTIONS[name].label) for name in names]


def running_attempts(tasks: list[Task]) -> list[TaskResult]:
    """Return the attempts of ``tasks`` running now (result_inflight_idx), with their task's name."""
    return list(
        TaskResult.objects.filter(task__in=tasks, status=AttemptStatus.RUNNING)
        .select_related("task")
        .only("id", "attempt", "status", "started_at", "worker", "progress", "task__id", "task__name")
        .order_by("started_at")[:100]
    )


def timeline(task: Task) -> list[TaskResult]:
    """Return the task's latest attempts, newest first (result_task_idx), each with its artifact file names."""
    attempts = list(selectors.attempts_of(task).defer("traceback", "result")[:TIMELINE_LIMIT])
    for attempt in attempts:
        files = attempt.artifacts if isinstance(attempt.artifacts, list) else []
        names = [(index, PurePosixPath(str(path)).name) for index, path in enumerate(files)]
        attempt.artifact_files = names  # type: ignore[attr-defined]  # for the template only, never saved
    return attempts


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def audit_entries(task: Task) -> list[TaskAudit]:
    """Return the task's latest audit entries, each with its changes as (field, before, after) text."""
    entries = list(TaskAudit.objects.filter(task_id=task.pk).select_related("actor")[:AUDIT_LIMIT])
    for entry in entries:
        changes = entry.changes if isinstance(entry.changes, dict) else {}
        entry.change_rows = [  # type: ignore[attr-defined]  # for the template only, never saved
            (field, _shown(pair[0]), _shown(pair[1]))
            for field, pair in changes.items()
            if isinstance(pair, list) and len(pair) == 2
        ]
    return entries


def waiting_reason(task: Task) -> str:
    """Say which dependencies a waiting task waits on ('' when it is not waiting on any)."""
    if task.status not in (TaskStatus.PENDING, TaskStatus.RETRY):
        return ""
    return selectors.describe_waiting(task)


def _local(moment: datetime, tz_name: str) -> str:
    return f"{moment.astimezone(cron.timezone_of(tz_name)):%a %Y-%m-%d %H:%M %Z}"


def cron_preview(expr: str, tz_name: str, count: int = 5) -> dict[str, Any]:
    """Describe a cron expression and list its next fires in ``tz_name``, or say what is wrong with it."""
    expr = " ".join(expr.split())
    tz_name = tz_name.strip() or "UTC"
    if not expr:
        return {"ok": False, "error": "", "description": "", "fires": []}
    try:
        cron.timezone_of(tz_name)
        cron.validate(expr)
        fires = cron.next_fires(expr, tz_name, timezone.now(), count)
    except (cron.CronError, ValueError, StopIteration) as exc:  # croniter's own errors are ValueErrors
        return {
            "ok": False,
            "error": str(exc) or "this expression has no upcoming fire",
            "description": "",
            "fires": [],
        }
    return {
        "ok": True,
        "error": "",
        "description": cron.describe(expr),
        "timezone": tz_name,
        "fires": [
            {"utc": f.astimezone(UTC).isoformat(), "local": _local(f, tz_name), "note": cron.dst_note(f, tz_name)}
            for f in fires
        ],
    }


def schema_skeleton(schema: Any) -> Any:
    """Return parameters to start from: every required property with a placeholder, optional ones with a default."""
    if not isinstance(schema, dict):
        return None
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "object" or "properties" in schema:
        found = schema.get("properties")
        properties: dict[str, Any] = found if isinstance(found, dict) else {}
        required = [name for name in schema.get("required", []) if isinstance(name, str)]
        skeleton = {name: schema_skeleton(properties.get(name, {})) for name in required}
        for name, sub in properties.items():
            if name not in skeleton and isinstance(sub, dict) and "default" in sub:
                skeleton[name] = sub["default"]
        return skeleton
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "string":
        return ""
    return None


def _inside_storage(relative: str) -> Path | None:
    """Resolve an artifact path; None when it escapes STORAGE_DIR (``..``, absolute paths, symlinks out)."""
    root = Path(settings.STORAGE_DIR).resolve()
    try:
        candidate = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    if not candidate.is_relative_to(root) or candidate == root:
        return None
    return candidate


class TaskPagesAdmin(admin.ModelAdmin):
    """Task admin pages beyond the model form; TaskAdmin extends it."""

    change_form_template = "admin/scheduling/task/change_form.html"

    def get_queryset(self, request: HttpRequest) -> Any:
        """Show a user the same tasks the API does: every task with view_all_tasks, else their own."""
        return selectors.visible_tasks(request.user, super().get_queryset(request))

    # --- helpers ------------------------------------------------------------------------------------------

    def _task_or_404(self, request: HttpRequest, object_id: str) -> Task:
        if not self.has_view_permission(request):
            raise PermissionDenied
        task = self.get_object(request, object_id)
        if task is None:
            raise Http404("no such task")
        if not self.has_view_permission(request, task):
            raise PermissionDenied
        return task

    @staticmethod
    def _can_see(request: HttpRequest) -> Callable[[Task], bool]:
        """Return whether the user may see a task in a graph (scheduling.selectors' rule)."""
        return lambda task: selectors.may_see_task(request.user, task)

    def _change_url(self, pk: UUID | str) -> str:
        return reverse("admin:scheduling_task_change", args=[pk])

    def task_page_context(self, request: HttpRequest, task: Task) -> dict[str, Any]:
        """Return what the task page shows besides the form: timeline, reason line, graph, buttons."""
        can_change = self.has_change_permission(request, task)
        graph = admin_graph.neighbourhood(task)
        attempts = timeline(task)
        return {
            "attempts": attempts,
            "attempt_log": attempt_log.admin_context(attempt_log.shown_attempt(attempts)),
            "timeline_limit": TIMELINE_LIMIT,
            "waiting_reason": waiting_reason(task),
            "task_active": task.status in ACTIVE,
            "graph_svg": admin_graph.render_svg(graph, task.pk, self._change_url, self._can_see(request)),
            "graph_size": len(graph.nodes),
            "graph_truncated": graph.truncated,
            "status_colours": admin_graph.STATUS_COLOURS,
            "task_actions": available_actions(task) if can_change else [],
            "can_change_task": can_change,
            "can_backfill": can_change and task.task_type == TaskType.SCHEDULED,
            "live_url": reverse("admin:scheduling_task_live", args=[task.pk]),
            "audit_entries": audit_entries(task),
        }

    # --- the change page ----------------------------------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        task = self.get_object(request, object_id)
        if task is not None and self.has_view_permission(request, task):
            extra.update(self.task_page_context(request, task))
        return super().change_view(request, object_id, form_url, extra)

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        context["th_config"] = {"cronPreviewUrl": reverse("admin:scheduling_task_cron_preview")}
        context["handler_specs"] = {
            spec.tag: {"description": spec.description, "schema": spec.schema, "skeleton": schema_skeleton(spec.schema)}
            for spec in registry.all()
        }
        return super().render_change_form(request, context, *args, **kwargs)

    def get_formset_kwargs(self, request: HttpRequest, obj: Any, inline: Any, prefix: str) -> dict[str, Any]:
        """Bound the read-only results inline: a cron task can have thousands of attempts."""
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if inline.model is TaskResult and obj is not None and obj.pk:
            if request.method == "POST":
                # The rows the page showed, whatever arrived since; nothing in them is saved.
                shown = [
                    v
                    for k, v in request.POST.items()
                    if k.startswith(f"{prefix}-") and k.endswith("-id") and isinstance(v, str)
                ]
                ids = [int(v) for v in shown if v.isdigit()]
            else:
                latest = TaskResult.objects.filter(task=obj).order_by("-created_at", "-pk")
                ids = list(latest.values_list("pk", flat=True)[:TIMELINE_LIMIT])
            kwargs["queryset"] = kwargs["queryset"].filter(pk__in=ids)
        return kwargs

    # --- URLs ---------------------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        extra = [
            path("dashboard/", wrap(self.dashboard_view), name="scheduling_task_dashboard"),
            path("cron-preview/", wrap(self.cron_preview_view), name="scheduling_task_cron_preview"),
            path("<uuid:object_id>/do/<str:action>/", wrap(self.action_view), name="scheduling_task_do"),
            path("<uuid:object_id>/live/", wrap(self.live_view), name="scheduling_task_live"),
            path("<uuid:object_id>/graph/", wrap(self.graph_view), name="scheduling_task_graph"),
            path("<uuid:object_id>/backfill/", wrap(self.backfill_view), name="scheduling_task_backfill"),
            path("pipeline/", wrap(self.pipeline_view), name="scheduling_task_pipeline"),
            path("pipeline/live/", wrap(self.pipeline_live_view), name="scheduling_task_pipeline_live"),
            path("counts/", wrap(self.counts_view), name="scheduling_task_counts"),
            path(
                "<uuid:object_id>/artifact/<int:result_id>/<int:index>/",
                wrap(self.artifact_view),
                name="scheduling_task_artifact",
            ),
        ]
        return extra + super().get_urls()

    # --- views --------------------------------------------------------------------------------------------

    def action_view(self, request: HttpRequest, object_id: UUID, action: str) -> HttpResponse:
        """Run one action on the task through the service layer and say what happened (or why not)."""
        if request.method != "POST":
            return HttpResponse("use POST", status=405, headers={"Allow": "POST"})
        task = self._task_or_404(request, str(object_id))
        if not self.has_change_permission(request, task):
            raise PermissionDenied
        if action not in ACTIONS:
            raise Http404(f"unknown action {action!r}")
        spec = ACTIONS[action]
        if action == "cancel" and request.POST.get("confirm") != "yes" and running_attempts([task]):
            return self.cancel_confirmation(request, [task], form_url=request.path)
        try:
            outcome = spec.call(task, request.user)
        except TaskHubError as exc:
            self.message_user(request, f"{spec.label} refused: {exc}", messages.WARNING)
        else:
            self.message_user(request, spec.said(task, outcome), messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(task.pk))

    def backfill_view(self, request: HttpRequest, object_id: UUID) -> HttpResponse:
        """ "Backfill...": a small form (from, to in the task's time zone, dry run, with dependents) for
        services.task_backfill; a dry run lists the fires on the form, a backfill goes back to the task page."""
        task = self._task_or_404(request, str(object_id))
        if not self.has_change_permission(request, task):
            raise PermissionDenied
        form = {"start": "", "end": "", "dry_run": True, "downstream": False}
        report: services.Backfill | None = None
        error = ""
        if request.method == "POST":
            form = {
                "start": request.POST.get("start", "")[:40],
                "end": request.POST.get("end", "")[:40],
                "dry_run": request.POST.get("dry_run") == "on",
                "downstream": request.POST.get("downstream") == "on",
            }
            try:
                report = services.task_backfill(
                    task=task,
                    start=services.backfill_moment(form["start"], task, "from"),
                    end=services.backfill_moment(form["end"], task, "to"),
                    downstream="all" if form["downstream"] else None,
                    dry_run=bool(form["dry_run"]),
                    actor=request.user,
                )
            except TaskHubError as exc:
                error = str(exc)
            else:
                if not report.dry_run:
                    self.message_user(request, f"Backfill of {task.name!r}: {report.summary()}", messages.SUCCESS)
                    return HttpResponseRedirect(self._change_url(task.pk))
        skipped = set(report.skipped) if report is not None else set()
        context = {
            **self.admin_site.each_context(request),
            "opts": Task._meta,
            "original": task,
            "title": f"Backfill {task.name}",
            "form": form,
            "error": error,
            "report": report,
            "fires": [
                {"utc": f"{fire:%Y-%m-%d %H:%M} UTC", "local": _local(fire, task.timezone), "ran": fire in skipped}
                for fire in (report.fires if report is not None else [])
            ],
            "limit": settings.TASKHUB.scheduler.max_backfill,
        }
        return TemplateResponse(request, "admin/scheduling/task/backfill.html", context)

    def cancel_confirmation(
        self, request: HttpRequest, tasks: list[Task], *, form_url: str, hidden: list[tuple[str, str]] | None = None
    ) -> TemplateResponse:
        """Ask before cancelling running work, as Django asks before deleting: list what runs, then a POST."""
        context = {
            **self.admin_site.each_context(request),
            "opts": Task._meta,
            "title": "Are you sure?",
            "tasks": tasks,
            "running": running_attempts(tasks),
            "form_url": form_url,
            "hidden": hidden or [("confirm", "yes")],
            "back_url": self._change_url(tasks[0].pk) if len(tasks) == 1 and not hidden else "",
        }
        return TemplateResponse(request, "admin/scheduling/task/cancel_confirmation.html", context)

    def live_view(self, request: HttpRequest, object_id: UUID) -> HttpResponse:
        """Return the task's status and the rendered attempts panel, for the page's polling script."""
        task = self._task_or_404(request, str(object_id))
        context = self.task_page_context(request, task)
        context.update({"original": task, "opts": Task._meta})
        response = TemplateResponse(request, "admin/scheduling/task/_live.html", context)
        html = response.rendered_content
        actions = TemplateResponse(request, "admin/scheduling/task/_actions.html", context).rendered_content
        graph = TemplateResponse(request, "admin/scheduling/task/_graph.html", context).rendered_content
        running = next((a for a in context["attempts"] if a.status == AttemptStatus.RUNNING), None)
        return JsonResponse(
            {
                "status": task.status,
                "active": context["task_active"],
                "progress": running.progress if running else None,
                "progress_message": running.progress_message if running else "",
                "html": html,
                "actions_html": actions,
                "graph_html": graph,
                "status_label": task.get_status_display(),
            }
        )

    def graph_view(self, request: HttpRequest, object_id: UUID) -> HttpResponse:
        """Show the task's dependency graph on its own page, deeper than on the task page."""
        task = self._task_or_404(request, str(object_id))
        graph = admin_graph.neighbourhood(task, depth=10, limit=200)
        context = {
            **self.admin_site.each_context(request),
            "opts": Task._meta,
            "original": task,
            "title": f"Dependencies of {task.name}",
            "graph_svg": admin_graph.render_svg(graph, task.pk, self._change_url, self._can_see(request)),
            "graph_size": len(graph.nodes),
            "graph_truncated": graph.truncated,
            "status_colours": admin_graph.STATUS_COLOURS,
        }
        return TemplateResponse(request, "admin/scheduling/task/graph.html", context)

    def _pipeline(self, request: HttpRequest) -> tuple[admin_graph.Graph, str, UUID | None]:
        """Return the pipeline ?task= (its connected component) or ?tag= (the visible tasks with the tag) asks for."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        task_id, tag = request.GET.get("task", ""), request.GET.get("tag", "").strip()[:64]
        if task_id:
            try:
                task = self._task_or_404(request, str(UUID(task_id)))
            except ValueError:
                raise Http404("no such task") from None
            return admin_graph.component(task), f"Pipeline of {task.name}", task.pk
        if tag:
            return admin_graph.tagged(tag, selectors.visible_tasks(request.user)), f"Pipeline: tasks tagged {tag}", None
        raise Http404("choose a task (?task=) or a tag (?tag=)")

    def _pipeline_context(self, request: HttpRequest) -> dict[str, Any]:
        graph, title, focus = self._pipeline(request)
        wanted = request.GET.get("pipeline_run", "")
        if wanted:
            run = (
                selectors.visible_pipeline_runs(request.user).filter(pk=int(wanted)).first()
                if wanted.isdigit() and len(wanted) < 19
                else None
            )
            if run is None:
                raise Http404("no such pipeline run")
            tasks = selectors.pipeline_run_tasks(run)
            admin_graph.show_pipeline_run(graph, {t["id"]: t["status"] for t in tasks})
            status = selectors.pipeline_run_status(t["status"] for t in tasks)
            title += f", pipeline run {run.pk} ({status}; tasks outside it pale)"
        return {
            "title": title,
            "graph_svg": admin_graph.render_svg(graph, focus, self._change_url, self._can_see(request)),
            "graph_size": len(graph.nodes),
            "graph_truncated": graph.truncated,
            "status_colours": admin_graph.STATUS_COLOURS,
            "live_url": f"{reverse('admin:scheduling_task_pipeline_live')}?{request.GET.urlencode()}",
        }

    def pipeline_view(self, request: HttpRequest) -> HttpResponse:
        """Show a whole pipeline (a task's connected component, or every visible task with a tag), following status."""
        context = {
            **self.admin_site.each_context(request),
            "opts": Task._meta,
            **self._pipeline_context(request),
        }
        return TemplateResponse(request, "admin/scheduling/task/pipeline.html", context)

    def pipeline_live_view(self, request: HttpRequest) -> HttpResponse:
        """Return the pipeline's graph rendered again, for the page's polling script."""
        context = self._pipeline_context(request)
        html = TemplateResponse(request, "admin/scheduling/task/_graph.html", context).rendered_content
        return JsonResponse({"html": html})

    def counts_view(self, request: HttpRequest) -> HttpResponse:
        """Return the counts the dashboard and the lists show (tasks by status, attempts in flight), as JSON."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(dashboard.live_counts())

    def artifact_view(self, request: HttpRequest, object_id: UUID, result_id: int, index: int) -> FileResponse:
        """Send one artifact file of one attempt, if the user may see the task and the file is inside storage."""
        task = self._task_or_404(request, str(object_id))
        result = TaskResult.objects.filter(pk=result_id, task=task).only("id", "artifacts").first()
        if result is None or not isinstance(result.artifacts, list) or not 0 <= index < len(result.artifacts):
            raise Http404("no such artifact")
        file = _inside_storage(str(result.artifacts[index]))
        if file is None:
            raise PermissionDenied("artifact path is outside the storage folder")
        if not file.is_file():
            raise Http404("the artifact file is gone (storage was cleaned up?)")
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return FileResponse(file.open("rb"), as_attachment=True, filename=file.name, content_type=content_type)

    def cron_preview_view(self, request: HttpRequest) -> HttpResponse:
        """Return the description and next fires of ?expr= in ?tz= as JSON, for the form's live preview."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        expr = request.GET.get("expr", "")[:200]
        tz_name = request.GET.get("tz", "UTC")[:64]
        return JsonResponse(cron_preview(expr, tz_name))

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Show the operations dashboard: statuses, load, throughput, failures and what fires next."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        data = dashboard.summary()
        if not request.user.has_perm("scheduling.view_worker"):
            data["workers"] = None  # the template says which permission shows them
        if not selectors.sees_all_tasks(request.user):
            # Counts stay global (numbers only); lists that name tasks or show their errors keep the user's own.
            ids = {row["task_id"] for row in data["slowest"]} | {t.pk for t in data["next_fires"]}
            ids |= {r.task_id for r in data["failures"]}
            own = set(selectors.visible_tasks(request.user).filter(pk__in=ids).values_list("pk", flat=True))
            data["slowest"] = [row for row in data["slowest"] if row["task_id"] in own]
            data["next_fires"] = [t for t in data["next_fires"] if t.pk in own]
            data["failures"] = [r for r in data["failures"] if r.task_id in own]
        peak = max([b.total for b in data["buckets"]] + [1])
        chart = [
            {
                "bucket": b,
                "ok_pct": (b.total - b.failed) / peak * 100,
                "failed_pct": b.failed / peak * 100,
            }
            for b in data["buckets"]
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": Task._meta,
            "title": "TaskHub dashboard",
            "chart": chart,
            "peak": peak,
            "now": timezone.now(),
            **data,
        }
        return TemplateResponse(request, "admin/scheduling/dashboard.html", context)
