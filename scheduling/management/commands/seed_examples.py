"""Create the seed's two example Jira extraction tasks (idempotent), in one services.task_create_many call.

They export from the Jira environments ``env1.jira.com`` and ``env2.jira.com``; ``--env NAME`` points
both at one configured environment instead. Without the environments it creates nothing and says, in
one line, what to configure.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from scheduling import audit, services
from scheduling.management.commands._common import add_actor_argument, cli_actor
from scheduling.models import Task
from taskhub.exceptions import BulkValidationError, ValidationError

EXAMPLES: list[dict[str, Any]] = [
    {
        "name": "JIRA Extraction - Root Ticket",
        "task_type": "IMMEDIATE",
        "tags": ["JIRA_TASK_EXP"],
        "parameters": {
            "jira_envs": ["env1.jira.com", "env2.jira.com"],
            "key_type": "root_ticket",
            "key_value": "PROJ-123",
            "user": "johndoe",
        },
    },
    {
        # The seed marks this one IMMEDIATE but gives it a daily cron; a cron means SCHEDULED.
        "name": "JIRA Extraction - Project",
        "task_type": "SCHEDULED",
        "cron_expr": "0 0 * * *",
        "tags": ["JIRA_TASK_EXP"],
        "parameters": {
            "jira_envs": ["env1.jira.com"],
            "key_type": "project",
            "key_value": "PROJ",
            "user": "johndoe",
        },
    },
]


class Command(BaseCommand):
    help = "Create the seed's example tasks (root-ticket export now, project export daily at 00:00)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--owner", help="username to own the tasks (default: the first superuser)")
        parser.add_argument(
            "--env",
            metavar="NAME",
            help="configured Jira environment both examples export from (default: env1.jira.com and env2.jira.com)",
        )
        add_actor_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        owner = (
            User.objects.filter(username=options["owner"]).first()
            if options["owner"]
            else User.objects.filter(is_superuser=True).order_by("pk").first()
        )
        if options["owner"] and owner is None:
            raise CommandError(f"no user named {options['owner']!r}")
        actor, note = cli_actor("seed_examples", options["user"])
        examples = _examples(options["env"])
        wanted = []
        for example in examples:
            if Task.objects.filter(name=example["name"]).exists():
                self.stdout.write(f"exists: {example['name']}")
            else:
                wanted.append(example)
        if not wanted:
            return
        try:  # one call: all the missing examples, or none of them
            with audit.via(note):
                tasks = services.task_create_many(items=wanted, owner=owner, actor=actor or owner)
        except BulkValidationError as exc:
            index = next(i for i, errors in enumerate(exc.items) if errors)
            raise CommandError(f"{wanted[index]['name']}: {ValidationError(exc.items[index])}") from None
        for task in tasks:
            self.stdout.write(self.style.SUCCESS(f"created: {task.name} ({task.pk})"))


def _examples(env: str | None) -> list[dict[str, object]]:
    """The examples, on ``env`` if given; a one-line CommandError when their Jira environments are not configured."""
    configured = settings.TASKHUB.jira_environments
    known = ", ".join(sorted(configured)) or "none"
    if env is not None:
        if env not in configured:
            raise CommandError(f"--env: no Jira environment named {env!r} is configured (configured: {known})")
        return [{**e, "parameters": {**e["parameters"], "jira_envs": [env]}} for e in EXAMPLES]
    needed = sorted({name for e in EXAMPLES for name in e["parameters"]["jira_envs"]})
    missing = [name for name in needed if name not in configured]
    if missing:
        raise CommandError(
            f"nothing created: the examples export from Jira environments {', '.join(missing)}, which are not "
            f"configured; add them under jira.environments in config.yaml (see config.yaml.example), "
            f"or pass --env NAME (configured: {known})"
        )
    return EXAMPLES
