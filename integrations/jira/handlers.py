"""Task handlers ``JIRA_TASK_EXP`` (issues to an Excel workbook) and ``JIRA_TASK_UPDATE`` (transitions, fields)."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.text import slugify

from integrations.jira.checkpoint import Checkpoint, fingerprint, prune
from integrations.jira.client import attempt_deadline, configured_environments
from integrations.jira.services import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_ISSUES,
    PAGE_SIZE,
    ExportRequest,
    default_since,
    export_issues,
)
from integrations.jira.updates import UpdateRequest, update_issues
from scheduling.handlers import HandlerContext, registry
from taskhub.exceptions import ValidationError

JIRA_TASK_EXP = "JIRA_TASK_EXP"
JIRA_TASK_UPDATE = "JIRA_TASK_UPDATE"

ISSUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*-[1-9][0-9]*")
PROJECT_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

_ENV_NAMES = {"type": "string", "minLength": 1, "maxLength": 100}

EXPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["jira_envs", "key_type", "key_value"],
    "additionalProperties": False,
    "properties": {
        "jira_envs": {
            "type": "array",
            "items": _ENV_NAMES,
            "minItems": 1,
            "maxItems": 20,
            "uniqueItems": True,
            "description": "Names of configured Jira environments (jira.environments); one sheet each",
        },
        "key_type": {"enum": ["root_ticket", "project"], "description": "Export an issue's tree or a whole project"},
        "key_value": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "description": "An issue key (PROJ-123) for root_ticket, a project key (PROJ) for project",
        },
        "user": {"type": "string", "maxLength": 150, "description": "Who asked for the export (shown in the workbook)"},
        "incremental": {
            "type": "boolean",
            "default": False,
            "description": "project only: take issues updated since this task's last successful run",
        },
        "max_depth": {
            "type": "integer",
            "minimum": 0,
            "maximum": 20,
            "default": DEFAULT_MAX_DEPTH,
            "description": "root_ticket only: most hops (sub-task, child, link) away from the root",
        },
        "max_issues": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1_000_000,
            "default": DEFAULT_MAX_ISSUES,
            "description": "root_ticket only: stop the walk after this many issues",
        },
        "page_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1000,
            "default": PAGE_SIZE,
            "description": "Issues per search request (Jira may return fewer)",
        },
    },
}

UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["jira_env"],
    "additionalProperties": False,
    "properties": {
        "jira_env": {**_ENV_NAMES, "description": "Name of a configured Jira environment"},
        "keys": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 100},
            "minItems": 1,
            "maxItems": 1000,
            "uniqueItems": True,
            "description": "Issue keys to update (or give jql)",
        },
        "jql": {"type": "string", "minLength": 1, "maxLength": 2000, "description": "JQL choosing the issues"},
        "transition": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "description": "Transition name (or target status), case-insensitive",
        },
        "fields": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 50,
            "description": 'Field id or name -> value in Jira REST format, e.g. {"labels": ["x"]}',
        },
        "comment": {"type": "string", "minLength": 1, "maxLength": 32_000},
        "dry_run": {"type": "boolean", "default": False, "description": "Report what would change; change nothing"},
        "max_issues": {
            "type": "integer",
            "minimum": 1,
            "maximum": 10_000,
            "default": 100,
            "description": "Refuse a JQL matching more issues than this (a safety net for mass edits)",
        },
    },
}


def check_environments(names: list[str], field: str) -> None:
    """Refuse environment names that are not configured, listing the configured ones."""
    configured = configured_environments()
    unknown = [name for name in names if name not in configured]
    if unknown:
        listed = ", ".join(sorted(configured)) or "none (add jira.environments to config.yaml)"
        plural = "s" if len(unknown) > 1 else ""
        raise ValidationError(
            {
                "parameters": f"{field}: unknown Jira environment{plural} {', '.join(map(repr, unknown))}; "
                f"configured: {listed}"
            }
        )


def _check_export(parameters: dict[str, Any]) -> None:
    check_environments(parameters["jira_envs"], "jira_envs")
    key_type, value = parameters["key_type"], parameters["key_value"].strip()
    if key_type == "root_ticket" and not ISSUE_KEY.fullmatch(value):
        raise ValidationError(
            {"parameters": f"key_value: expected an issue key such as PROJ-123 for key_type root_ticket, got {value!r}"}
        )
    if key_type == "project" and not PROJECT_KEY.fullmatch(value):
        raise ValidationError(
            {"parameters": f"key_value: expected a project key such as PROJ for key_type project, got {value!r}"}
        )
    if parameters.get("incremental") and key_type != "project":
        raise ValidationError({"parameters": "incremental: only for key_type project (a tree is always read whole)"})


def _check_update(parameters: dict[str, Any]) -> None:
    check_environments([parameters["jira_env"]], "jira_env")
    if ("keys" in parameters) == ("jql" in parameters):
        raise ValidationError({"parameters": "give exactly one of keys (a list of issue keys) or jql"})
    bad = [key for key in parameters.get("keys", []) if not ISSUE_KEY.fullmatch(key)]
    if bad:
        raise ValidationError({"parameters": f"keys: expected issue keys such as PROJ-123, got {', '.join(bad[:5])}"})
    if not any(parameters.get(name) for name in ("transition", "fields", "comment")):
        raise ValidationError({"parameters": "nothing to do: give transition, fields or comment"})


def _last_success_start(context: HandlerContext) -> datetime | None:
    """Return when this task's last successful attempt started (the incremental cut-off)."""
    from scheduling.models import AttemptStatus, TaskResult

    return (
        TaskResult.objects.filter(task_id=context.task_id, status=AttemptStatus.DONE, started_at__isnull=False)
        .exclude(pk=context.result_id)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )


