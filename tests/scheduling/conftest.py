"""Fixtures for the scheduling engine's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings


@pytest.fixture
def scheduler_conf() -> Iterator[Callable[..., dict[str, Any]]]:
    """Override scheduler.* settings for one test (in this process); restored afterwards."""
    section = settings.TASKHUB["scheduler"]
    saved = dict(section)

    def override(**values: Any) -> dict[str, Any]:
        section.update(values)
        return {f"TASKHUB_SCHEDULER_{key.upper()}": str(value) for key, value in values.items()}

    yield override
    section.clear()
    section.update(saved)
