"""Fixtures for the scheduling engine's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings


@pytest.fixture
def taskhub_section() -> Iterator[Callable[..., dict[str, Any]]]:
    """Override ``<section>.*`` settings for one test (in this process); every section restored afterwards.

    Returns the same values as ``TASKHUB_<SECTION>_<KEY>`` variables, for processes a test starts.
    """
    saved: dict[str, dict[str, Any]] = {}

    def override(name: str, **values: Any) -> dict[str, Any]:
        section = settings.TASKHUB[name]
        saved.setdefault(name, dict(section))
        section.update(values)
        return {f"TASKHUB_{name.upper()}_{key.upper()}": str(value) for key, value in values.items()}

    yield override
    for name, values in saved.items():
        settings.TASKHUB[name].clear()
        settings.TASKHUB[name].update(values)


@pytest.fixture
def scheduler_conf(taskhub_section: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Override scheduler.* settings for one test (in this process); restored afterwards."""
    return lambda **values: taskhub_section("scheduler", **values)
