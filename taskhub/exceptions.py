"""TaskHub's exception hierarchy: one base class, errors with a business meaning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class TaskHubError(Exception):
    """Base class of every error TaskHub raises on purpose."""


class ConfigError(TaskHubError):
    """A configuration value is missing or wrong; the message names the key."""


class ValidationError(TaskHubError):
    """Input breaks a domain rule; ``errors`` maps field names to messages."""

    def __init__(self, errors: Mapping[str, Sequence[str] | str]) -> None:
        self.errors = {field: [msg] if isinstance(msg, str) else list(msg) for field, msg in errors.items()}
        super().__init__("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in self.errors.items()))

    def tree(self) -> dict[str, Any]:
        """The errors with ``"field.part"`` keys nested (``{"field": {"part": [...]}}``), as DRF shows the
        errors of a nested object; a field that also has errors of its own keeps the dotted keys."""
        tree: dict[str, Any] = {}
        for field, messages in self.errors.items():
            head, dot, rest = field.partition(".")
            if dot and head not in self.errors:
                tree.setdefault(head, {})[rest] = messages
            else:
                tree[field] = messages
        return tree


class BulkValidationError(ValidationError):
    """Items of a list (one bulk create) break domain rules.

    ``items`` is aligned with the input: one ``{field: [messages]}`` per item, ``{}`` for an item that is
    fine. ``errors`` holds the same keyed ``"<index>.<field>"``; :meth:`tree` answers the bad items by index
    (``{"3": {"name": [...]}}``), the shape of DRF's ListSerializer errors (LIST_SERIALIZER_ERRORS_AS_DICT).
    """

    def __init__(self, items: Sequence[Mapping[str, Sequence[str] | str]]) -> None:
        self.items = [ValidationError(item).errors if item else {} for item in items]
        super().__init__({f"{i}.{field}": msgs for i, item in enumerate(self.items) for field, msgs in item.items()})

    def tree(self) -> dict[str, Any]:
        """The errors of each bad item under its index, nested as :meth:`ValidationError.tree` nests them."""
        return {str(i): ValidationError(item).tree() for i, item in enumerate(self.items) if item}


class IllegalTransition(TaskHubError):
    """A status change that the lifecycle does not allow."""

    def __init__(self, what: str, current: str, target: str) -> None:
        self.current, self.target = current, target
        super().__init__(f"{what} cannot go from {current} to {target}")


class ConflictError(TaskHubError):
    """An operation does not fit the current state of a task (e.g. cancel a DONE task)."""

    def __init__(self, message: str, *, current_status: str | None = None) -> None:
        self.current_status = current_status
        super().__init__(message)


class HandlerError(TaskHubError):
    """A task handler failed; transient unless ``permanent`` is set."""

    permanent = False


class PermanentHandlerError(HandlerError):
    """A handler failure that retrying cannot heal (a 401, a missing project); skips retries."""

    permanent = True


class IntegrationError(HandlerError):
    """A call to an external system failed; carries the system, operation and HTTP status."""

    # Set by the Jira error mapping (integrations/jira/errors.py), read by its client's retry and
    # missing-key handling: how long a 429 asks to wait, which keys a 400 says do not exist.
    retry_after: float | None = None
    unknown_keys: Sequence[str] = ()

    def __init__(
        self,
        system: str,
        operation: str,
        message: str,
        *,
        status: int | None = None,
        permanent: bool | None = None,
    ) -> None:
        self.system, self.operation, self.status = system, operation, status
        if permanent is None:
            # 4xx other than 408/429 will not heal by retrying; 5xx, 429, timeouts may.
            permanent = status is not None and 400 <= status < 500 and status not in (408, 429)
        self.permanent = permanent
        where = f"{system} {operation}" + (f" (HTTP {status})" if status else "")
        super().__init__(f"{where}: {message}")
