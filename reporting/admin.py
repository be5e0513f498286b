"""Admin for reports (read-only history) and the per-channel reporting state."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from reporting.models import ChannelState, Report

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups

REPORT_FIELDS = ("channel", "outcome", "count", "destination", "period_start", "period_end", "created_at", "duration")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the reporting service only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Report)
class ReportAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "channel", "outcome", "count", "destination", "period_start", "period_end"]
    list_filter = ["channel", "outcome"]
    search_fields = ["destination", "error"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = REPORT_FIELDS
    readonly_fields = (*REPORT_FIELDS, "error")

    def get_fields(self, request: HttpRequest, obj: Report | None = None) -> _FieldGroups:
        return (*REPORT_FIELDS, "error") if obj is not None and obj.error else REPORT_FIELDS


@admin.register(ChannelState)
class ChannelStateAdmin(ReadOnlyAdmin):
    list_display = ["channel", "watermark", "last_success_at", "failures", "next_try_at", "last_run_at"]
    readonly_fields = [
        "channel",
        "watermark",
        "last_run_at",
        "last_success_at",
        "failures",
        "next_try_at",
        "last_error",
        "lease_until",
    ]
    actions = ["report_now"]

    @admin.action(description="Report now (in the background)")
    def report_now(self, request: HttpRequest, queryset: QuerySet[ChannelState]) -> None:
        from reporting.tasks import report

        channels = list(queryset.values_list("channel", flat=True))
        for channel in channels:
            transaction.on_commit(partial(report.delay, channel))
        self.message_user(request, f"Reporting queued for: {', '.join(channels)}.", messages.SUCCESS)
