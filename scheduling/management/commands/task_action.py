"""Change, run, cancel, retry, pause, resume or delete a task from the shell (audited like the admin and API)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from scheduling import audit, services
from scheduling.management.commands._common import add_actor_argument, cli_actor, get_task
from scheduling.models import EDITABLE_FIELDS, TaskResult
from taskhub.exceptions import TaskHubError

ACTIONS = ("change", "run", "cancel", "retry", "pause", "resume", "delete")


def _assignment(text: str) -> tuple[str, Any]:
    field, sep, raw = text.partition("=")
    if not sep or field not in EDITABLE_FIELDS:
        raise CommandError(f"--set {text!r}: expected FIELD=VALUE with FIELD one of {', '.join(EDITABLE_FIELDS)}")
    try:
        value = json.loads(raw)  # numbers, true/false, null, lists and objects as JSON
    except ValueError:
        value = raw  # anything else is a plain string
    return field, value


class Command(BaseCommand):
    help = (
        'Act on a task: change (--set FIELD=VALUE, repeatable; dependencies=\'[{"id": ..., "mode": "any"}]\' '
        "sets a dependency's mode), run or retry (--downstream failed|all), cancel, pause, resume or delete. "
        "The audit trail names --user (or the user named like your OS login) and this command."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("task", help="task id (UUID) or exact name")
        parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="for 'change'")
        parser.add_argument("--reason", default="cancelled from the command line", help="for 'cancel'")
        parser.add_argument(
            "--downstream",
            choices=services.DOWNSTREAM,
            help="for 'retry' and 'run': also run again the dependents that failed because of the task (failed) "
            "or every dependent (all); each waits for its dependencies' new runs",
        )
        add_actor_argument(parser)

    def handle(self, *args: object, **options: Any) -> None:
        task = get_task(str(options["task"]))
        action = options["action"]
        if action == "change" and not options["set"]:
            raise CommandError("change: give at least one --set FIELD=VALUE")
        if action != "change" and options["set"]:
            raise CommandError(f"--set is for 'change', not {action!r}")
        downstream = options.get("downstream")
        if downstream and action not in ("retry", "run"):
            raise CommandError(f"--downstream is for 'retry' and 'run', not {action!r}")
        actor, note = cli_actor(f"task_action {action}", options["user"])
        calls = {
            "change": lambda: services.task_update(
                task=task, data=dict(_assignment(item) for item in options["set"]), actor=actor
            ),
            "run": lambda: services.task_run_now(task=task, actor=actor, downstream=downstream),
            "cancel": lambda: services.task_cancel(task=task, reason=options["reason"], actor=actor),
            "retry": lambda: services.task_retry(task=task, actor=actor, downstream=downstream),
            "pause": lambda: services.task_pause(task=task, actor=actor),
            "resume": lambda: services.task_resume(task=task, actor=actor),
            "delete": lambda: services.task_delete(task=task, actor=actor),
        }
        try:
            with audit.via(note):
                done = calls[action]()
        except TaskHubError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{action}: {task.name} ({task.pk})"))
        outcome = services.downstream_of(done) if isinstance(done, TaskResult) else None
        if outcome is not None:
            self.stdout.write(f"downstream={outcome.which}: {outcome.summary()}")
            self.stdout.write(f"pipeline run {outcome.pipeline_run} (GET /pipeline_runs/{outcome.pipeline_run})")
