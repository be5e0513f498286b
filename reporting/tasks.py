"""Celery task: the periodic report, run by beat every reporting.interval seconds."""

from __future__ import annotations

from celery import shared_task

from reporting import services


@shared_task(name="reporting.report", ignore_result=True)
def report(channel: str | None = None) -> dict[str, str]:
    """Report finished attempts to each configured channel (or to ``channel``)."""
    return {r.channel: r.outcome for r in services.report_run(channel=channel)}
