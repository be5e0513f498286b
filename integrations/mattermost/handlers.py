"""Task handler ``NOTIFY_MATTERMOST``: post a message through the incoming webhook."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from integrations.mattermost.client import MAX_TEXT, post_message
from scheduling.handlers import HandlerContext, registry
from taskhub.exceptions import ValidationError

NOTIFY_MATTERMOST = "NOTIFY_MATTERMOST"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["text"],
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "description": "Markdown message"},
        "channel": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "A channel of mattermost.webhooks, or a channel the default webhook may post to",
        },
        "username": {"type": "string", "minLength": 1, "maxLength": 64},
    },
}


def _check(parameters: dict[str, Any]) -> None:
    config = settings.TASKHUB.mattermost
    if not config.webhook_url and parameters.get("channel") not in config.webhooks:
        raise ValidationError(
            {"parameters": "mattermost.webhook_url is not configured (config.yaml or TASKHUB_MATTERMOST_WEBHOOK_URL)"}
        )


def notify(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Post ``text`` to Mattermost (to ``channel`` if given, else the webhook's channel)."""
    post_message(parameters["text"], channel=parameters.get("channel"), username=parameters.get("username"))
    context.logger.info("posted %d characters to Mattermost", len(parameters["text"]))
    return {"sent": True, "channel": parameters.get("channel") or settings.TASKHUB.mattermost.channel}


def register() -> None:
    registry.register(
        NOTIFY_MATTERMOST,
        notify,
        schema=SCHEMA,
        description="Post a message to Mattermost through the incoming webhook",
        check=_check,
    )
