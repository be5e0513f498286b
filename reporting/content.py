"""What a report says: rows, totals and alerts built from finished attempts, the same for every channel.

Values are plain text here; each channel escapes them for its own format (the
Confluence template through Django's autoescape, Mattermost through markdown
escaping). Characters XML 1.0 forbids are removed here, because Confluence
refuses a whole page for one stray control character in an error message.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import Substr
from django.urls import reverse

from scheduling.models import AttemptStatus, Priority, TaskResult
from taskhub import scrubbing

A = AttemptStatus
ERROR_SUMMARY = 200
SLOWEST = 5
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: Colours of Confluence's status macro, by attempt status.
STATUS_COLOURS: dict[str, str] = {
    A.DONE: "Green",
    A.FAILED: "Red",
    A.TIMEOUT: "Red",
    A.CANCELLED: "Grey",
    A.SKIPPED: "Grey",
    A.RUNNING: "Blue",
    A.QUEUED: "Blue",
    A.RETRY: "Yellow",
    A.PENDING: "Yellow",
}


def clean_text(value: Any, limit: int | None = None, *, complete: bool = True) -> str:
    """Return ``value`` as text without characters XML cannot carry and without secrets, cut to ``limit``.

    Scrubbed before it is cut; ``complete=False``: ``value`` is itself a cut excerpt (a partial secret may end it).
    """
    text = _NOT_XML.sub("", "" if value is None else str(value))
    text = scrubbing.cut(text, len(text), complete=complete)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


@dataclass(frozen=True)
class Row:
    """One finished attempt as reports show it."""

    result_id: int
    task_id: str
    task_name: str
    status: str
    priority: str
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    attempt: int
    error: str
    url: str

    @property
    def colour(self) -> str:
        return STATUS_COLOURS.get(self.status, "Grey")

    @property
    def failed(self) -> bool:
        return self.status in (A.FAILED, A.TIMEOUT)


@dataclass(frozen=True)
class Alert:
    """A change of a task's final outcome: it failed for good, or it works again."""

    kind: str  # "failure" or "recovery"
    row: Row


@dataclass
class Summary:
    """Totals over a set of attempts."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    failure_rate: float | None = None
    slowest: list[Row] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.by_status.get(A.FAILED, 0) + self.by_status.get(A.TIMEOUT, 0)


@dataclass
class Content:
    """Everything a channel renders: the period, totals, the latest rows and the alerts."""

    period_start: datetime | None
    period_end: datetime
    summary: Summary
    rows: list[Row]
    omitted: int
    alerts: list[Alert] = field(default_factory=list)
    title: str = ""
    new_count: int = 0
    alerts_omitted: int = 0

    def context(self) -> dict[str, Any]:
        """Return the template context: the content's fields plus display helpers."""
        reporting = settings.TASKHUB.reporting
        rate = self.summary.failure_rate
        return {
            "period_start": self.period_start,
            "period_end": self.period_end,
            "summary": self.summary,
            "statuses": [(s, n, STATUS_COLOURS.get(s, "Grey")) for s, n in sorted(self.summary.by_status.items())],
            "failure_pct": None if rate is None else rate * 100,
            "rows": self.rows,
            "omitted": self.omitted,
            "alerts": self.alerts,
            "alerts_omitted": self.alerts_omitted,
            "title": self.title,
            "new_count": self.new_count,
            "max_rows": reporting.max_rows,
            "summary_hours": reporting.summary_hours,
            "results_url": reporting.base_url.rstrip("/") + reverse("admin:scheduling_taskresult_changelist"),
        }


_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


def admin_url(task_id: Any) -> str:
    """Return the absolute URL of a task's admin page."""
    return _admin_url_pattern(settings.TASKHUB.reporting.base_url.rstrip("/")).replace(_PLACEHOLDER, str(task_id))


@functools.lru_cache(maxsize=8)
def _admin_url_pattern(base: str) -> str:
    # reverse() costs about a millisecond; a report may link a few hundred tasks.
    return base + reverse("admin:scheduling_task_change", args=[_PLACEHOLDER])


_FIELDS = ("pk", "task_id", "task__name", "status", "priority", "started_at", "finished_at", "duration", "attempt")


def _rows(results: QuerySet[TaskResult]) -> list[Row]:
    values = results.annotate(error=Substr("error_message", 1, ERROR_SUMMARY * 2)).values(*_FIELDS, "error")
    return [
        Row(
            result_id=v["pk"],
            task_id=str(v["task_id"]),
            task_name=clean_text(v["task__name"]),
            status=v["status"],
            priority=Priority(v["priority"]).label if v["priority"] in Priority.values else str(v["priority"]),
            started_at=v["started_at"],
            finished_at=v["finished_at"],
            duration=v["duration"],
            attempt=v["attempt"],
            # The first line says what went wrong; the traceback stays in the admin.
            error=clean_text(
                (v["error"] or "").strip().splitlines()[0] if v["error"] else "",
                ERROR_SUMMARY,
                complete=len(v["error"] or "") < ERROR_SUMMARY * 2 or "\n" in v["error"],
            ),
            url=admin_url(v["task_id"]),
        )
        for v in values
    ]


