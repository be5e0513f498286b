"""Handlers that ship with the scheduling core: ``HTTP_REQUEST``."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings

from scheduling.handlers import HandlerContext, registry
from taskhub.exceptions import IntegrationError, PermanentHandlerError, ValidationError

HTTP_REQUEST = "HTTP_REQUEST"
MAX_REDIRECTS = 5
BODY_EXCERPT = 2000

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


def check_url(url: str) -> None:
    """Refuse non-HTTP schemes and hosts not listed in http.allowed_hosts."""
    parts = urlsplit(url)
    allowed = settings.TASKHUB["http"]["allowed_hosts"]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"parameters": f"url: expected an http:// or https:// URL, got {url!r}"})
    host = parts.hostname.lower()
    if host not in {h.lower() for h in allowed}:
        listed = ", ".join(allowed) or "none configured"
        raise ValidationError({"parameters": f"url: host {host!r} is not in http.allowed_hosts (allowed: {listed})"})


def _check_parameters(parameters: dict[str, Any]) -> None:
    check_url(parameters["url"])


def http_request(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Call an HTTP endpoint on an allowed host; an unexpected status fails the attempt."""
    method = parameters.get("method", "GET")
    url = parameters["url"]
    expected = parameters.get("expected_status") or [200, 201, 202, 204]
    started = time.monotonic()
    session = requests.Session()
    session.trust_env = False  # no proxies from the environment: the allow-list is the only route
    for _ in range(MAX_REDIRECTS + 1):
        try:
            check_url(url)
        except ValidationError as exc:
            raise PermanentHandlerError(f"redirect refused: {exc}") from None
        try:
            response = session.request(
                method,
                url,
                headers=parameters.get("headers") or {},
                json=parameters.get("json"),
                timeout=parameters.get("timeout", 30),
                allow_redirects=False,
            )
        except requests.Timeout:
            raise IntegrationError("HTTP", f"{method} {url}", "timed out") from None
        except requests.RequestException as exc:
            raise IntegrationError("HTTP", f"{method} {url}", f"connection failed ({exc.__class__.__name__})") from None
        if response.is_redirect and "location" in response.headers:
            url = urljoin(url, response.headers["location"])
            if response.status_code in (301, 302, 303) and method != "HEAD":
                method = "GET"
            continue
        break
    else:
        raise PermanentHandlerError(f"more than {MAX_REDIRECTS} redirects from {parameters['url']}")
    body = response.text[:BODY_EXCERPT] if method != "HEAD" else ""
    summary = {
        "status": response.status_code,
        "url": url,
        "duration": round(time.monotonic() - started, 4),
        "body": body,
    }
    if response.status_code not in expected:
        raise IntegrationError(
            "HTTP",
            f"{method} {url}",
            f"unexpected status {response.status_code} (expected {', '.join(map(str, expected))}); body: {body[:200]!r}",
            status=response.status_code,
            permanent=False,
        )
    context.logger.info("%s %s -> %s", method, url, response.status_code)
    return summary


def register() -> None:
    registry.register(
        HTTP_REQUEST,
        http_request,
        schema=HTTP_SCHEMA,
        description="Call an HTTP endpoint on a host listed in http.allowed_hosts",
        check=_check_parameters,
    )
