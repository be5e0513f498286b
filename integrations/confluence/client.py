"""The one seam to Confluence: atlassian-python-api with a timeout, and our typed errors.

Library and HTTP errors become :class:`IntegrationError` (system ``Confluence``,
the operation, the HTTP status); 4xx other than 408/429 are permanent. A version
conflict (409) becomes :class:`VersionConflict` so the caller can re-read and retry.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from atlassian import Confluence
from atlassian.errors import ApiError
from django.conf import settings

from taskhub import scrubbing
from taskhub.exceptions import IntegrationError

SYSTEM = "Confluence"


class VersionConflict(Exception):
    """Someone else saved the page since we read it (HTTP 409)."""


@dataclass(frozen=True)
class Page:
    """A Confluence page as we need it: id, title, space, version and storage-format body."""

    id: str
    title: str
    space: str
    version: int
    body: str


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if response is None and isinstance(exc, ApiError):
        response = getattr(exc.reason, "response", None)
    return getattr(response, "status_code", None)


def _explain(status: int | None, operation: str, exc: BaseException) -> str:
    if status == 401:
        return "authentication failed: check confluence.username and confluence.password or confluence.token"
    if status == 403:
        return "permission denied: the Confluence user may not do this (space or page permissions)"
    if status == 404:
        return "not found (or not visible to the Confluence user)"
    text = scrubbing.cut(" ".join(str(exc).split()), 300)
    return text or exc.__class__.__name__


class ConfluenceClient:
    """Read, create and update pages in storage format through the real atlassian client."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or settings.TASKHUB["confluence"]
        if not config["url"]:
            raise IntegrationError(SYSTEM, "connect", "confluence.url is not configured", permanent=True)
        auth: dict[str, Any] = {"token": config["token"]} if config["token"] else {}
        if not auth:
            auth = {"username": config["username"], "password": config["password"]}
        self.url = config["url"]
        self.api = Confluence(
            url=config["url"],
            verify_ssl=config["verify_ssl"],
            # The library truncates the timeout to whole seconds; never let 0.5 become "no wait at all".
            timeout=max(1, math.ceil(config["timeout"])),
            **auth,
        )

    @contextmanager
    def _call(self, operation: str) -> Iterator[None]:
        """Translate whatever the library raises into VersionConflict or IntegrationError."""
        try:
            yield
        except requests.Timeout:
            raise IntegrationError(SYSTEM, operation, "timed out (confluence.timeout)") from None
        except requests.ConnectionError as exc:
            raise IntegrationError(
                SYSTEM, operation, f"cannot connect to {self.url} ({exc.__class__.__name__})"
            ) from None
        except (requests.HTTPError, ApiError) as exc:
            status = _status(exc)
            if status == 409:
                raise VersionConflict(str(exc)) from None
            raise IntegrationError(SYSTEM, operation, _explain(status, operation, exc), status=status) from None
        except (ValueError, KeyError, TypeError) as exc:
            # A proxy's HTML page instead of JSON, or JSON without the fields we need.
            raise IntegrationError(SYSTEM, operation, f"unexpected answer ({exc.__class__.__name__}: {exc})") from None

    def get_page(self, page_id: str) -> Page | None:
        """Return the page with its body and version, or None when it does not exist."""
        operation = f"get page {page_id}"
        try:
            with self._call(operation):
                data = self.api.get_page_by_id(page_id, expand="body.storage,version,space")
        except IntegrationError as exc:
            if exc.status == 404:
                return None
            raise
        with self._call(operation):
            return _page(data)

    def find_page(self, space: str, title: str) -> Page | None:
        """Return the page titled ``title`` in ``space``, or None."""
        with self._call(f"find page {title!r} in space {space}"):
            data = self.api.get_page_by_title(space, title, expand="body.storage,version,space")
            if isinstance(data, dict) and "results" in data:
                data = data["results"][0] if data["results"] else None
            return _page(data) if data else None

    def update_page(self, page: Page, body: str, *, title: str | None = None) -> Page:
        """Save ``body`` as the version after ``page.version``; raise VersionConflict if it moved on."""
        data = {
            "id": page.id,
            "type": "page",
            "title": title or page.title,
            # A minor edit does not email the page's watchers on every report.
            "version": {"number": page.version + 1, "minorEdit": True},
            "body": {"storage": {"value": body, "representation": "storage"}},
        }
        with self._call(f"update page {page.id}"):
            return _page(self.api.put(f"rest/api/content/{page.id}", data=data))

    def create_page(self, *, space: str, title: str, body: str, parent_id: str) -> Page:
        """Create a page under ``parent_id``."""
        with self._call(f"create page {title!r} under {parent_id}"):
            return _page(self.api.create_page(space, title, body, parent_id=parent_id, representation="storage"))


def _page(data: dict[str, Any]) -> Page:
    return Page(
        id=str(data["id"]),
        title=data.get("title", ""),
        space=(data.get("space") or {}).get("key", ""),
        version=int((data.get("version") or {}).get("number", 1)),
        body=((data.get("body") or {}).get("storage") or {}).get("value", ""),
    )
