"""``manage.py report_now [--channel C]``: report finished attempts now, without waiting for beat."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reporting.models import Channel, ReportOutcome
from reporting.services import report_run


class Command(BaseCommand):
    help = (
        "Send finished attempts to the configured channels now (or to one channel); says why a channel got "
        "nothing (not configured, backing off, nothing new). Exit status 1 when a channel failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--channel",
            choices=Channel.values,
            help="Report to this channel only, even if it is not in reporting.report_types.",
        )

    def handle(self, *args: Any, channel: str | None = None, **options: Any) -> None:
        reasons: dict[str, str] = {}
        reports = report_run(channel=channel, reasons=reasons)
        if channel and reasons.get(channel, "").startswith("not configured"):
            raise CommandError(f"{channel} is {reasons[channel]}")
        failed = 0
        for report in reports:
            if report.outcome == ReportOutcome.SENT:
                self.stdout.write(f"{report.channel}: sent {report.count} attempts to {report.destination}")
            else:
                failed += 1
                self.stderr.write(f"{report.channel}: FAILED ({report.count} attempts kept for later): {report.error}")
        for name, why in reasons.items():
            self.stdout.write(f"{name}: nothing sent: {why}")
        if not reports and not reasons:
            self.stdout.write(
                "Nothing sent: no report channel is listed in reporting.report_types "
                "(confluence, mattermost, email; or use --channel)."
            )
        if failed:
            raise CommandError(f"{failed} of {len(reports)} channels failed; they will catch up on the next report")
