"""The one seam to Confluence: atlassian-python-api with a timeout, and our typed errors.

Library and HTTP errors become :class:`IntegrationError` (system ``Confluence``,
the operation, the HTTP status); 4xx other than 408/429 are permanent. A version
conflict (409) becomes :class:`VersionConflict` so the caller can re-read and retry.

Server / Data Center: the v1 content API (``Confluence``). Cloud, where the v1 write
endpoints are gone (410): the v2 pages API through ``ConfluenceV2`` at the site's
``/wiki``, with e-mail + API token as HTTP Basic; spaces by id, ``version.number`` + 1.
The library's v2 ``create_page`` / ``update_page`` send the body nested without its
``representation``, ``update_page`` leaves out the required ``status`` unless given and
stamps every version "Updated via Python API"; pages are written here with the body
Atlassian documents (``{"representation": "storage", "value": ...}``) through the same
client's session and endpoints. ``deployment: auto`` means Cloud when the credentials
are an e-mail + API token or the host is ``*.atlassian.net`` (Confluence has no
serverInfo to ask).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from atlassian import Confluence, ConfluenceV2
from atlassian.errors import ApiError
from django.conf import settings

from taskhub import scrubbing
from taskhub.config import ConfluenceSettings
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
    space_id: str = ""  # Cloud (v2) names spaces by id


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if response is None and isinstance(exc, ApiError):
        response = getattr(exc.reason, "response", None)
    return getattr(response, "status_code", None)


def _explain(status: int | None, operation: str, exc: BaseException, cloud: bool = False) -> str:
    if status == 401 and cloud:
        return (
            "authentication failed: check confluence.email and confluence.api_token (TASKHUB_CONFLUENCE_API_TOKEN); "
            "Confluence Cloud takes the account's e-mail with an API token"
        )
    if status == 401:
        return "authentication failed: check confluence.username and confluence.password or confluence.token"
    if status == 410:
        return "this Confluence API was removed (Confluence Cloud); set confluence.deployment to cloud"
    if status == 403:
        return "permission denied: the Confluence user may not do this (space or page permissions)"
    if status == 404:
        return "not found (or not visible to the Confluence user)"
    text = scrubbing.cut(" ".join(str(exc).split()), 300)
    return text or exc.__class__.__name__


class ConfluenceClient:
    """Read, create and update pages in storage format through the real atlassian client."""

    def __init__(self, config: ConfluenceSettings | None = None) -> None:
        config = config or settings.TASKHUB.confluence
        if not config.url:
            raise IntegrationError(SYSTEM, "connect", "confluence.url is not configured", permanent=True)
        cloud_credentials = bool(config.api_token)
        deployment = config.deployment or "auto"
        host = (urlsplit(config.url).hostname or "").lower()
        self.cloud = deployment == "cloud" or (
            deployment == "auto" and (cloud_credentials or host.endswith(".atlassian.net"))
        )
        self.space_key = str(config.space_key or "").strip()
        if cloud_credentials:
            auth: dict[str, Any] = {"username": config.email or "", "password": config.api_token}
        elif config.token:
            auth = {"token": config.token}
        else:
            auth = {"username": config.username, "password": config.password}
        self.url = config.url.rstrip("/")
        options: dict[str, Any] = {
            "verify_ssl": config.verify_ssl,
            # The library truncates the timeout to whole seconds; never let 0.5 become "no wait at all".
            "timeout": max(1, math.ceil(config.timeout)),
            **auth,
        }
        if self.cloud:
            # The site root is configured; Confluence Cloud lives under /wiki.
            site = self.url[: -len("/wiki")] if self.url.endswith("/wiki") else self.url
            with warnings.catch_warnings():
                # It warns at every construction that v1 methods are deprecated; only v2 ones are called here.
                warnings.simplefilter("ignore", DeprecationWarning)
                self.api: Any = ConfluenceV2(url=f"{site}/wiki", cloud=True, **options)
        else:
            self.api = Confluence(url=self.url, **options)

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
            raise IntegrationError(
                SYSTEM, operation, _explain(status, operation, exc, self.cloud), status=status
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            # A proxy's HTML page instead of JSON, or JSON without the fields we need.
            raise IntegrationError(SYSTEM, operation, f"unexpected answer ({exc.__class__.__name__}: {exc})") from None

    def get_page(self, page_id: str) -> Page | None:
        """Return the page with its body and version, or None when it does not exist."""
        operation = f"get page {page_id}"
        try:
            with self._call(operation):
                if self.cloud:
                    data = self.api.get_page_by_id(page_id, body_format="storage")
                else:
                    data = self.api.get_page_by_id(page_id, expand="body.storage,version,space")
        except IntegrationError as exc:
            if exc.status == 404:
                return None
            raise
        with self._call(operation):
            return _page(data)

    def space_id(self, key: str) -> str:
        """Return the id of the space with key ``key`` (Cloud's v2 API names spaces by id)."""
        with self._call(f"find space {key}"):
            spaces = self.api.get_spaces(keys=[key], limit=1)
        if not spaces:
            raise IntegrationError(
                SYSTEM, f"find space {key}", f"no space with key {key!r} (confluence.space_key)", permanent=True
            )
        return str(spaces[0]["id"])

    def find_page(self, space: str, title: str) -> Page | None:
        """Return the page titled ``title`` in ``space`` (a key on Server, an id on Cloud), or None."""
        with self._call(f"find page {title!r} in space {space}"):
            if self.cloud:
                found = self.api.get_pages(space_id=space, title=title, status="current", body_format="storage")
                return _page(found[0]) if found else None
            data = self.api.get_page_by_title(space, title, expand="body.storage,version,space")
            if isinstance(data, dict) and "results" in data:
                data = data["results"][0] if data["results"] else None
            return _page(data) if data else None

    def update_page(self, page: Page, body: str, *, title: str | None = None) -> Page:
        """Save ``body`` as the version after ``page.version``; raise VersionConflict if it moved on."""
        if self.cloud:
            data: dict[str, Any] = {
                "id": page.id,
                "status": "current",
                "title": title or page.title,
                "version": {"number": page.version + 1, "message": "TaskHub report"},
                "body": {"representation": "storage", "value": body},
            }
            with self._call(f"update page {page.id}"):
                return _page(self.api.put(self.api.get_endpoint("page_by_id", id=page.id), data=data))
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
        """Create a page under ``parent_id`` in ``space`` (a key on Server, an id on Cloud)."""
        with self._call(f"create page {title!r} under {parent_id}"):
            if self.cloud:
                data = {
                    "spaceId": space,
                    "status": "current",
                    "title": title,
                    "parentId": parent_id,
                    "body": {"representation": "storage", "value": body},
                }
                return _page(self.api.post(self.api.get_endpoint("page"), data=data))
            return _page(self.api.create_page(space, title, body, parent_id=parent_id, representation="storage"))


def _page(data: dict[str, Any]) -> Page:
    """Return a page from v1 (space.key) or v2 (spaceId) JSON; both nest the body under body.storage."""
    return Page(
        id=str(data["id"]),
        title=data.get("title", ""),
        space=(data.get("space") or {}).get("key", ""),
        version=int((data.get("version") or {}).get("number", 1)),
        body=((data.get("body") or {}).get("storage") or {}).get("value", ""),
        space_id=str(data.get("spaceId") or ""),
    )
