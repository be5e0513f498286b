"""REST API views: translate HTTP into scheduling.services calls and back, nothing more."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, JsonResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import filters, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduling import selectors, services
from scheduling.api.filters import HistoryFilter, StableOrderingFilter, TaskFilter
from scheduling.api.pagination import CappedCountPagination
from scheduling.api.parsers import LimitedJSONParser
from scheduling.api.permissions import TaskPermission, WorkerPermission, WriteRateThrottle
from scheduling.api.serializers import (
    PUT_DEFAULTS,
    AttemptLogSerializer,
    CancelSerializer,
    HandlerSerializer,
    LastResultSerializer,
    PipelineRunSerializer,
    TaskAuditSerializer,
    TaskResultSerializer,
    TaskSerializer,
    TaskWriteSerializer,
    WorkerSerializer,
)
from scheduling.engine import attempt_log, clock, workers
from scheduling.handlers import registry
from scheduling.models import AuditAction, Task, TaskAudit, TaskResult, TaskStatus, Worker

logger = logging.getLogger(__name__)

_CONFLICT = OpenApiResponse(
    response=inline_serializer(
        "Conflict", {"detail": serializers.CharField(), "current_status": serializers.CharField(allow_null=True)}
    ),
    description="The action does not fit the task's current status.",
)


_DOWNSTREAM = OpenApiParameter(
    "downstream",
    str,
    enum=list(services.DOWNSTREAM),
    required=False,
    description="Also run again the dependents (transitively) that failed because of this task (failed), or every "
    "dependent (all): each waits for its dependencies' new runs. Dependents you may not see or change are counted "
    "in the answer's downstream.hidden, not touched.",
)


def task_queryset() -> QuerySet[Task]:
    """Return tasks with everything TaskSerializer reads, in a fixed number of queries."""
    return selectors.task_list(latest_fields=LastResultSerializer.Meta.fields)


class PlainTextLogRenderer(BaseRenderer):
    """An attempt's log as plain text (``?format=text`` or ``Accept: text/plain``); errors stay JSON."""

    media_type = "text/plain"
    format = "text"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if isinstance(data, dict) and "text" in data:
            return str(data["text"]).encode("utf-8")
        if isinstance(data, dict) and "detail" in data:
            return f"{data['detail']}\n".encode()
        return str(data).encode("utf-8")


