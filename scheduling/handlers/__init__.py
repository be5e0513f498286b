"""The handler registry: a tag such as ``JIRA_TASK_EXP`` names the code that runs a task.

A handler is a callable ``handler(parameters, context) -> JSON-able result``. Each
integration registers its handlers in its ``AppConfig.ready()``::

    registry.register("JIRA_TASK_EXP", export_issues, schema=EXPORT_SCHEMA,
                      description="Extract Jira issues into an Excel workbook")

Parameters are checked against the JSON schema when a task is created or edited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jsonschema
from django.conf import settings

from taskhub.exceptions import ValidationError


class ProgressCallback(Protocol):
    def __call__(self, percent: int | float | None, message: str = "") -> None: ...


@dataclass
class HandlerContext:
    """What a running handler may use besides its parameters."""

    task_id: str
    task_name: str
    attempt: int
    result_id: int
    logger: logging.Logger
    progress: ProgressCallback
    artifacts: list[str] = field(default_factory=list)

    @property
    def artifact_dir(self) -> Path:
        """A folder under storage.path for files this attempt produces."""
        folder = Path(settings.STORAGE_DIR) / "artifacts" / self.task_id / str(self.result_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add_artifact(self, path: Path) -> None:
        """Record a produced file so the admin and the API can offer it for download."""
        self.artifacts.append(str(Path(path).resolve().relative_to(Path(settings.STORAGE_DIR).resolve())))


Handler = Callable[[dict[str, Any], HandlerContext], Any]
# A check run after the schema, for rules JSON schema cannot say (e.g. "a configured Jira environment").
ExtraCheck = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class HandlerSpec:
    tag: str
    func: Handler
    schema: dict[str, Any]
    description: str
    check: ExtraCheck | None = None


class HandlerRegistry:
    """Map tags to handlers; validate a task's tags and parameters against them."""

    def __init__(self) -> None:
        self._handlers: dict[str, HandlerSpec] = {}
        # Built once per handler: a bulk create checks a thousand tasks' parameters against one schema.
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}

    def register(
        self,
        tag: str,
        func: Handler,
        *,
        schema: dict[str, Any] | None = None,
        description: str = "",
        check: ExtraCheck | None = None,
    ) -> None:
        schema = schema or {"type": "object"}
        jsonschema.Draft202012Validator.check_schema(schema)
        self._handlers[tag] = HandlerSpec(tag, func, schema, description or (func.__doc__ or "").strip(), check)
        self._validators[tag] = jsonschema.Draft202012Validator(schema)

    def unregister(self, tag: str) -> None:
        self._handlers.pop(tag, None)
        self._validators.pop(tag, None)

    def get(self, tag: str) -> HandlerSpec:
        return self._handlers[tag]

    def __contains__(self, tag: object) -> bool:
        return tag in self._handlers

    def all(self) -> list[HandlerSpec]:
        return [self._handlers[tag] for tag in sorted(self._handlers)]

    def handler_tag(self, tags: Iterable[str]) -> str:
        """Return the one registered handler tag among ``tags``; refuse none or several."""
        found = sorted({tag for tag in tags if tag in self._handlers})
        known = ", ".join(sorted(self._handlers)) or "(none registered)"
        if not found:
            raise ValidationError({"tags": f"must include exactly one handler tag; known handler tags: {known}"})
        if len(found) > 1:
            raise ValidationError(
                {"tags": f"must include exactly one handler tag, got {len(found)}: {', '.join(found)}"}
            )
        return found[0]

    def validate_parameters(self, tag: str, parameters: Any) -> None:
        """Check parameters against the handler's schema; errors name the parameter path."""
        spec = self._handlers[tag]
        validator = self._validators.get(tag) or jsonschema.Draft202012Validator(spec.schema)
        errors = sorted(validator.iter_errors(parameters), key=lambda e: list(e.absolute_path))
        if errors:
            messages = []
            for error in errors[:10]:
                where = ".".join(str(part) for part in error.absolute_path)
                messages.append(f"{where}: {error.message}" if where else error.message)
            raise ValidationError({"parameters": messages})
        if spec.check is not None:
            spec.check(parameters)


registry = HandlerRegistry()
