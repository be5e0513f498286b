"""Reporting's Confluence channel: task results on the report page, from a Django template (storage format).

The page is named by reporting.confluence (page_id, title, template); it is read, saved, found or
created through the integration's client (integrations.confluence.client).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.template import TemplateDoesNotExist
from django.template.loader import select_template

from integrations.confluence.client import SYSTEM, ConfluenceClient, Page, VersionConflict
from taskhub.exceptions import IntegrationError

logger = logging.getLogger(__name__)

#: Saves attempted after a version conflict before giving up until the next report.
CONFLICT_RETRIES = 3


def template_names(name: str) -> list[str]:
    """Return where a configured template name may live: as given, or under templates/reporting/."""
    if "/" in name or "." in name:
        return [name]
    return [f"reporting/{name}.xml", f"{name}.html", f"{name}.xml"]


def render_page(context: dict[str, Any]) -> str:
    """Render reporting.confluence.template with ``context`` (autoescaped: values show as text)."""
    name = settings.TASKHUB.reporting.confluence.template
    try:
        template = select_template(template_names(name))
    except TemplateDoesNotExist:
        tried = ", ".join(template_names(name))
        raise IntegrationError(
            SYSTEM, "render page", f"reporting.confluence.template {name!r} not found (tried {tried})", permanent=True
        ) from None
    return template.render(context).strip()


def report_page_id() -> str:
    """Return reporting.confluence.page_id, or the seed's confluence.task_result_page_id when it is empty."""
    config = settings.TASKHUB
    return str(config.reporting.confluence.page_id or config.confluence.task_result_page_id).strip()


def page_publish(*, body: str, client: ConfluenceClient | None = None) -> Page:
    """Save ``body`` on page reporting.confluence.page_id, creating it under confluence.main_page_id if missing.

    Steps: read the page (body, version); save as the next version; on a version
    conflict (someone saved in between) read again and retry, a few times.
    """
    client = client or ConfluenceClient()
    page_id = report_page_id()
    for _ in range(CONFLICT_RETRIES + 1):
        page = client.get_page(page_id) if page_id else None
        if page is None:
            page, created = _page_for_missing(client, page_id, body)
            if created:
                return page
        try:
            return client.update_page(page, body)
        except VersionConflict:
            logger.info("Confluence page %s changed while we saved it; reading it again", page.id)
    raise IntegrationError(
        SYSTEM, f"update page {page_id}", f"version conflict {CONFLICT_RETRIES + 1} times in a row", status=409
    )


def _page_for_missing(client: ConfluenceClient, page_id: str, body: str) -> tuple[Page, bool]:
    """Find the report page by title in the main page's space, or create it there with ``body``."""
    parent_id = str(settings.TASKHUB.confluence.main_page_id).strip()
    title = settings.TASKHUB.reporting.confluence.title or "TaskHub task results"
    page_id = page_id or "(not set)"
    parent = client.get_page(parent_id) if parent_id else None
    if parent is None:
        raise IntegrationError(
            SYSTEM,
            f"get page {page_id or '(none)'}",
            f"reporting.confluence.page_id {page_id!r} does not exist and confluence.main_page_id {parent_id!r} "
            "(where it would be created) does not exist either",
            status=404,
        )
    # Cloud: the space by id, from confluence.space_key (else the main page's own space).
    space = parent.space
    if client.cloud:
        space = client.space_id(client.space_key) if client.space_key else parent.space_id
    existing = client.find_page(space, title)
    if existing is not None:
        logger.warning(
            "Confluence page %s not found; reporting to page %s (%r). Set reporting.confluence.page_id: %s",
            page_id,
            existing.id,
            title,
            existing.id,
        )
        return existing, False
    page = client.create_page(space=space, title=title, body=body, parent_id=parent.id)
    logger.warning(
        "Confluence page %s not found; created page %s (%r) under %s. Set reporting.confluence.page_id: %s",
        page_id,
        page.id,
        title,
        parent.id,
        page.id,
    )
    return page, True
