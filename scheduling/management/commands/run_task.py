"""Run one task in the foreground, through the same executor the workers use (for debugging handlers).

Exit status: 0 the attempt is DONE; 1 the run failed for good (FAILED, TIMEOUT or CANCELLED, no retry
left); 2 nothing ran (unknown task, a run that cannot start); 3 the attempt failed and the task's
retry policy scheduled a retry, which the workers run ("retry 1 of 3 at 12:01:05 UTC").
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from scheduling import audit, services
from scheduling.engine import executor, lifecycle
from scheduling.management.commands._common import add_actor_argument, cli_actor, get_task
from scheduling.models import AttemptStatus, TaskResult
from taskhub.exceptions import TaskHubError


class Command(BaseCommand):
    help = (
        "Run a task now in this process and show its progress and outcome (ignores the concurrency cap). "
        "Exit status: 0 done, 1 failed for good, 2 nothing ran, 3 failed with a retry scheduled."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("task", help="task id (UUID) or exact name")
        add_actor_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            task = get_task(str(options["task"]))
            actor, note = cli_actor("run_task", options["user"])
        except CommandError as exc:
            raise CommandError(str(exc), returncode=2) from None
        try:
            with audit.via(note):
                result = services.task_run_now(task=task, dispatch=False, actor=actor)
        except TaskHubError as exc:
            raise CommandError(str(exc), returncode=2) from None
        result.refresh_from_db()
        if result.status != AttemptStatus.PENDING:
            raise CommandError(f"{task.name}: {result.status} before it started: {result.error_message}", returncode=2)
        # Queue this attempt ourselves instead of through the dispatcher, so it runs here.
        lifecycle.move(result, AttemptStatus.QUEUED)
        outcome = executor.run_attempt(result.pk, progress_listener=self._show_progress)
        result.refresh_from_db()
        retry = TaskResult.objects.filter(task=task, attempt=result.attempt + 1, status=AttemptStatus.RETRY).first()
        if outcome == AttemptStatus.DONE:
            self.stdout.write(self.style.SUCCESS(f"{task.name}: DONE in {result.duration or 0:.2f} s"))
        elif retry is not None:
            policy = task.retry_policy
            when = timezone.localtime(retry.available_at)
            self.stdout.write(
                self.style.WARNING(
                    f"{task.name}: attempt {result.attempt} {outcome} in {result.duration or 0:.2f} s, "
                    f"retry {result.attempt} of {policy.max_retries if policy else '?'} "
                    f"at {when:%H:%M:%S} {when:%Z} (the workers run it)"
                )
            )
        else:
            why = "no retry left" if task.retry_policy_id else "no retry policy"
            self.stdout.write(
                self.style.ERROR(
                    f"{task.name}: {outcome} for good (attempt {result.attempt}, {why}) in {result.duration or 0:.2f} s"
                )
            )
        if result.result is not None:
            self.stdout.write(f"result: {result.result}")
        if result.error_message:
            self.stdout.write(f"error: {result.error_message}")
        for artifact in result.artifacts:
            self.stdout.write(f"artifact: {artifact}")
        if outcome != AttemptStatus.DONE:
            raise SystemExit(3 if retry is not None else 1)

    def _show_progress(self, percent: int | None, message: str = "") -> None:
        self.stderr.write(f"  {'' if percent is None else f'{percent:3d}%'} {message}")