class TaskViewSet(viewsets.ModelViewSet):
    """Tasks: list, create, read, change, delete, and the run/cancel/retry/pause/resume actions."""

    serializer_class = TaskSerializer
    permission_classes = [TaskPermission]
    throttle_classes = [WriteRateThrottle]
    parser_classes = [LimitedJSONParser]
    filter_backends = [DjangoFilterBackend, StableOrderingFilter, filters.SearchFilter]
    filterset_class = TaskFilter
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "updated_at", "priority", "status", "next_fire_at"]
    ordering = ["priority", "created_at"]
    # Any segment reaches the view, so a malformed id is a JSON 404 rather than Django's HTML page.
    lookup_value_regex = "[^/]+"

    def handle_exception(self, exc: Exception) -> Response:
        # Errors answer JSON (the Error schema), also when an attempt's log was asked for as text.
        if isinstance(getattr(self.request, "accepted_renderer", None), PlainTextLogRenderer):
            self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().handle_exception(exc)

    def get_queryset(self) -> QuerySet[Task]:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular inspecting, no user
            return Task.objects.none()
        return selectors.visible_tasks(self.request.user, task_queryset())

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        """Return the serializer of the body this request (or a browsable API form, or OPTIONS) takes."""
        if self.action == "cancel":
            return CancelSerializer
        if self.action in ("run", "retry", "pause", "resume"):
            return serializers.Serializer  # no body
        if self.request is not None and self.request.method in ("POST", "PUT", "PATCH"):
            return TaskWriteSerializer
        return TaskSerializer

    def _show(self, task: Task, code: int = status.HTTP_200_OK) -> Response:
        fresh = task_queryset().get(pk=task.pk)
        return Response(TaskSerializer(fresh, context=self.get_serializer_context()).data, status=code)

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="TaskCreate",
            serializers=[TaskWriteSerializer, TaskWriteSerializer(many=True)],
            resource_type_field_name=None,
            many=False,
        ),
        responses={
            201: PolymorphicProxySerializer(
                component_name="TaskCreated",
                serializers=[TaskSerializer, TaskSerializer(many=True)],
                resource_type_field_name=None,
                many=False,
            ),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a task owned by the requesting user, or with a JSON list, several: all of them or none.

        An IMMEDIATE task starts as soon as a worker is free. A list holds at most ``security.max_bulk``
        tasks (1000 by default), answers 201 with the created tasks in the order sent, and counts as one
        request against the write throttle. Its errors name each bad task by its index in the list (from 0)
        with its field errors, ``{"3": {"name": [...]}}``, as DRF reports a list; nothing is created then.
        A task of a list cannot depend on another of the same list (its id is not known yet).
        """
        if isinstance(request.data, list):
            return self._create_many(request, request.data)
        serializer = TaskWriteSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        task = services.task_create(data=dict(serializer.validated_data), owner=request.user, actor=request.user)
        response = self._show(task, status.HTTP_201_CREATED)
        response["Location"] = f"/tasks/{task.pk}"
        return response

    def _create_many(self, request: Request, body: list[Any]) -> Response:
        if not body:
            raise serializers.ValidationError({"non_field_errors": ["a list of at least one task is expected"]})
        services.check_bulk_size(len(body))  # before the per-item checks: a refusal costs nothing
        # One child serializer checks every item (DRF's ListSerializer): errors come keyed by index.
        serializer = TaskWriteSerializer(data=body, many=True, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        items = [dict(item) for item in serializer.validated_data]
        tasks = services.task_create_many(items=items, owner=request.user, actor=request.user)
        shown = {task.pk: task for task in task_queryset().filter(pk__in=[task.pk for task in tasks])}
        context = self.get_serializer_context()
        data = TaskSerializer([shown[task.pk] for task in tasks], many=True, context=context).data
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TaskWriteSerializer, responses={200: TaskSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Replace a task's writable fields (PUT) or change some of them (PATCH)."""
        partial = kwargs.pop("partial", False)
        task = self.get_object()
        serializer = TaskWriteSerializer(
            task, data=request.data, partial=partial, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if not partial:
            data = {**PUT_DEFAULTS, **data}
        task = services.task_update(task=task, data=data, actor=request.user)
        return self._show(task)

    @extend_schema(request=TaskWriteSerializer, responses={200: TaskSerializer})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Change some of a task's writable fields."""
        return self.update(request, *args, partial=True, **kwargs)

    @extend_schema(responses={204: None, 409: _CONFLICT})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete a task (refused while other tasks depend on it); running attempts are revoked."""
        services.task_delete(task=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                str,
                OpenApiParameter.PATH,
                enum=list(TaskStatus.values),
                description="A task status; anything else is a 400 listing the valid ones.",
            )
        ],
        responses={200: TaskSerializer(many=True)},
    )
    @action(detail=False, methods=["get"], url_path=r"status/(?P<status>[^/]+)", url_name="by-status")
    def by_status(self, request: Request, status: str) -> Response:
        """List the tasks in one status (the same filters, ordering and pages as /tasks)."""
        wanted = status.upper()
        if wanted not in TaskStatus.values:
            raise serializers.ValidationError(
                {"status": [f"unknown status {status!r}; valid statuses: {', '.join(TaskStatus.values)}"]}
            )
        queryset = self.filter_queryset(self.get_queryset()).filter(status=wanted)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(TaskSerializer(page, many=True, context=self.get_serializer_context()).data)

    @extend_schema(responses=TaskResultSerializer(many=True), filters=False)
    # Capped counts like /task_history: both share the PaginatedTaskResultList schema (which requires count_capped).
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=CappedCountPagination)
    def results(self, request: Request, pk: str | None = None) -> Response:
        """List a task's attempts, newest first."""
        task = self.get_object()
        queryset = selectors.attempts_of(task).select_related("task")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(TaskResultSerializer(page, many=True).data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "attempt", int, OpenApiParameter.PATH, description="The attempt's id (`id` in /tasks/{id}/results)."
            )
        ],
        responses={200: AttemptLogSerializer, (200, "text/plain"): OpenApiTypes.STR},
        filters=False,
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"results/(?P<attempt>[0-9]{1,18})/log",
        url_name="attempt-log",
        filter_backends=[],
        pagination_class=None,
        renderer_classes=[JSONRenderer, BrowsableAPIRenderer, PlainTextLogRenderer],
    )
    def log(self, request: Request, pk: str | None = None, attempt: str = "") -> Response:
        """What one attempt's handler logged (its last 1 MiB, secrets hidden); a running attempt's so far.

        Poll it while ``finished`` is false to follow a running attempt (the worker writes new lines
        about once a second). ``Accept: text/plain`` or ``?format=text`` answers the text alone.
        """
        task = self.get_object()
        result = (
            TaskResult.objects.filter(task=task, pk=int(attempt)).only("id", "task_id", "attempt", "status").first()
        )
        if result is None:
            raise Http404("no such attempt of this task")
        return Response(AttemptLogSerializer(attempt_log.payload(result)).data)

    @extend_schema(responses=TaskAuditSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filter_backends=[])
    def audit(self, request: Request, pk: str | None = None) -> Response:
        """List who created, changed, ran, cancelled, paused, resumed or deleted the task, newest first.

        A deleted task's trail stays readable by its id for users who may see all tasks.
        """
        try:
            task_id = self.get_object().pk
        except Http404:
            task_id = _deleted_task_id(request.user, pk)
        queryset = TaskAudit.objects.filter(task_id=task_id).select_related("actor").order_by("-created_at", "-id")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(TaskAuditSerializer(page, many=True).data)

    def _downstream(self, request: Request) -> str | None:
        """The ``downstream`` query parameter (None when absent; the service refuses an unknown value)."""
        value = request.query_params.get("downstream")
        return value if value not in (None, "") else None

    def _started(self, task: Task, result: TaskResult) -> Response:
        response = self._show(task, status.HTTP_202_ACCEPTED)
        outcome = services.downstream_of(result)
        if outcome is not None:
            response.data["downstream"] = {
                "mode": outcome.which,
                "started": outcome.started,
                "already_waiting": outcome.waiting,
                "skipped": outcome.skipped,
                "hidden": outcome.hidden,
                "pipeline_run": outcome.pipeline_run,
                "summary": outcome.summary(),
            }
        return response

    @extend_schema(
        request=None,
        parameters=[_DOWNSTREAM],
        responses={202: TaskSerializer, 400: OpenApiTypes.OBJECT, 409: _CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str | None = None) -> Response:
        """Start a new run now (a SCHEDULED task too, outside its schedule); ?downstream= brings dependents along."""
        task = self.get_object()
        result = services.task_run_now(task=task, actor=request.user, downstream=self._downstream(request))
        return self._started(task, result)

    @extend_schema(request=CancelSerializer, responses={200: TaskSerializer, 409: _CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel the task's waiting and running attempts (running ones are revoked)."""
        task = self.get_object()
        body = CancelSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        services.task_cancel(task=task, reason=body.validated_data["reason"], actor=request.user)
        return self._show(task)

    @extend_schema(
        request=None,
        parameters=[_DOWNSTREAM],
        responses={202: TaskSerializer, 400: OpenApiTypes.OBJECT, 409: _CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Run a FAILED, TIMEOUT or CANCELLED task again from attempt 1; ``?downstream=`` brings dependents along."""
        task = self.get_object()
        result = services.task_retry(task=task, actor=request.user, downstream=self._downstream(request))
        return self._started(task, result)

    @extend_schema(request=None, responses={200: TaskSerializer, 409: _CONFLICT})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Stop the task from firing or starting; running attempts finish."""
        services.task_pause(task=self.get_object(), actor=request.user)
        return self._show(self.get_object())

    @extend_schema(request=None, responses={200: TaskSerializer, 409: _CONFLICT})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Let a paused task fire and start again."""
        services.task_resume(task=self.get_object(), actor=request.user)
        return self._show(self.get_object())


def _deleted_task_id(user: Any, pk: str | None) -> uuid.UUID:
    """Return ``pk`` when it names a deleted task whose trail ``user`` may read; else raise Http404."""
    try:
        task_id = uuid.UUID(str(pk))
    except ValueError:
        raise Http404 from None
    if not selectors.sees_all_tasks(user) or Task.objects.filter(pk=task_id).exists():
        raise Http404
    if not TaskAudit.objects.filter(task_id=task_id, action=AuditAction.DELETED).exists():
        raise Http404
    return task_id


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Answer an unknown path under an API prefix with JSON, not Django's HTML 404 page."""
    return JsonResponse({"detail": "Not found."}, status=404)


class TaskHistoryView(ListAPIView):
    """Finished attempts (DONE, FAILED, TIMEOUT, CANCELLED, SKIPPED), newest first.

    ``count`` is exact up to 1,000 attempts; beyond, it is 1,000 and ``count_capped`` is true (the next
    links still lead to every attempt).
    """

    serializer_class = TaskResultSerializer
    pagination_class = CappedCountPagination
    permission_classes = [TaskPermission]
    parser_classes = [LimitedJSONParser]
    filterset_class = HistoryFilter
    filter_backends = [DjangoFilterBackend, StableOrderingFilter]
    ordering_fields = ["finished_at", "started_at", "duration"]
    ordering = ["-finished_at"]

    def get_queryset(self) -> QuerySet[TaskResult]:
        if getattr(self, "swagger_fake_view", False):
            return TaskResult.objects.none()
        return selectors.history(self.request.user)


_ONLINE = OpenApiParameter(
    "online", str, OpenApiParameter.QUERY, enum=["true", "false"], description="Only online (or offline) workers."
)


class WorkerViewSet(viewsets.ReadOnlyModelViewSet):
    """Celery workers from their heartbeats: online ones first, then by name.

    Online means a heartbeat within two of its intervals (scheduler.worker_heartbeat) and no clean
    shutdown since; ``running`` counts the attempts RUNNING on it now.
    """

    serializer_class = WorkerSerializer
    permission_classes = [WorkerPermission]
    filter_backends: list[type] = []
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Worker]:
        queryset = Worker.objects.order_by("name")
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        wanted = self.request.query_params.get("online", "")
        if wanted:
            if wanted.lower() not in ("true", "false"):
                raise serializers.ValidationError({"online": [f"expected true or false, got {wanted[:50]!r}"]})
            condition = workers.online(clock.now())
            queryset = queryset.filter(condition) if wanted.lower() == "true" else queryset.exclude(condition)
        return queryset

    @extend_schema(parameters=[_ONLINE])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """List the workers, online ones first: host, pool, concurrency, queues, attempts running, last seen."""
        page = self.paginate_queryset(workers.listing(self.get_queryset()))
        return self.get_paginated_response(WorkerSerializer(page, many=True).data)

    def get_object(self) -> Worker:
        name = self.kwargs.get(self.lookup_field, "")
        # Node names are short printable text; anything else names no worker (and NUL would upset PostgreSQL).
        if len(name) > 200 or not name.isprintable():
            raise Http404
        return super().get_object()

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """One worker by its Celery node name (an attempt's worker_node)."""
        (worker,) = workers.listing(Worker.objects.filter(pk=self.get_object().pk))
        return Response(WorkerSerializer(worker).data)


class PipelineRunView(APIView):
    """One pipeline run (a run or retry with ``downstream``, a backfilled fire): each task's status in it."""

    permission_classes = [TaskPermission]

    @extend_schema(responses={200: PipelineRunSerializer, 404: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: str) -> Response:
        """A pipeline run whose root task you may see: its status (RUNNING, DONE, FAILED) and each task's in it.

        Its tasks you may not see are counted in ``hidden_tasks``, never named.
        """
        if not pk.isdigit() or len(pk) > 18:
            raise Http404
        run = selectors.visible_pipeline_runs(request.user).filter(pk=int(pk)).select_related("actor").first()
        if run is None:
            raise Http404
        return Response(PipelineRunSerializer(selectors.pipeline_run_view(request.user, run)).data)


class HandlerListView(APIView):
    """Registered handler tags with their parameter schemas."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=HandlerSerializer(many=True))
    def get(self, request: Request) -> Response:
        """List the handler tags a task may carry, and what parameters each expects."""
        data = [{"tag": spec.tag, "description": spec.description, "schema": spec.schema} for spec in registry.all()]
        return Response(HandlerSerializer(data, many=True).data)


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def _check_broker() -> str:
    from taskhub.celery import app

    with app.connection_for_write(connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
    return "ok"


class HealthView(APIView):
    """Whether the database and the broker are reachable; no login needed, no details that help an attacker."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes: list[type] = []

    @extend_schema(
        responses={
            200: inline_serializer(
                "Health",
                {
                    "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
                    "database": serializers.CharField(),
                    "broker": serializers.CharField(),
                },
            ),
            503: OpenApiResponse(description="The database or the broker is unreachable (same body, 'unavailable')."),
        },
        auth=[],
    )
    def get(self, request: Request) -> Response:
        """Check the database and the broker; 200 when both answer, 503 otherwise."""
        body: dict[str, str] = {}
        for name, check in (("database", _check_database), ("broker", _check_broker)):
            try:
                body[name] = check()
            except Exception as exc:  # noqa: BLE001 - any failure means "unavailable"
                # The class name says what kind of failure without leaking hosts or credentials.
                logger.warning("health check: %s unreachable: %s", name, exc.__class__.__name__)
                body[name] = f"unreachable ({exc.__class__.__name__})"
        healthy = all(value == "ok" for value in body.values())
        body = {"status": "ok" if healthy else "unavailable", **body}
        return Response(body, status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE)
