"""Stop a TaskHub entry point with one clear line when the configuration is wrong."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from taskhub.exceptions import ConfigError

T = TypeVar("T")


def fail(error: ConfigError) -> NoReturn:
    """Print the configuration error as one line and exit with status 2."""
    # One line even if a value or key carried a line break (e.g. a quoted YAML key).
    message = " ".join(str(error).splitlines())
    sys.stderr.write(f"TaskHub configuration error: {message}\n")
    raise SystemExit(2)


def guarded(entry: Callable[[], T]) -> T:
    """Run ``entry``; a ConfigError raised while loading settings ends the process cleanly."""
    try:
        return entry()
    except ConfigError as error:
        fail(error)
