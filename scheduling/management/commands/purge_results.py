"""Delete finished attempts older than storage.result_retention_days, keeping each task's last result."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from scheduling.engine import retention


class Command(BaseCommand):
    help = (
        "Delete finished attempts older than the retention (storage.result_retention_days, or --days). "
        "The latest result of every task, and waiting or running attempts, are never deleted. 0 days keeps all."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="only say what would be removed")
        parser.add_argument("--days", type=int, metavar="N", help="retention in days (default: from config.yaml)")
        parser.add_argument("--batch-size", type=int, default=retention.BATCH_SIZE, help="rows per transaction")

    def handle(self, *args: object, **options: Any) -> None:
        if options["days"] is not None and options["days"] < 0:
            raise CommandError(f"--days: expected an integer >= 0 (0 keeps results forever), got {options['days']}")
        if options["batch_size"] < 1:
            raise CommandError(f"--batch-size: expected a positive integer, got {options['batch_size']}")

        def show(report: retention.PurgeReport) -> None:
            self.stderr.write(f"  batch {report.batches}: {report.attempts} attempt(s) so far")

        report = retention.purge_results(
            days=options["days"],
            dry_run=options["dry_run"],
            batch_size=options["batch_size"],
            progress=show if options["verbosity"] >= 2 else None,
        )
        self.stdout.write(str(report))
