"""Fixtures that start the fake Confluence and Mattermost servers and point the configuration at them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from tests.fakes.confluence_server import FakeConfluence
from tests.fakes.mattermost_server import FakeMattermost

MAIN_PAGE_ID = "123456"
REPORT_PAGE_ID = "789012"


@pytest.fixture
def fake_confluence(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConfluence]:
    """A running fake Confluence with a main page and the report page; confluence.* points at it."""
    server = FakeConfluence(username="taskhub-bot", password="s3cret").start()
    server.add_page(MAIN_PAGE_ID, "Operations", space="OPS")
    server.add_page(REPORT_PAGE_ID, "TaskHub task results", space="OPS", parent=MAIN_PAGE_ID)
    confluence = settings.TASKHUB["confluence"]
    for key, value in {
        "url": server.url,
        "username": "taskhub-bot",
        "password": "s3cret",
        "token": "",
        "main_page_id": MAIN_PAGE_ID,
        "verify_ssl": True,
        "timeout": 5.0,
    }.items():
        monkeypatch.setitem(confluence, key, value)
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "page_id", REPORT_PAGE_ID)
    yield server
    server.stop()


@pytest.fixture
def fake_mattermost(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMattermost]:
    """A running fake Mattermost webhook; mattermost.webhook_url points at it."""
    server = FakeMattermost().start()
    monkeypatch.setitem(settings.TASKHUB["mattermost"], "webhook_url", server.webhook_url)
    monkeypatch.setitem(settings.TASKHUB["mattermost"], "channel", "ops")
    yield server
    server.stop()


CLOUD_EMAIL, CLOUD_API_TOKEN = "taskhub-bot@acme.example", "ATATT3x-confluence-token"


@pytest.fixture
def fake_confluence_cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConfluence]:
    """A running fake Confluence Cloud (v2 pages API under /wiki); confluence.* points at its site root."""
    server = FakeConfluence(cloud=True, email=CLOUD_EMAIL, api_token=CLOUD_API_TOKEN).start()
    server.add_page(MAIN_PAGE_ID, "Operations", space="OPS")
    server.add_page(REPORT_PAGE_ID, "TaskHub task results", space="OPS", parent=MAIN_PAGE_ID)
    server.add_page("555", "Reports home", space="REPORTS")
    confluence = settings.TASKHUB["confluence"]
    for key, value in {
        "url": server.url,  # the site root: TaskHub adds /wiki
        "deployment": "auto",
        "username": "",
        "password": "",
        "token": "",
        "email": CLOUD_EMAIL,
        "api_token": CLOUD_API_TOKEN,
        "space_key": "",
        "main_page_id": MAIN_PAGE_ID,
        "verify_ssl": True,
        "timeout": 5.0,
    }.items():
        monkeypatch.setitem(confluence, key, value)
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "page_id", REPORT_PAGE_ID)
    yield server
    server.stop()
