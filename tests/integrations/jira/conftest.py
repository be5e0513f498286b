"""Fixtures: two fake Jira servers (env1 with basic auth, env2 with a token) configured as environments."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.conf import settings

from tests.fakes.jira_server import FakeJira

ENV1, ENV2 = "env1.jira.com", "env2.jira.com"
CLOUD = "acme.atlassian.net"
USER, PASSWORD, TOKEN = "taskhub-bot", "s3cret-pass", "pat-0123456789"
EMAIL, API_TOKEN = "taskhub-bot@acme.example", "ATATT3xFfGF0-cloud-api-token"


def at(day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, minute, tzinfo=UTC)


def build_env1(jira: FakeJira) -> None:
    """Build the seed's PROJ-123 tree: an epic, a story, sub-tasks, a link cycle, a hidden and a foreign issue."""
    jira.add_issue(
        "PROJ-123",
        "Checkout revamp",
        type="Epic",
        status="In Progress",
        priority="High",
        assignee="alice",
        reporter="bob",
        created=at(1, 8, 30),
        updated=at(5, 17, 45),
        labels=["checkout", "q2"],
        components=["Web", "API"],
        fix_versions=["2.0"],
    )
    jira.add_issue(
        "PROJ-124",
        "Pay with a saved card",
        type="Story",
        epic="PROJ-123",
        assignee="bob",
        story_points=5.0,
        created=at(2),
        updated=at(6, 10, 15),
        description="As a shopper I pay with a card I saved before.\nNo card number is shown in full.",
    )
    jira.add_issue("PROJ-125", "Card form", type="Sub-task", parent="PROJ-124", assignee="bob", created=at(3))
    jira.add_issue(
        "PROJ-126", "Design review", type="Sub-task", parent="PROJ-123", status="Done", resolution="Done", created=at(3)
    )
    jira.add_issue(
        "PROJ-127", "Saved card shows twice", type="Bug", priority="Highest", assignee="carol", created=at(4)
    )
    jira.add_issue("PROJ-128", "Refactor payment client", type="Task", created=at(4))
    jira.add_issue("PROJ-129", "Secret security fix", type="Bug", created=at(4))
    jira.add_issue("PROJ-130", "Retire old checkout", type="Task", created=at(4))
    jira.add_issue("PROJ-200", "Unrelated chore", type="Task", created=at(7))
    jira.add_issue(
        "OTHER-1",
        "Copied from checkout",
        type="Task",
        priority=None,
        reporter=None,
        omit={"priority", "components", "fixVersions", "customfield_10106"},
        created=at(2),
    )
    jira.link("PROJ-124", "PROJ-127", "Blocks")  # PROJ-124 blocks PROJ-127
    jira.link("PROJ-127", "PROJ-128", "Relates")
    jira.link("PROJ-128", "PROJ-124", "Relates")  # closes the cycle 124 -> 127 -> 128 -> 124
    jira.link("PROJ-128", "PROJ-130", "Blocks")
    jira.link("PROJ-126", "PROJ-129", "Relates")
    jira.link("OTHER-1", "PROJ-123", "Cloners")  # OTHER-1 clones PROJ-123
    jira.hidden.add("PROJ-129")


def build_env2(jira: FakeJira) -> None:
    jira.add_issue(
        "PROJ-123",
        "Checkout revamp (staging)",
        type="Story",
        status="To Do",
        assignee="carol",
        created=at(10),
        updated=at(11),
    )
    jira.add_issue("PROJ-140", "Staging sub-task", type="Sub-task", parent="PROJ-123", created=at(10))


def configure(monkeypatch: pytest.MonkeyPatch, name: str, jira: FakeJira, **overrides: Any) -> None:
    """Point the Jira environment ``name`` at a fake server (a Cloud one with e-mail + API token)."""
    cloud = jira.cloud
    config = {
        "url": jira.url,
        "deployment": "auto",
        "username": jira.username if not (jira.token or cloud) else "",
        "password": jira.password if not (jira.token or cloud) else "",
        "token": jira.token if not cloud else "",
        "email": jira.email if cloud else "",
        "api_token": jira.api_token if cloud else "",
        "verify_ssl": True,
        "timeout": 5.0,
        **overrides,
    }
    monkeypatch.setitem(settings.TASKHUB["jira"]["environments"], name, config)


@pytest.fixture
def jira_servers() -> Iterator[Callable[..., FakeJira]]:
    """Start fake Jira servers on demand; all are stopped at the end."""
    started: list[FakeJira] = []

    def start(**options: Any) -> FakeJira:
        server = FakeJira(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def fake_jira(jira_servers: Callable[..., FakeJira], monkeypatch: pytest.MonkeyPatch) -> FakeJira:
    """env1.jira.com: the seed's PROJ tree behind basic auth."""
    server = jira_servers(username=USER, password=PASSWORD)
    build_env1(server)
    configure(monkeypatch, ENV1, server)
    return server


@pytest.fixture
def fake_jira2(jira_servers: Callable[..., FakeJira], monkeypatch: pytest.MonkeyPatch) -> FakeJira:
    """env2.jira.com: a second Jira behind a personal access token."""
    server = jira_servers(username=USER, password="", token=TOKEN)
    build_env2(server)
    configure(monkeypatch, ENV2, server)
    return server


@pytest.fixture
def fake_cloud(jira_servers: Callable[..., FakeJira], monkeypatch: pytest.MonkeyPatch) -> FakeJira:
    """acme.atlassian.net: a Jira Cloud holding the same issues as env1, behind e-mail + API token."""
    server = jira_servers(cloud=True, email=EMAIL, api_token=API_TOKEN)
    build_env1(server)
    configure(monkeypatch, CLOUD, server)
    return server
