"""Incoming-webhook messages through requests against the fake Mattermost, and the NOTIFY_MATTERMOST handler."""

from __future__ import annotations

import json
import logging

import pytest
import requests
from django.conf import settings

from integrations.mattermost.client import post_message
from integrations.mattermost.handlers import NOTIFY_MATTERMOST
from scheduling import services
from scheduling.handlers import HandlerContext, registry
from taskhub.exceptions import IntegrationError, ValidationError


def test_message_is_posted_with_channel_and_username(fake_mattermost):
    post_message("**hello**")

    assert fake_mattermost.messages == [{"text": "**hello**", "channel": "ops", "username": "TaskHub"}]


def test_fake_refuses_bad_payloads_like_mattermost(fake_mattermost):
    no_text = requests.post(fake_mattermost.webhook_url, json={"channel": "ops"}, timeout=5)
    not_json = requests.post(fake_mattermost.webhook_url, data=b"{oops", timeout=5)
    wrong_hook = requests.post(fake_mattermost.url + "/hooks/nope", json={"text": "x"}, timeout=5)

    assert [r.status_code for r in (no_text, not_json, wrong_hook)] == [400, 400, 400]
    assert no_text.json()["id"] == "web.incoming_webhook.text.app_error"
    assert not_json.json()["id"] == "web.incoming_webhook.parse.app_error"
    assert fake_mattermost.messages == []


def test_bad_payload_becomes_a_permanent_error_with_mattermosts_reason(fake_mattermost):
    with pytest.raises(IntegrationError) as caught:
        post_message("")  # Mattermost refuses a message without text

    error = caught.value
    assert (error.system, error.status, error.permanent) == ("Mattermost", 400, True)
    assert "No text specified" in str(error)
    assert fake_mattermost.key not in str(error)  # the webhook URL is a secret


def test_server_down_is_a_transient_error(fake_mattermost):
    fake_mattermost.down = True

    with pytest.raises(IntegrationError) as caught:
        post_message("hi")

    assert caught.value.status == 503 and not caught.value.permanent


def test_unreachable_webhook_is_a_transient_error_without_the_url(fake_mattermost):
    fake_mattermost.stop()

    with pytest.raises(IntegrationError) as caught:
        post_message("hi")

    assert "connection failed" in str(caught.value) and fake_mattermost.key not in str(caught.value)
    assert not caught.value.permanent


def test_unconfigured_webhook_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(settings.TASKHUB["mattermost"], "webhook_url", "")

    with pytest.raises(IntegrationError, match="mattermost.webhook_url is not configured"):
        post_message("hi")


def _context() -> HandlerContext:
    return HandlerContext(
        task_id="t", task_name="notify", attempt=1, result_id=1, logger=logging.getLogger("t"), progress=lambda *a: None
    )


def test_notify_handler_posts_the_text_to_the_given_channel(fake_mattermost, make_task):
    task = make_task("notify", tags=[NOTIFY_MATTERMOST], parameters={"text": "Backup done", "channel": "backups"})

    result = registry.get(NOTIFY_MATTERMOST).func(task.parameters, _context())

    assert result == {"sent": True, "channel": "backups"}
    assert fake_mattermost.messages[-1]["text"] == "Backup done"
    assert fake_mattermost.messages[-1]["channel"] == "backups"


def test_notify_task_needs_text_and_a_configured_webhook(db, monkeypatch):
    with pytest.raises(ValidationError) as missing_text:
        services.task_create(data={"name": "n", "tags": [NOTIFY_MATTERMOST], "parameters": {"channel": "x"}})
    monkeypatch.setitem(settings.TASKHUB["mattermost"], "webhook_url", "")
    with pytest.raises(ValidationError) as no_webhook:
        services.task_create(data={"name": "n", "tags": [NOTIFY_MATTERMOST], "parameters": {"text": "hi"}})

    assert "text" in json.dumps(missing_text.value.errors)
    assert "mattermost.webhook_url" in json.dumps(no_webhook.value.errors)


def test_channel_with_its_own_webhook_is_posted_through_it(fake_mattermost, monkeypatch):
    other = type(fake_mattermost)().start()
    try:
        monkeypatch.setitem(settings.TASKHUB["mattermost"], "webhooks", {"backups": other.webhook_url})

        post_message("to backups", channel="backups")
        post_message("to ops")

        assert other.messages == [{"text": "to backups", "username": "TaskHub"}]
        assert fake_mattermost.messages == [{"text": "to ops", "channel": "ops", "username": "TaskHub"}]
        assert other.webhook_url in settings.TASKHUB.secret_values()
    finally:
        other.stop()


def test_webhooks_config_is_checked_and_hidden_in_errors():
    from taskhub import config
    from taskhub.exceptions import ConfigError

    parsed = config.parse({}, env={"TASKHUB_MATTERMOST_WEBHOOKS": "backups=https://mm.example.com/hooks/abc"})
    assert parsed["mattermost"]["webhooks"] == {"backups": "https://mm.example.com/hooks/abc"}
    assert "https://mm.example.com/hooks/abc" in parsed.secret_values()
    with pytest.raises(ConfigError) as caught:
        config.parse({"mattermost": {"webhooks": {"ops": "ftp://secret-hook"}}}, env={})
    assert "mattermost.webhooks" in str(caught.value) and "secret-hook" not in str(caught.value)
