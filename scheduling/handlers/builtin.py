"""Handlers that ship with the scheduling core: ``HTTP_REQUEST``."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urljoin

import requests

from scheduling.handlers import HandlerContext, registry
from scheduling.handlers.http_guard import (  # noqa: F401 - address_allowed and guarded_session are imported from here
    AddressRefused,
    UrlRefused,
    address_allowed,
    check_url,
    guarded_session,
    refuse_characters,
)
from taskhub import scrubbing
from taskhub.exceptions import IntegrationError, PermanentHandlerError, ValidationError

HTTP_REQUEST = "HTTP_REQUEST"
MAX_REDIRECTS = 5
BODY_EXCERPT = 2000
#: Bytes of a response body read at most (the excerpt is cut from them after scrubbing).
BODY_READ = 1 << 20

HTTP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], "default": "GET"},
        "url": {"type": "string", "minLength": 1, "maxLength": 2000},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 50},
        "json": {"description": "JSON body to send"},
        "expected_status": {
            "type": "array",
            "items": {"type": "integer", "minimum": 100, "maximum": 599},
            "minItems": 1,
            "default": [200, 201, 202, 204],
        },
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300, "default": 30},
    },
}


# The SSRF guard (one URL parser, the allow-list, the connect-time check) lives in scheduling.handlers.http_guard.


def _check_parameters(parameters: dict[str, Any]) -> None:
    check_url(parameters["url"])


def _next_url(url: str, location: str) -> str:
    """Resolve a redirect's Location; refuse in it what the guard refuses in a task's URL."""
    try:
        refuse_characters(location, "redirect's Location")  # urljoin would drop tabs and newlines unseen
    except UrlRefused as exc:
        raise PermanentHandlerError(f"redirect refused: Location {scrubbing.scrub(location)!r}: {exc}") from None
    return urljoin(url, location)


def _read_body(response: requests.Response) -> tuple[str, bool]:
    """Return at most BODY_READ bytes of the body as text, and whether that is all of it."""
    data = response.raw.read(BODY_READ + 1, decode_content=True) or b""
    response.close()
    return data[:BODY_READ].decode(response.encoding or "utf-8", "replace"), len(data) <= BODY_READ


def http_request(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Call an HTTP endpoint on an allowed host; an unexpected status fails the attempt."""
    method = parameters.get("method", "GET")
    url = parameters["url"]
    expected = parameters.get("expected_status") or [200, 201, 202, 204]
    started = time.monotonic()
    session = guarded_session()
    for _ in range(MAX_REDIRECTS + 1):
        try:
            target = check_url(url)  # the URL exactly as the client will send it
        except ValidationError as exc:
            raise PermanentHandlerError(f"redirect refused: {exc}") from None
        request = requests.Request(
            method, target.url, headers=parameters.get("headers") or {}, json=parameters.get("json")
        )
        prepared = session.prepare_request(request)
        if prepared.url != target.url:  # requests re-reads it: it must come out the same
            raise PermanentHandlerError(f"{method}: the URL changes when prepared again: refused as ambiguous")
        url = target.url
        try:
            response = session.send(prepared, timeout=parameters.get("timeout", 30), allow_redirects=False, stream=True)
        except AddressRefused as exc:
            raise PermanentHandlerError(f"{method} {url} refused: {exc}") from None
        except requests.Timeout:
            raise IntegrationError("HTTP", f"{method} {url}", "timed out") from None
        except requests.RequestException as exc:
            raise IntegrationError("HTTP", f"{method} {url}", f"connection failed ({exc.__class__.__name__})") from None
        if response.is_redirect and "location" in response.headers:
            response.close()
            url = _next_url(url, response.headers["location"])
            if response.status_code in (301, 302, 303) and method != "HEAD":
                method = "GET"
            continue
        break
    else:
        raise PermanentHandlerError(f"more than {MAX_REDIRECTS} redirects from {parameters['url']}")
    text, complete = _read_body(response) if method != "HEAD" else ("", True)
    # Scrubbed before it is cut, so that no part of a secret the server echoes survives the cut.
    body = scrubbing.cut(text, BODY_EXCERPT, complete=complete)
    summary = {
        "status": response.status_code,
        "url": scrubbing.scrub(url),
        "duration": round(time.monotonic() - started, 4),
        "body": body,
    }
    if response.status_code not in expected:
        raise IntegrationError(
            "HTTP",
            f"{method} {summary['url']}",
            f"unexpected status {response.status_code} (expected {', '.join(map(str, expected))}); "
            f"body: {body[:200]!r}",
            status=response.status_code,
            permanent=False,
        )
    context.logger.info("%s %s -> %s", method, summary["url"], response.status_code)
    return summary


def register() -> None:
    registry.register(
        HTTP_REQUEST,
        http_request,
        schema=HTTP_SCHEMA,
        description="Call an HTTP endpoint on a host listed in http.allowed_hosts",
        check=_check_parameters,
    )
