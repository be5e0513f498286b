"""``manage.py jira_export``: the JIRA_TASK_EXP export from the command line, with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from integrations.jira.handlers import ISSUE_KEY, PROJECT_KEY, check_environments
from integrations.jira.services import DEFAULT_MAX_DEPTH, DEFAULT_MAX_ISSUES, PAGE_SIZE, ExportRequest, export_issues
from taskhub.exceptions import TaskHubError, ValidationError

BAR_WIDTH = 30


class ProgressBar:
    """Draw progress on stderr: one redrawn line on a terminal, a line per 5% step otherwise."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last_step = -1
        self.percent = 0.0

    def __call__(self, percent: float | None, message: str = "") -> None:
        if percent is not None:
            self.percent = max(0.0, min(100.0, float(percent)))
        filled = int(BAR_WIDTH * self.percent / 100)
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.percent:5.1f}% {message}"
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
            self.stream.flush()
            return
        step = int(self.percent // 5)
        if step != self.last_step:
            self.last_step = step
            self.stream.write(line + "\n")
            self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class Command(BaseCommand):
    help = "Export Jira issues (a project, or a root ticket's tree) to an Excel workbook, as JIRA_TASK_EXP does."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--env", action="append", required=True, help="configured Jira environment (repeat for several)"
        )
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--project", help="project key: export every issue of the project")
        what.add_argument("--root", help="issue key: export the issue, its sub-tasks, children and linked issues")
        parser.add_argument("--out", help="workbook path (default: storage.reports_path/jira-....xlsx)")
        parser.add_argument("--max-depth", type=int, default=DEFAULT_MAX_DEPTH, help="--root: most hops from the root")
        parser.add_argument("--max-issues", type=int, default=DEFAULT_MAX_ISSUES, help="--root: stop after this many")
        parser.add_argument("--page-size", type=int, default=PAGE_SIZE, help="issues per search request")
        parser.add_argument("--user", default="", help="who asked for it (shown in the workbook)")

    def handle(self, *args: object, **options: Any) -> None:
        envs: list[str] = list(dict.fromkeys(options["env"]))
        try:
            check_environments(envs, "--env")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.errors["parameters"])) from None
        key_type, value = ("project", options["project"]) if options["project"] else ("root_ticket", options["root"])
        value = value.strip().upper()
        pattern, example = (PROJECT_KEY, "PROJ") if key_type == "project" else (ISSUE_KEY, "PROJ-123")
        if not pattern.fullmatch(value):
            flag = "--project" if key_type == "project" else "--root"
            raise CommandError(f"{flag}: expected a key such as {example}, got {value!r}")
        for name in ("max_depth", "max_issues", "page_size"):
            if options[name] < (0 if name == "max_depth" else 1):
                raise CommandError(f"--{name.replace('_', '-')}: expected a positive number, got {options[name]}")
        out = (
            Path(options["out"])
            if options["out"]
            else Path(settings.REPORTS_DIR)
            / (f"jira-{key_type.replace('_', '-')}-{value.lower()}-{timezone.now():%Y%m%d-%H%M%S}.xlsx")
        )
        if out.suffix.lower() != ".xlsx":
            raise CommandError(f"--out: expected a file name ending in .xlsx, got {str(out)!r}")
        request = ExportRequest(
            envs=envs,
            key_type=key_type,
            key_value=value,
            user=options["user"],
            max_depth=options["max_depth"],
            max_issues=options["max_issues"],
            page_size=options["page_size"],
        )
        bar = ProgressBar(self.stderr._out if hasattr(self.stderr, "_out") else sys.stderr)
        try:
            summary = export_issues(request, out, progress=bar)
        except TaskHubError as exc:
            bar.finish()
            raise CommandError(str(exc)) from None
        except OSError as exc:
            bar.finish()
            raise CommandError(f"--out: cannot write {out}: {exc.strerror or exc}") from None
        bar(100, "done")
        bar.finish()
        for env, info in summary["environments"].items():
            self.stdout.write(f"{env}: {info['issues']} issues")
        for note in summary["notes"]:
            self.stdout.write(self.style.WARNING(f"note: {note}"))
        self.stdout.write(self.style.SUCCESS(f"{summary['total']} issues written to {out}"))
