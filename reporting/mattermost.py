"""Reporting's Mattermost channel: a markdown digest of finished attempts, led by failure and recovery alerts.

Rendered here and posted through the integration's webhook client (integrations.mattermost.client).
"""

from __future__ import annotations

import re
from datetime import datetime

from django.utils import timezone

from integrations.mattermost.client import MAX_TEXT, post_message
from reporting.content import Alert, Content, Row

# Characters that markdown reads as formatting, links or table borders anywhere in a line
# (our values never start a line, so list and heading markers need no escape).
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()|<>~])")


def escape(text: str) -> str:
    """Return ``text`` so that Mattermost shows it literally on one line, mentioning nobody."""
    text = _MARKDOWN.sub(r"\\\1", " ".join(str(text).split()))
    # "@channel" in a task name must not notify a whole channel: a zero-width space breaks the mention.
    return text.replace("@", "@\u200b")


def _time(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _alert_line(alert: Alert) -> str:
    row = alert.row
    if alert.kind == "failure":
        error = f": {escape(row.error)}" if row.error else ""
        what = f"failed ({row.status}, attempt {row.attempt})"
        return f":red_circle: **{escape(row.task_name)}** {what}{error} [open]({row.url})"
    return f":large_green_circle: **{escape(row.task_name)}** works again (attempt {row.attempt}) [open]({row.url})"


def _row_line(row: Row) -> str:
    duration = f"{row.duration:.2f} s" if row.duration is not None else ""
    cells = [
        f"[{escape(row.task_name)}]({row.url})",
        row.status,
        row.priority,
        _time(row.started_at),
        duration,
        str(row.attempt),
        escape(row.error),
    ]
    return "| " + " | ".join(cells) + " |"


def digest_text(content: Content) -> str:
    """Render a report as Mattermost markdown: headline, alerts, then a table of the latest attempts."""
    summary = content.summary
    counts = ", ".join(f"{n} {status.lower()}" for status, n in sorted(summary.by_status.items()))
    since = f"since {_time(content.period_start)}" if content.period_start else "so far"
    lines = [f"#### TaskHub: {summary.total} attempt{'s' if summary.total != 1 else ''} finished {since} ({counts})"]
    if summary.failure_rate is not None:
        lines[0] += f", failure rate {summary.failure_rate:.0%}"
    if content.alerts:
        lines.append("")
        # Alerts come first and may use at most half of the message; the table gets the rest.
        budget = MAX_TEXT // 2
        hidden = content.alerts_omitted
        for alert in content.alerts:
            line = _alert_line(alert)
            if len(line) + 1 > budget:
                hidden += 1
                continue
            lines.append(line)
            budget -= len(line) + 1
        if hidden:
            lines.append(f"_{hidden} more change{'s' if hidden != 1 else ''} of task state not listed._")
    if content.rows:
        lines += [
            "",
            "| Task | Status | Priority | Started | Duration | Attempt | Error |",
            "|:--|:--|:--|:--|--:|--:|:--|",
        ]
        budget = MAX_TEXT - 200 - sum(len(line) + 1 for line in lines)
        shown = 0
        for row in content.rows:
            line = _row_line(row)
            if len(line) + 1 > budget:
                break
            lines.append(line)
            budget -= len(line) + 1
            shown += 1
        hidden = content.omitted + len(content.rows) - shown
        if hidden:
            lines += ["", f"_{hidden} more attempt{'s' if hidden != 1 else ''} not listed._"]
    return "\n".join(lines)


def digest_post(content: Content) -> None:
    """Send the digest of a report to the configured webhook."""
    post_message(digest_text(content))
