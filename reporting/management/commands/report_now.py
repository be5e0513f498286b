"""``manage.py report_now [--channel C]``: report finished attempts now, without waiting for beat."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reporting.models import Channel, ReportOutcome
from reporting.services import report_run


class Command(BaseCommand):
    help = "Send finished attempts to the configured channels now (or to one channel)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--channel",
            choices=Channel.values,
            help="Report to this channel only, even if it is not in reporting.report_types.",
        )

    def handle(self, *args: Any, channel: str | None = None, **options: Any) -> None:
        reports = report_run(channel=channel)
        if not reports:
            self.stdout.write("Nothing new to report.")
            return
        failed = 0
        for report in reports:
            if report.outcome == ReportOutcome.SENT:
                self.stdout.write(f"{report.channel}: sent {report.count} attempts to {report.destination}")
            else:
                failed += 1
                self.stderr.write(f"{report.channel}: FAILED ({report.count} attempts kept for later): {report.error}")
        if failed:
            raise CommandError(f"{failed} of {len(reports)} channels failed; they will catch up on the next report")
