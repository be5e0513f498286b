"""Run one task in the foreground, through the same executor the workers use (for debugging handlers)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from scheduling import audit, executor, lifecycle, services
from scheduling.management.commands._common import add_actor_argument, cli_actor, get_task
from scheduling.models import AttemptStatus
from taskhub.exceptions import TaskHubError


class Command(BaseCommand):
    help = "Run a task now in this process and show its progress and outcome (ignores the concurrency cap)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("task", help="task id (UUID) or exact name")
        add_actor_argument(parser)

    def handle(self, *args: object, **options: object) -> None:
        task = get_task(str(options["task"]))
        actor, note = cli_actor("run_task", options["user"])  # type: ignore[arg-type]
        try:
            with audit.via(note):
                result = services.task_run_now(task=task, dispatch=False, actor=actor)
        except TaskHubError as exc:
            raise CommandError(str(exc)) from None
        result.refresh_from_db()
        if result.status != AttemptStatus.PENDING:
            raise CommandError(f"{task.name}: {result.status} before it started: {result.error_message}")
        # Queue this attempt ourselves instead of through the dispatcher, so it runs here.
        lifecycle.move(result, AttemptStatus.QUEUED)
        outcome = executor.run_attempt(result.pk, progress_listener=self._show_progress)
        result.refresh_from_db()
        style = self.style.SUCCESS if outcome == AttemptStatus.DONE else self.style.ERROR
        self.stdout.write(style(f"{task.name}: {outcome} in {result.duration or 0:.2f} s"))
        if result.result is not None:
            self.stdout.write(f"result: {result.result}")
        if result.error_message:
            self.stdout.write(f"error: {result.error_message}")
        for artifact in result.artifacts:
            self.stdout.write(f"artifact: {artifact}")
        if outcome != AttemptStatus.DONE:
            raise SystemExit(1)

    def _show_progress(self, percent: int | None, message: str = "") -> None:
        self.stderr.write(f"  {'' if percent is None else f'{percent:3d}%'} {message}")
