"""The one seam to Mattermost: an incoming-webhook POST with a timeout, errors made typed.

The webhook URL is a secret (anyone holding it can post), so it never appears in
an error message or a log line; errors name the host only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings

from taskhub import scrubbing
from taskhub.exceptions import IntegrationError

SYSTEM = "Mattermost"
TIMEOUT = 10.0
#: Mattermost posts hold at most 16383 characters; longer webhook texts are split into several posts.
MAX_TEXT = 16_000


def post_message(
    text: str,
    *,
    channel: str | None = None,
    username: str | None = None,
    webhook_url: str | None = None,
    timeout: float = TIMEOUT,
) -> None:
    """Post ``text`` (Mattermost markdown) through an incoming webhook; raise IntegrationError on failure.

    A channel listed in mattermost.webhooks is posted to through its own webhook;
    any other channel through mattermost.webhook_url, naming the channel in the payload.
    """
    config = settings.TASKHUB.mattermost
    url = webhook_url or config.webhook_url
    own = config.webhooks.get(channel or config.channel)
    if own and not webhook_url:
        url, channel = own, None  # that webhook posts to its own channel
    elif channel is None:
        channel = config.channel
    if not url:
        raise IntegrationError(
            SYSTEM,
            "post message",
            "mattermost.webhook_url is not configured (config.yaml or TASKHUB_MATTERMOST_WEBHOOK_URL)",
            permanent=True,
        )
    payload: dict[str, Any] = {"text": text[:MAX_TEXT]}
    if channel:
        payload["channel"] = channel
    if username or config.username:
        payload["username"] = username or config.username
    host = urlsplit(url).hostname or "?"
    operation = f"post message to {host}"
    try:
        response = requests.post(url, json=payload, timeout=timeout)
    except requests.Timeout:
        raise IntegrationError(SYSTEM, operation, f"timed out after {timeout:g} s") from None
    except requests.RequestException as exc:
        raise IntegrationError(SYSTEM, operation, f"connection failed ({exc.__class__.__name__})") from None
    if response.status_code != 200:
        raise IntegrationError(SYSTEM, operation, _error_text(response), status=response.status_code)


def _error_text(response: requests.Response) -> str:
    """Return Mattermost's own explanation (its JSON ``message``), else a short body excerpt."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("message"):
        return scrubbing.cut(str(data["message"]), 300)
    return scrubbing.cut(" ".join(response.text.split()), 300) or f"HTTP {response.status_code}"
