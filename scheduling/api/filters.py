"""Query-string filters for the task list and the task history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, QuerySet
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework.filters import OrderingFilter

from scheduling.models import FINISHED, Priority, Task, TaskResult, TaskStatus, TaskType


def _choices(values: list[str]) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


def _multiple(values: list[str], **kwargs: Any) -> django_filters.MultipleChoiceFilter:
    # The error lists the valid values, so a typo is answered with what to type instead.
    message = f"%(value)s is not valid; expected one of {', '.join(values)}."
    return django_filters.MultipleChoiceFilter(
        choices=_choices(values), error_messages={"invalid_choice": message}, **kwargs
    )


@extend_schema_field(OpenApiTypes.BOOL)
class StrictBooleanFilter(django_filters.TypedChoiceFilter):
    """true or false; anything else is a 400 (django-filter's BooleanFilter silently ignores "maybe")."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"invalid_choice": "%(value)s is not valid; expected true or false."})
        super().__init__(choices=[("true", "true"), ("false", "false")], coerce=lambda v: v == "true", **kwargs)


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC before it reaches the database."""

    def to_python(self, value: Any) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            # Python allows offsets up to ±23:59, PostgreSQL only ±15:59: a far offset would be a 500.
            return parsed.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("is out of range (years 1 to 9999 in UTC).") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    """Filter on an ISO 8601 date-time with any offset."""

    field_class = UtcIsoDateTimeField


class StableOrderingFilter(OrderingFilter):
    """Order as asked, then by primary key, so rows with equal sort keys never move between pages."""

    def get_ordering(self, request: Any, queryset: QuerySet[Any], view: Any) -> list[str]:
        ordering = list(super().get_ordering(request, queryset, view) or [])
        return ordering if {"pk", "-pk", "id", "-id"} & set(ordering) else [*ordering, "pk"]


def _tagged(queryset: QuerySet[Any], task_ref: str, tags: list[str]) -> QuerySet[Any]:
    """Keep rows whose task carries every tag (EXISTS per tag: no duplicate rows, same SQL on SQLite and PostgreSQL)."""
    through = Task.tags.through
    for tag in tags:
        queryset = queryset.filter(Exists(through.objects.filter(task_id=OuterRef(task_ref), tag__name=tag)))
    return queryset


class TaskFilter(django_filters.FilterSet):
    """Filters of GET /tasks; repeat a parameter (``?status=DONE&status=FAILED``) to accept several values."""

    status = _multiple(list(TaskStatus.values), help_text="Task status (repeatable).")
    priority = _multiple(list(Priority.names), method="filter_priority", help_text="HIGH, MEDIUM or LOW.")
    task_type = _multiple(list(TaskType.values), help_text="IMMEDIATE or SCHEDULED.")
    tag = django_filters.CharFilter(method="filter_tag", help_text="Tasks carrying this tag (comma-separated: all).")
    owner = django_filters.CharFilter(field_name="owner__username", help_text="Username of the owner.")
    name = django_filters.CharFilter(lookup_expr="icontains", help_text="Part of the name, any case.")
    enabled = StrictBooleanFilter(help_text="false: paused tasks.")
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")
    updated_after = DateTimeFilter(field_name="updated_at", lookup_expr="gte")
    updated_before = DateTimeFilter(field_name="updated_at", lookup_expr="lt")

    class Meta:
        model = Task
        fields: list[str] = []

    def filter_priority(self, queryset: QuerySet[Task], name: str, value: list[str]) -> QuerySet[Task]:
        return queryset.filter(priority__in=[Priority[v].value for v in value]) if value else queryset

    def filter_tag(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        return _tagged(queryset, "pk", [t.strip() for t in value.split(",") if t.strip()])


class HistoryFilter(django_filters.FilterSet):
    """Filters of GET /task_history (finished attempts)."""

    task = django_filters.UUIDFilter(field_name="task_id", help_text="Id of the task.")
    status = _multiple([s.value for s in FINISHED], help_text="Attempt status (repeatable).")
    tag = django_filters.CharFilter(method="filter_tag", help_text="Attempts of tasks carrying this tag.")
    owner = django_filters.CharFilter(field_name="task__owner__username", help_text="Username of the task's owner.")
    finished_after = DateTimeFilter(field_name="finished_at", lookup_expr="gte")
    finished_before = DateTimeFilter(field_name="finished_at", lookup_expr="lt")

    class Meta:
        model = TaskResult
        fields: list[str] = []

    def filter_tag(self, queryset: QuerySet[TaskResult], name: str, value: str) -> QuerySet[TaskResult]:
        return _tagged(queryset, "task_id", [t.strip() for t in value.split(",") if t.strip()])
