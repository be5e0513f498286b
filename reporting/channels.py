"""Which report channels are configured: an unconfigured one is skipped (one line at start-up), never failed.

The default configuration (and a copy of config.yaml.example) lists ``confluence`` and ``mattermost``
in ``reporting.report_types`` without a Confluence account or a webhook; reporting to them could only
fail, every ``reporting.interval``, forever. A channel is configured when:

- confluence: ``confluence.url`` is set and is not an example placeholder (``*.example.com``,
  ``*.example``, ``*.invalid``: reserved names no server has), a credential is set (``confluence.password``
  or ``confluence.token`` on Server / Data Center, ``confluence.api_token`` on Cloud), and a report page is
  named (``reporting.confluence.page_id``, ``confluence.task_result_page_id``, or ``confluence.main_page_id``
  / ``confluence.space_key`` to create it under or in);
- mattermost: ``mattermost.webhook_url`` is set;
- email: ``email.to`` names a recipient.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from django.conf import settings

logger = logging.getLogger("reporting")

#: Reserved names (RFC 2606 / 6761): a URL there is the example's placeholder, not a server.
_PLACEHOLDER_SUFFIXES = (".example.com", ".example.org", ".example.net", ".example", ".invalid")


def _placeholder(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in {"example.com", "example.org", "example.net"} or host.endswith(_PLACEHOLDER_SUFFIXES)


def missing(channel: str) -> str:
    """Why ``channel`` cannot be reported to ("" when it is configured)."""
    config = settings.TASKHUB
    if channel == "confluence":
        confluence = config.confluence
        if not confluence.url:
            return "confluence.url is empty"
        if _placeholder(confluence.url):
            return f"confluence.url is still the example's {urlsplit(confluence.url).hostname}"
        if not (confluence.password or confluence.token or confluence.api_token):
            return "confluence.password, confluence.token and confluence.api_token are empty"
        page = config.reporting.confluence.page_id or confluence.task_result_page_id
        where = str(confluence.main_page_id).strip() or str(confluence.space_key).strip()
        if not (str(page).strip() or where):
            return "reporting.confluence.page_id, confluence.main_page_id and confluence.space_key are empty"
        return ""
    if channel == "mattermost":
        return "" if config.mattermost.webhook_url else "mattermost.webhook_url is empty"
    if channel == "email":
        return "" if config.email.to else "email.to is empty"
    return f"unknown channel {channel!r}"


def split() -> tuple[list[str], dict[str, str]]:
    """The channels of reporting.report_types: those to report to, and the skipped ones with why."""
    active: list[str] = []
    skipped: dict[str, str] = {}
    for channel in settings.TASKHUB.reporting.report_types:
        why = missing(channel)
        if why:
            skipped[channel] = why
        else:
            active.append(channel)
    return active, skipped


def summary() -> str:
    """One line: where reports go and which channels are skipped, and why."""
    active, skipped = split()
    if not active and not skipped:
        return "reporting: off (reporting.report_types is empty)"
    parts = [f"reporting to {', '.join(active)}" if active else "reporting: no configured channel"]
    if skipped:
        parts.append("skipped (not configured): " + "; ".join(f"{c}: {why}" for c, why in skipped.items()))
    return "; ".join(parts)


def log_startup() -> None:
    """Say once, at start-up, which channels are skipped (nothing when every listed one is configured)."""
    _, skipped = split()
    if skipped:
        logger.warning("%s", summary())
