"""drf-spectacular hooks for the OpenAPI document."""

from __future__ import annotations

from typing import Any


def strip_trailing_slashes(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """List paths as /tasks rather than /tasks/: both work, and the seed's table names them so."""
    result["paths"] = {(path.rstrip("/") or "/"): operations for path, operations in result.get("paths", {}).items()}
    return result
