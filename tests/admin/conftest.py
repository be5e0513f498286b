"""Admin test fixtures: a view-only staff user, a small dependency chain (operator: tests/conftest.py), and the
browser: a Playwright page on Debian's Chromium with named, screenshotted steps (tests/admin/browser.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections
from django.test import Client
from django.urls import reverse

from scheduling import services
from scheduling.models import Task
from tests.admin.browser import CHROMIUM, TIMEOUT_MS


@pytest.fixture
def viewer(db: None) -> Any:
    """A staff user who may only look at tasks and results."""
    user = get_user_model().objects.create_user("viewer", password="viewer-pw-1", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_task", "view_taskresult", "view_all_tasks"])
    )
    return user


@pytest.fixture
def client_viewer(viewer: Any) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


def create(name: str, **fields: Any) -> Task:
    data: dict[str, Any] = {"name": name, "tags": ["TEST_RECORD"], "parameters": {}}
    data.update(fields)
    return services.task_create(data=data)


@pytest.fixture
def chain(db: None) -> dict[str, Task]:
    """extract -> transform -> load, plus a second dependent of extract (publish)."""
    extract = create("extract")
    transform = create("transform", dependencies=[extract.pk])
    load = create("load", dependencies=[transform.pk])
    publish = create("publish", dependencies=[extract.pk])
    return {"extract": extract, "transform": transform, "load": load, "publish": publish}


def task_url(view: str, *args: Any) -> str:
    return reverse(f"admin:scheduling_task_{view}", args=args)


def task_form(**fields: Any) -> dict[str, Any]:
    """The admin task form as a browser posts it: an IMMEDIATE TEST_RECORD task, ``fields`` changed."""
    return {
        "name": "from the form",
        "handler_tag": "TEST_RECORD",
        "tag_names": "",
        "task_type": "IMMEDIATE",
        "cron_expr": "",
        "timezone": "UTC",
        "overlap_policy": "skip",
        "priority": "2",
        "parameters": "{}",
        "metadata": "{}",
        "enabled": "on",
        "results-TOTAL_FORMS": "0",
        "results-INITIAL_FORMS": "0",
        "results-MIN_NUM_FORMS": "0",
        "results-MAX_NUM_FORMS": "0",
        **fields,
    }


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TASKHUB_TEST_ARTIFACTS") or tmp_path) / f"browser-{tmp_path.name}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(shots: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an asyncio loop on this thread; the ORM calls the test makes in between
    # are still plain blocking calls, which Django would otherwise refuse.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.js_errors = errors
        yield tab
        context.close()
        browser.close()
        # ORM calls made while Playwright's loop runs get their own connection (asgiref's context-local
        # storage); close it here, or PostgreSQL refuses to drop the test database at the end.
        connections.close_all()


@pytest.fixture
def step(page: Any, shots: Path) -> Callable[[str], Any]:
    """Run a named step; screenshot it after, or on failure as FAILED-<name>.png."""

    @contextmanager
    def run(name: str) -> Iterator[None]:
        try:
            yield
        except BaseException:
            page.screenshot(path=str(shots / f"FAILED-{name}.png"), full_page=True)
            raise
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    return run
