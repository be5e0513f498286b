"""List tasks as a table, with filters."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from scheduling.models import Priority, Task, TaskStatus, TaskType


class Command(BaseCommand):
    help = "List tasks (newest first) with their status, priority, type and next fire."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--status", choices=TaskStatus.values)
        parser.add_argument("--priority", choices=Priority.names)
        parser.add_argument("--type", dest="task_type", choices=TaskType.values)
        parser.add_argument("--tag")
        parser.add_argument("--owner", help="username")
        parser.add_argument("--name", help="substring of the name")
        parser.add_argument("--limit", type=int, default=50)

    def handle(self, *args: Any, **options: Any) -> None:
        if int(options["limit"]) < 1:
            raise CommandError("--limit must be at least 1")
        tasks = Task.objects.select_related("owner").order_by("-created_at")
        if options["status"]:
            tasks = tasks.filter(status=options["status"])
        if options["priority"]:
            tasks = tasks.filter(priority=Priority[str(options["priority"])])
        if options["task_type"]:
            tasks = tasks.filter(task_type=options["task_type"])
        if options["tag"]:
            tasks = tasks.filter(tags__name=options["tag"])
        if options["owner"]:
            tasks = tasks.filter(owner__username=options["owner"])
        if options["name"]:
            tasks = tasks.filter(name__icontains=options["name"])
        rows = [
            (
                str(t.pk),
                t.name[:40],
                t.task_type,
                t.status,
                Priority(t.priority).label,
                t.owner.username if t.owner else "-",
                f"{t.next_fire_at:%Y-%m-%d %H:%M}" if t.next_fire_at else "-",
            )
            for t in tasks[: int(options["limit"])]
        ]
        header = ("ID", "NAME", "TYPE", "STATUS", "PRIORITY", "OWNER", "NEXT FIRE (UTC)")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
        if not rows:
            self.stdout.write("(no tasks match)")
