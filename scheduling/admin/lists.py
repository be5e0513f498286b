"""What the task and result change lists show: status badges, humanised durations, schedules, list filters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from scheduling.engine import cron

ERROR_EXCERPT = 120  # characters of an attempt's error shown in the results list


def humanise_duration(seconds: float | None) -> str:
    """Say how long something took as a person would: '28 ms', '4.2 s', '1 min 5 s', '2 h 3 min' ('' for None)."""
    if seconds is None:
        return ""
    seconds = max(float(seconds), 0.0)
    if round(seconds * 1000) < 1000:
        return f"{round(seconds * 1000)} ms"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    minutes = rest // 60
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def badge(status: str, label: str | None = None) -> SafeString:
    """Return a coloured status badge (the colour comes from taskhub-admin.css by data-status)."""
    return format_html('<span class="th-badge" data-status="{}">{}</span>', status, label or status)


def local_time(moment: Any, tz_name: str = "UTC") -> str:
    """Format a moment in a task's time zone, e.g. '2026-12-02 03:00 CET'."""
    if moment is None:
        return ""
    try:
        zone = cron.timezone_of(tz_name or "UTC")
    except (cron.CronError, ValueError):
        zone = cron.timezone_of("UTC")
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M %Z}"


class InputFilter(admin.SimpleListFilter):
    """A list filter typed into a box rather than picked from a list (no query to build choices)."""

    template = "admin/scheduling/input_filter.html"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("", "")]  # Django shows a filter only when it has lookups; the box is the real input

    def has_output(self) -> bool:
        return True

    def choices(self, changelist: Any) -> Any:
        """Yield one entry: the query string's other parameters, kept as hidden inputs of the box's form."""
        others = [(k, v) for k, values in changelist.filter_params.items() if k != self.parameter_name for v in values]
        yield {
            "value": self.value() or "",
            "others": others,
            "clear_url": changelist.get_query_string(remove=[self.parameter_name]),
        }


class TaskNameFilter(InputFilter):
    title = "task name"
    parameter_name = "task_name"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = (self.value() or "").strip()
        return queryset.filter(task__name__icontains=value) if value else queryset


class WorkerFilter(InputFilter):
    title = "worker"
    parameter_name = "worker"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = (self.value() or "").strip()
        return queryset.filter(worker__startswith=value) if value else queryset


FINISHED_WITHIN = {
    "1h": ("in the last hour", 1),
    "24h": ("in the last 24 hours", 24),
    "7d": ("in the last 7 days", 168),
}


class FinishedWithinFilter(admin.SimpleListFilter):
    """Attempts finished lately: a range of result_history_idx, whatever the table size."""

    title = "finished"
    parameter_name = "finished"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _hours) in FINISHED_WITHIN.items()] + [("no", "not finished")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value in FINISHED_WITHIN:
            return queryset.filter(finished_at__gte=timezone.now() - timedelta(hours=FINISHED_WITHIN[value][1]))
        if value == "no":
            return queryset.filter(finished_at__isnull=True)
        return queryset
