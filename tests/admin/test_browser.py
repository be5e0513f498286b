"""The admin in a real browser against a live server and a real worker (fixtures: tests/admin/browser.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from scheduling import services
from scheduling.models import Task, TaskResult, TaskStatus
from tests.admin.browser import BROWSER, log_in

pytest.importorskip("playwright.sync_api")

pytestmark = BROWSER


def pick_dependency(page: Any, name: str) -> None:
    """Choose a task in the dependencies autocomplete (select2), as a person would."""
    page.click(".field-dependencies .select2-selection")
    page.fill(".select2-container--open .select2-search__field", name)
    page.click(f".select2-results__option:text-is('{name}')")


def fill_task(page: Any, base: str, name: str, handler: str, **fields: str) -> None:
    page.goto(f"{base}/admin/scheduling/task/add/")
    page.fill("#id_name", name)
    page.select_option("#id_handler_tag", handler)
    for field, value in fields.items():
        if field == "task_type":
            page.select_option("#id_task_type", value)
        else:
            page.fill(f"#id_{field}", value)


def task_named(name: str) -> Task:
    return Task.objects.get(name=name)


def test_operator_day_in_the_browser(live_server: Any, page: Any, step: Any, start_worker: Any) -> None:
    base = live_server.url
    get_user_model().objects.create_superuser("op", "op@example.com", "browser-pw-1")

    with step("01-login"):
        log_in(page, base, "op", "browser-pw-1")
        page.get_by_text("Open the TaskHub dashboard").wait_for()

    with step("02-scheduled-task-preview"):
        fill_task(page, base, "nightly export", "TEST_RECORD", task_type="SCHEDULED", timezone="Europe/Berlin")
        page.type("#id_cron_expr", "30 2 * * *", delay=20)  # typed: the preview follows the keystrokes
        page.locator("#th-cron-preview .th-cron-description", has_text="At 02:30").wait_for()
        fires = page.locator("#th-cron-preview .th-cron-fires li")
        assert fires.count() == 5
        assert re.match(r"\w{3} \d{4}-\d\d-\d\d 02:30 CES?T", fires.first.inner_text())
        page.fill("#id_cron_expr", "30 2 * *")
        page.locator("#th-cron-preview .th-cron-error", has_text="expected 5 fields").wait_for()
        page.fill("#id_cron_expr", "30 2 * * *")
        page.locator("#th-cron-preview .th-cron-description", has_text="At 02:30").wait_for()

    with step("03-scheduled-task-saved"):
        page.click("input[name=_save]")
        page.locator(".messagelist .success").wait_for()
        page.goto(f"{base}/admin/scheduling/task/{task_named('nightly export').pk}/change/")
        page.locator(".field-cron_description", has_text="At 02:30").wait_for()
        assert task_named("nightly export").next_fire_at is not None

    with step("04-upstream-created"):
        fill_task(page, base, "extract issues", "TEST_RECORD")
        page.click("input[name=_save]")
        page.locator(".messagelist .success").wait_for()

    with step("05-dependent-waits"):
        fill_task(page, base, "build report", "TEST_SLEEP", parameters='{"seconds": 3}')
        pick_dependency(page, "extract issues")
        page.click("input[name=_continue]")
        page.locator(".messagelist .success").wait_for()
        page.locator(".th-waiting", has_text="waiting on: extract issues (QUEUED)").wait_for()

    with step("06-worker-runs-both"):
        start_worker()
        # The open page polls: the waiting line goes and the status badge reaches DONE without a reload.
        page.locator(".th-status-line .th-badge[data-status=DONE]").wait_for(timeout=60_000)
        assert page.locator(".th-waiting").count() == 0
        assert task_named("extract issues").status == TaskStatus.DONE

    with step("07-run-now-live-progress"):
        page.click("button[data-action=run]")
        page.locator(".messagelist .success", has_text="Started a new run of 'build report'.").wait_for()
        page.locator(".th-progress", has_text="sleeping").wait_for(timeout=30_000)  # live, from the handler
        page.locator(".th-status-line .th-badge[data-status=DONE]").wait_for(timeout=60_000)
        assert page.locator(".th-attempt").count() == 2
        # The rest of the page follows too: the state field and the graph node.
        assert page.locator(".field-status .readonly").inner_text() == "Done"
        assert page.locator("#th-graph a.th-node[data-status=DONE]").count() == 2
        worker = TaskResult.objects.filter(task=task_named("build report")).latest("created_at").worker
        assert worker and page.locator(".th-attempt .th-worker").first.inner_text() == f"on {worker}"

    with step("08-graph"):
        page.click("a.th-open-graph")
        page.locator("svg.th-graph").wait_for()
        names = page.locator("svg.th-graph a.th-node text[font-weight=bold]").all_text_contents()
        assert sorted(names) == ["build report", "extract issues"]
        assert page.locator("svg.th-graph path.th-edge").count() == 1
        assert page.locator("svg.th-graph a.th-node[data-status=DONE]").count() == 2

    with step("08b-graph-node-opens-the-task"):
        page.click("svg.th-graph a.th-node:has-text('extract issues')")
        page.wait_for_url(re.compile(r"/admin/scheduling/task/.+/change/$"))
        page.locator("#th-graph svg.th-graph").wait_for()

    with step("09-artifact-download"):
        report = task_named("build report")
        latest = TaskResult.objects.filter(task=report).order_by("-created_at").first()
        relative = f"artifacts/{report.pk}/{latest.pk}/report.csv"
        (Path(settings.STORAGE_DIR) / relative).parent.mkdir(parents=True, exist_ok=True)
        (Path(settings.STORAGE_DIR) / relative).write_text("key,summary\nTH-1,hello\n")
        TaskResult.objects.filter(pk=latest.pk).update(artifacts=[relative])
        page.goto(f"{base}/admin/scheduling/task/{report.pk}/change/")
        with page.expect_download() as download_info:
            page.click("a.th-artifact:has-text('report.csv')")
        download = download_info.value
        assert download.suggested_filename == "report.csv"
        assert Path(download.path()).read_text() == "key,summary\nTH-1,hello\n"

    with step("10-cycle-refused-inline"):
        page.goto(f"{base}/admin/scheduling/task/{task_named('extract issues').pk}/change/")
        pick_dependency(page, "build report")
        page.click("input[name=_save]")
        error = page.locator(".field-dependencies .errorlist")
        error.wait_for()
        assert error.inner_text() == "would create a cycle: extract issues -> build report -> extract issues"
        assert not task_named("extract issues").dependencies.exists()

    with step("11-dashboard"):
        page.goto(f"{base}/admin/")
        page.click("text=Open the TaskHub dashboard")
        page.locator("#th-chart .th-bar").first.wait_for()
        assert page.locator("#th-chart .th-bar").count() == 24
        assert page.locator(".th-card[data-status=DONE] .th-card-n").inner_text() == "2"
        page.locator("#th-next", has_text="nightly export").wait_for()
        # Workers by their heartbeat (the Celery node that ran the attempts), not pool pids.
        node = TaskResult.objects.exclude(worker_node="").first().worker_node
        page.locator(f"#th-workers tr[data-worker='{node}'][data-online=true]", has_text="online").wait_for()
        assert page.locator("#th-workers tr.th-worker").count() == 1

    with step("11b-worker-page"):
        page.click(f"#th-workers a:text-is('{node}')")
        page.wait_for_url(re.compile(r"/admin/scheduling/worker/\d+/change/$"))
        page.locator(".field-state .readonly", has_text="online").wait_for()
        page.locator(".field-heard_from .readonly", has_text=" s ago)").wait_for()

    assert page.js_errors == []


def test_view_only_user_sees_no_action_buttons(live_server: Any, page: Any, step: Any) -> None:
    base = live_server.url
    viewer = get_user_model().objects.create_user("viewer", password="viewer-pw-1", is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_task", "view_taskresult", "view_all_tasks"])
    )
    task = services.task_create(data={"name": "look only", "tags": ["TEST_RECORD"], "parameters": {}})
    with step("view-only"):
        log_in(page, base, "viewer", "viewer-pw-1")
        page.goto(f"{base}/admin/scheduling/task/{task.pk}/change/")
        page.locator(".th-status-line").wait_for()
        assert page.locator("button.th-button").count() == 0
        assert page.locator("#th-graph svg.th-graph").count() == 1
        # A forged POST, with the valid CSRF token a page script could read, is still refused.
        token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
        response = page.request.post(
            f"{base}/admin/scheduling/task/{task.pk}/do/pause/",
            headers={"X-CSRFToken": token, "Referer": f"{base}/admin/"},
        )
        assert response.status == 403
        assert "CSRF" not in response.text()  # refused for the permission, not for the token
        assert Task.objects.get(pk=task.pk).enabled is True
