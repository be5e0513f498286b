"""An attempt's log in a real browser: the attempt page and the task page follow a running attempt's log live.

Playwright on Debian's Chromium against a live server and a real worker, as tests/admin/test_browser.py;
screenshots go to $TASKHUB_TEST_ARTIFACTS (or the test's tmp dir).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from scheduling import services
from scheduling.models import AttemptStatus, TaskResult
from tests.admin.browser import BROWSER, log_in
from tests.conftest import wait_until

pytest.importorskip("playwright.sync_api")

pytestmark = BROWSER


def test_attempt_and_task_pages_follow_a_running_attempts_log(
    live_server: Any,
    page: Any,
    step: Any,
    start_worker: Any,
    tmp_path: Path,
) -> None:
    base = live_server.url
    get_user_model().objects.create_superuser("op", "op@example.com", "browser-pw-1")
    start_worker()
    go = tmp_path / "go"
    task = services.task_create(
        data={
            "name": "chatty export",
            "tags": ["TEST_LOG"],
            "parameters": {"lines": 3, "wait_for": str(go)},
            "secret_parameters": {"secret": "tok-browser-secret-1"},
        }
    )
    wait_until(lambda: TaskResult.objects.filter(task=task, status=AttemptStatus.RUNNING).exists(), timeout=30)
    result = TaskResult.objects.get(task=task)
    log = page.locator("pre.th-log")

    with step("log-01-attempt-page-running"):
        log_in(page, base, "op", "browser-pw-1")
        page.goto(f"{base}/admin/scheduling/taskresult/{result.pk}/change/")
        page.locator("pre.th-log", has_text="waiting").wait_for()
        assert "line 2 of chatty export" in log.inner_text()
        assert "calling with token <hidden>" in log.inner_text() and "tok-browser-secret-1" not in page.content()
        assert page.locator(".th-log-following").inner_text() == "following live"

    with step("log-02-attempt-page-finished-live"):
        go.touch()  # the handler logs "finished" and returns; the open page shows it without a reload
        page.locator("pre.th-log", has_text="INFO finished").wait_for()
        page.locator(".th-log-status", has_text="DONE").wait_for()
        page.locator(".th-log-following", has_text="finished").wait_for()

    with step("log-03-task-page"):
        page.goto(f"{base}/admin/scheduling/task/{task.pk}/change/")
        page.locator(f"#th-attempt-log-{result.pk} pre.th-log", has_text="INFO finished").wait_for()
        assert page.js_errors == []