def run_first_attempt(context: HandlerContext) -> int:
    """Return the id of the first attempt of the run this attempt belongs to (retries follow it)."""
    from scheduling.models import TaskResult

    current = TaskResult.objects.filter(pk=context.result_id).values("pk", "attempt", "fire_time").first()
    if current is None:
        return context.result_id
    while current["attempt"] > 1:
        previous = (
            TaskResult.objects.filter(
                task_id=context.task_id,
                attempt=current["attempt"] - 1,
                fire_time=current["fire_time"],
                pk__lt=current["pk"],
            )
            .order_by("-pk")
            .values("pk", "attempt", "fire_time")
            .first()
        )
        if previous is None:
            break
        current = previous
    return int(current["pk"])


def checkpoint_dir(context: HandlerContext) -> Path:
    """Return where the run's export checkpoint lives (shared by its attempts, under storage.path)."""
    return Path(settings.STORAGE_DIR) / "checkpoints" / "jira" / context.task_id / str(run_first_attempt(context))


def seconds_left(context: HandlerContext) -> float | None:
    """Return how long this attempt may still run (its task's timeout_seconds from its start)."""
    from scheduling.engine import clock
    from scheduling.models import TaskResult

    row = TaskResult.objects.filter(pk=context.result_id).values("started_at", "task__timeout_seconds").first()
    if row is None or row["started_at"] is None:
        return None
    timeout = row["task__timeout_seconds"] or settings.TASKHUB.scheduler.default_timeout_seconds
    # started_at is on the scheduler's clock (the database's): measure from the same clock.
    return timeout - (clock.now() - row["started_at"]).total_seconds()


def _file_name(parameters: dict[str, Any], now: datetime) -> str:
    value = slugify(parameters["key_value"]) or "export"
    return f"jira-{parameters['key_type'].replace('_', '-')}-{value}-{now:%Y%m%d-%H%M%S}.xlsx"


def export(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Extract Jira issues (root ticket tree or project) into an Excel workbook, one sheet per environment."""
    since = default_since(_last_success_start(context)) if parameters.get("incremental") else None
    request = ExportRequest(
        envs=list(parameters["jira_envs"]),
        key_type=parameters["key_type"],
        key_value=parameters["key_value"].strip().upper(),
        user=parameters.get("user", ""),
        since=since,
        max_depth=parameters.get("max_depth", DEFAULT_MAX_DEPTH),
        max_issues=parameters.get("max_issues", DEFAULT_MAX_ISSUES),
        page_size=parameters.get("page_size", PAGE_SIZE),
    )
    now = timezone.now()
    path = context.artifact_dir / _file_name(parameters, now)
    checkpoint = None
    if request.key_type == "project":
        folder = checkpoint_dir(context)
        prune(folder.parent, keep=folder)
        checkpoint = Checkpoint(folder, fingerprint(request))
        if checkpoint.resumed:
            context.logger.info("resuming the export from the run's checkpoint")
    with attempt_deadline(seconds_left(context)):
        summary = export_issues(request, path, progress=context.progress, checkpoint=checkpoint)
    context.add_artifact(path)
    summary["workbook"] = context.artifacts[-1]
    summary["report"] = _copy_to_reports(path, context)
    summary["incremental"] = bool(parameters.get("incremental"))
    summary["user"] = request.user
    context.logger.info("exported %s issues to %s", summary["total"], path)
    return summary


def _copy_to_reports(path: Path, context: HandlerContext) -> str | None:
    """Put a copy of the workbook in storage.reports_path, named after the task and attempt."""
    target = Path(settings.REPORTS_DIR) / (
        f"{slugify(context.task_name)[:60] or 'task'}-{context.task_id[:8]}-attempt{context.attempt}-{path.name}"
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    except OSError as exc:
        # The attempt's artifact is the workbook of record; a full reports disk must not lose it.
        context.logger.warning("could not copy the workbook to %s: %s", target, exc)
        return None
    return str(target)


def update(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Transition Jira issues and set their fields (issues by keys or JQL); dry_run reports only."""
    request = UpdateRequest(
        env=parameters["jira_env"],
        keys=list(dict.fromkeys(key.upper() for key in parameters.get("keys", []))),
        jql=parameters.get("jql", ""),
        transition=parameters.get("transition", ""),
        fields=parameters.get("fields") or {},
        comment=parameters.get("comment", ""),
        dry_run=bool(parameters.get("dry_run")),
        max_issues=parameters.get("max_issues", 100),
    )
    with attempt_deadline(seconds_left(context)):
        return update_issues(request, progress=context.progress, logger=context.logger)


def register() -> None:
    registry.register(
        JIRA_TASK_EXP,
        export,
        schema=EXPORT_SCHEMA,
        description="Extract Jira issues (a root ticket's tree or a project) into an Excel workbook",
        check=_check_export,
    )
    registry.register(
        JIRA_TASK_UPDATE,
        update,
        schema=UPDATE_SCHEMA,
        description="Transition Jira issues and set fields (by keys or JQL), with a dry-run mode",
        check=_check_update,
    )
