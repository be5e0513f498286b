"""Run the past cron fires of a SCHEDULED task in a range, each once, oldest first (services.task_backfill)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from scheduling import audit, services
from scheduling.management.commands._common import add_actor_argument, cli_actor, get_task
from taskhub.exceptions import TaskHubError


class Command(BaseCommand):
    help = (
        "Backfill a SCHEDULED task: one run per cron fire in [--from, --to] (in the task's time zone, the live "
        "fires' DST rule), oldest first; a fire that already has a run is skipped. --downstream all makes each "
        "fire a pipeline run with every dependent. --dry-run lists the fires and writes nothing. At most "
        "scheduler.max_backfill fires."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("task", help="task id (UUID) or exact name")
        parser.add_argument("--from", dest="start", required=True, metavar="ISO", help="first moment (inclusive)")
        parser.add_argument("--to", dest="end", required=True, metavar="ISO", help="last moment (inclusive)")
        parser.add_argument("--dry-run", action="store_true", help="list the fires, write nothing")
        parser.add_argument(
            "--downstream", choices=("all",), help="each fire a pipeline run with every dependent (all)"
        )
        add_actor_argument(parser)

    def handle(self, *args: object, **options: Any) -> None:
        task = get_task(str(options["task"]))
        actor, note = cli_actor("backfill", options["user"])
        try:
            start = services.backfill_moment(options["start"], task, "from")
            end = services.backfill_moment(options["end"], task, "to")
            with audit.via(note):
                report = services.task_backfill(
                    task=task,
                    start=start,
                    end=end,
                    downstream=options.get("downstream"),
                    dry_run=options["dry_run"],
                    actor=actor,
                )
        except TaskHubError as exc:
            raise CommandError(str(exc)) from None
        skipped = set(report.skipped)
        for fire in report.fires:
            note_text = "already ran, skipped" if fire in skipped else ("would run" if report.dry_run else "run")
            self.stdout.write(f"{fire:%Y-%m-%dT%H:%M:%S}Z  {note_text}")
        self.stdout.write(self.style.SUCCESS(f"backfill of {task.name}: {report.summary()}"))
