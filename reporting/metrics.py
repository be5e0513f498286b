"""Reporting's part of GET /metrics (scheduling.metrics): reports of the last hour and failing channels.

Contributed through ``scheduling.hooks.metrics`` from :class:`reporting.apps.ReportingConfig`,
so scheduling shows them without importing reporting.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from reporting.models import Channel, ChannelState, Report, ReportOutcome


def collect(since: datetime) -> Iterator[Metric]:
    """Yield the reports since ``since`` by channel and outcome, then each channel's consecutive failures."""
    family = GaugeMetricFamily(
        "taskhub_reports_last_hour",
        "Reports in the last hour, by channel and outcome.",
        labels=["channel", "outcome"],
    )
    counted = {
        (channel, outcome): 0 for channel in settings.TASKHUB.reporting.report_types for outcome in ReportOutcome.values
    }
    # channel IN (...) leads report_channel_idx (channel, -created_at): a range per channel, not a scan.
    rows = (
        Report.objects.filter(channel__in=Channel.values, created_at__gte=since).order_by().values("channel", "outcome")
    )
    for row in rows.annotate(n=Count("pk")):
        counted[(row["channel"], row["outcome"])] = row["n"]
    for (channel, outcome), n in sorted(counted.items()):
        family.add_metric([channel, outcome], n)
    yield family
    failing = GaugeMetricFamily(
        "taskhub_report_channel_failures",
        "Consecutive failed reports of each channel (0: its last report was sent).",
        labels=["channel"],
    )
    for channel, failures in ChannelState.objects.order_by("channel").values_list("channel", "failures"):
        failing.add_metric([channel], failures)
    yield failing