def summarize(results: QuerySet[TaskResult]) -> Summary:
    """Count attempts by status, the failure rate and the slowest attempts, in SQL."""
    by_status = dict(results.order_by().values_list("status").annotate(n=Count("pk")))
    done = by_status.get(A.DONE, 0)
    failed = by_status.get(A.FAILED, 0) + by_status.get(A.TIMEOUT, 0)
    slowest = _rows(results.filter(duration__isnull=False).order_by("-duration", "-pk")[:SLOWEST])
    return Summary(
        total=sum(by_status.values()),
        by_status=by_status,
        failure_rate=failed / (done + failed) if done + failed else None,
        slowest=slowest,
    )


def build(
    results: QuerySet[TaskResult],
    *,
    period_start: datetime | None,
    period_end: datetime,
    max_rows: int | None = None,
    alerts: bool = False,
    title: str = "",
) -> Content:
    """Build a report over ``results``: their totals, the latest ``max_rows`` and (optionally) the alerts."""
    max_rows = max_rows or settings.TASKHUB.reporting.max_rows
    summary = summarize(results)
    rows = _rows(results.order_by("-finished_at", "-pk")[:max_rows])
    content = Content(
        period_start=period_start,
        period_end=period_end,
        summary=summary,
        rows=rows,
        omitted=max(summary.total - len(rows), 0),
        title=title,
    )
    if alerts:
        # Bounded like the rows: the most recent changes are the ones that still hold.
        content.alerts, content.alerts_omitted = find_alerts(results, limit=max_rows)
    return content


def page_results(now: datetime) -> QuerySet[TaskResult]:
    """Return the attempts a standing page summarizes: finished within reporting.summary_hours."""
    since = now - timedelta(hours=settings.TASKHUB.reporting.summary_hours)
    return TaskResult.objects.filter(finished_at__gt=since, finished_at__lte=now)


# --- alerts: notify on a final failure and on recovery only -------------------------------


def _retried() -> Exists:
    """Whether a failed attempt was followed by a retry (so it was not the run's final outcome)."""
    # The executor creates the retry in the same transaction that records the failure, stamped
    # with the very same time; a later run's attempts (or a manual retry) are created later.
    return Exists(
        TaskResult.objects.filter(
            task_id=OuterRef("task_id"), attempt=OuterRef("attempt") + 1, created_at=OuterRef("finished_at")
        )
    )


def _final_outcomes(results: QuerySet[TaskResult]) -> QuerySet[TaskResult]:
    return (
        results.filter(status__in=(A.DONE, A.FAILED, A.TIMEOUT))
        .annotate(retried=_retried())
        .exclude(status__in=(A.FAILED, A.TIMEOUT), retried=True)
    )


def _state(status: str) -> str:
    return "ok" if status == A.DONE else "failed"


def find_alerts(results: QuerySet[TaskResult], *, limit: int | None = None) -> tuple[list[Alert], int]:
    """Return the last ``limit`` changes of a task between working and failing for good, and how many more.

    Steps: for each task in the batch, take its final outcome before the batch
    (a DONE, or a failure that was not retried); walk the batch's final outcomes
    in time order; a failure after success (or first ever) is a "failure", a
    success after a failure a "recovery"; repeats of the same state are quiet.
    """
    finals = list(
        _final_outcomes(results).order_by("finished_at", "pk").values("pk", "task_id", "status", "finished_at")
    )
    if not finals:
        return [], 0
    first_of_task: dict[Any, int] = {}
    for item in finals:
        first_of_task.setdefault(item["task_id"], item["pk"])
    # One query: each task's last final outcome before its first one in the batch.
    before = _final_outcomes(
        TaskResult.objects.filter(task_id=OuterRef("task_id"), finished_at__lt=OuterRef("finished_at"))
    ).order_by("-finished_at", "-pk")
    previous = TaskResult.objects.filter(pk__in=first_of_task.values()).annotate(
        before=Subquery(before.values("status")[:1])
    )
    state: dict[Any, str | None] = {
        task_id: _state(status) if status else None for task_id, status in previous.values_list("task_id", "before")
    }
    changes: list[tuple[str, int]] = []
    for item in finals:
        new = _state(item["status"])
        old = state[item["task_id"]]
        if new == "failed" and old != "failed":
            changes.append(("failure", item["pk"]))
        elif new == "ok" and old == "failed":
            changes.append(("recovery", item["pk"]))
        state[item["task_id"]] = new
    kept = changes[-limit:] if limit else changes
    rows = {row.result_id: row for row in _rows(TaskResult.objects.filter(pk__in=[pk for _, pk in kept]))}
    return [Alert(kind, rows[pk]) for kind, pk in kept if pk in rows], len(changes) - len(kept)
