"""Turn what the ``jira`` library and ``requests`` raise into :class:`IntegrationError`.

Every error names the environment (system ``Jira <env>``), the operation and the
HTTP status. 401/403/404 and other 4xx are permanent (retrying cannot heal them);
5xx, 408, 429, timeouts and connection failures are transient, so the task's retry
policy decides (the message does not promise a retry: the last attempt has none left).
Messages say what to check, never a password or token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from django.utils import timezone
from jira.exceptions import JIRAError

from taskhub import scrubbing
from taskhub.config import env_name
from taskhub.exceptions import IntegrationError

MAX_TEXT = 300
MISSING_KEY = re.compile(r"An issue with key '([^']+)' does not exist", re.I)


def retry_after_seconds(value: str | None) -> float | None:
    """Return a Retry-After header's wait in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d{1,9}(\.\d{1,6})?", value):
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - timezone.now()).total_seconds())


def system_name(env: str) -> str:
    """Return the system label of an environment for error messages."""
    return f"Jira {env}"


def _jira_text(exc: JIRAError) -> str:
    """Return Jira's own explanation (errorMessages and field errors), without HTML pages."""
    response = getattr(exc, "response", None)
    data: Any = None
    if response is not None:
        try:
            data = response.json()
        except ValueError:
            data = None
    parts: list[str] = []
    if isinstance(data, dict):
        parts += [str(m) for m in data.get("errorMessages") or []]
        errors = data.get("errors") or {}
        if isinstance(errors, dict):
            parts += [f"{field}: {message}" for field, message in errors.items()]
    elif exc.text and "<html" not in str(exc.text).lower():
        parts.append(str(exc.text))
    return scrubbing.cut(" ".join(" ".join(parts).split()), MAX_TEXT)


def _credentials_hint(env: str, cloud: bool = False) -> str:
    prefix = env_name("jira", "environments", env, "")
    if cloud:
        return (
            f"check jira.environments.{env}.email and .api_token (environment variables {prefix}EMAIL / "
            f"{prefix}API_TOKEN): Jira Cloud takes the account's e-mail with an API token from "
            "id.atlassian.com, not a password or a Bearer token"
        )
    return (
        f"check jira.environments.{env}.username and .password, or .token "
        f"(environment variables {prefix}USERNAME / {prefix}PASSWORD / {prefix}TOKEN)"
    )


def explain(env: str, status: int | None, exc: JIRAError, cloud: bool = False) -> str:
    """Return a message a person can act on for an HTTP error status from Jira."""
    text = _jira_text(exc)
    if status == 401:
        return f"authentication failed: {_credentials_hint(env, cloud)}"
    if status == 403:
        denied = ""
        response = getattr(exc, "response", None)
        if response is not None and response.headers.get("X-Authentication-Denied-Reason"):
            # Jira Server locks an account behind a CAPTCHA after failed logins.
            denied = " (login denied: " + scrubbing.cut(response.headers["X-Authentication-Denied-Reason"], 100) + ")"
        return f"permission denied{denied}: the Jira user may not do this" + (f"; Jira says: {text}" if text else "")
    if status == 404:
        return "not found, or not visible to the Jira user" + (f"; Jira says: {text}" if text else "")
    if status == 410:
        return "this Jira API was removed (Jira Cloud); set the environment's deployment to cloud" + (
            f"; Jira says: {text}" if text else ""
        )
    if status == 429:
        response = getattr(exc, "response", None)
        after = response.headers.get("Retry-After") if response is not None else None
        wait = f" (Retry-After: {after[:20]} s)" if after else ""
        return f"rate limited by Jira{wait}, still after waiting it out within the attempt (transient)"
    if status is not None and status >= 500:
        return "Jira server error (transient)" + (f"; Jira says: {text}" if text else "")
    return text or f"request refused (HTTP {status})"


def _unknown_keys(exc: JIRAError) -> list[str]:
    """Return the issue keys a refused JQL names as unknown ("An issue with key 'X' does not exist ...")."""
    response = getattr(exc, "response", None)
    try:
        messages = (response.json() or {}).get("errorMessages") or [] if response is not None else []
    except ValueError:
        return []
    return [m.group(1) for m in (MISSING_KEY.search(str(message)) for message in messages) if m]


def translate(
    exc: BaseException, env: str, operation: str, *, url: str = "", timeout: float | None = None, cloud: bool = False
) -> IntegrationError:
    """Return the IntegrationError that stands for ``exc``."""
    system = system_name(env)
    if isinstance(exc, IntegrationError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        # A certificate that does not verify will not verify on the next attempt either.
        return IntegrationError(
            system,
            operation,
            f"TLS certificate of {url} not accepted; fix the certificate or set jira.environments.{env}.verify_ssl",
            permanent=True,
        )
    if isinstance(exc, requests.Timeout):
        limit = f" after {timeout:g} s" if timeout else ""
        return IntegrationError(system, operation, f"timed out{limit} (jira.environments.{env}.timeout)")
    if isinstance(exc, requests.ConnectionError):
        return IntegrationError(system, operation, f"cannot connect to {url} ({_reason(exc)})")
    if isinstance(exc, JIRAError):
        status = exc.status_code
        if status is None:
            return IntegrationError(system, operation, _jira_text(exc) or str(exc.text or "request failed"))
        error = IntegrationError(system, operation, explain(env, status, exc, cloud), status=status)
        response = getattr(exc, "response", None)
        # Read by the client seam: how long a 429 asks to wait, which keys a 400 says do not exist.
        error.retry_after = retry_after_seconds(response.headers.get("Retry-After")) if response is not None else None
        error.unknown_keys = _unknown_keys(exc) if status == 400 else []
        return error
    if isinstance(exc, requests.RequestException):
        return IntegrationError(system, operation, f"request failed ({exc.__class__.__name__})")
    # A proxy's HTML page instead of JSON, or JSON without the fields we read.
    return IntegrationError(
        system, operation, f"unexpected answer ({exc.__class__.__name__}: {scrubbing.cut(str(exc), 200)})"
    )


def _reason(exc: requests.ConnectionError) -> str:
    """Return the short cause of a connection error (refused, DNS, reset) without the URL noise."""
    text = str(exc)
    for pattern, label in (
        (r"Connection refused", "connection refused"),
        (r"Name or service not known|nodename nor servname|getaddrinfo failed", "host name not found"),
        (r"Connection reset|RemoteDisconnected|Connection aborted", "connection dropped by the server"),
    ):
        if re.search(pattern, text):
            return label
    return exc.__class__.__name__


@contextmanager
def jira_call(
    env: str, operation: str, *, url: str = "", timeout: float | None = None, cloud: bool = False
) -> Iterator[None]:
    """Run a block of Jira calls; whatever it raises leaves as an IntegrationError."""
    try:
        yield
    except IntegrationError:
        raise
    except (JIRAError, requests.RequestException, ValueError, KeyError, TypeError) as exc:
        raise translate(exc, env, operation, url=url, timeout=timeout, cloud=cloud) from None
