"""The operator's view in a real browser (Debian's Chromium via Playwright): lists, attempt pages, live counters,
whole pipelines and the admin's shape. Screenshots go where tests/admin/test_browser.py puts them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from scheduling import services
from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus
from tests.admin.browser import BROWSER, log_in

pytestmark = BROWSER

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/handlers/jira.py", line 41, in export\n'
    "    rows = client.search(jql)\n"
    "JiraError: HTTP 503: upstream unavailable\n"
)


def make(name: str, **fields: Any) -> Task:
    return services.task_create(data={"name": name, "tags": ["TEST_RECORD"], "parameters": {}, **fields})


def finished(task: Task, number: int, status: str, seconds: float, **fields: Any) -> TaskResult:
    now = timezone.now()
    return TaskResult.objects.create(
        task=task,
        attempt=number,
        status=status,
        started_at=now - timedelta(seconds=seconds + 60),
        finished_at=now - timedelta(seconds=60),
        duration=seconds,
        worker=fields.pop("worker", "celery@box-1"),
        **fields,
    )


def rgb(page: Any, selector: str) -> str:
    return page.locator(selector).first.evaluate("node => getComputedStyle(node).backgroundColor")


@pytest.fixture
def superuser(db: None) -> Any:
    return get_user_model().objects.create_superuser("op", "op@example.com", "browser-pw-1")


def test_lists_attempt_page_and_live_counters(live_server: Any, page: Any, step: Any, superuser: Any) -> None:
    base = live_server.url
    export = make("export-jira", tags=["TEST_RECORD", "jira"], task_type="SCHEDULED", cron_expr="0 3 * * *")
    report = make("weekly report")
    TaskResult.objects.filter(task=report).delete()
    finished(export, 1, AttemptStatus.FAILED, 65.2, error_message="JiraError: HTTP 503", traceback=TRACEBACK)
    failed = finished(
        export,
        2,
        AttemptStatus.FAILED,
        0.027785,
        error_message="JiraError: HTTP 503",
        traceback=TRACEBACK,
        worker="celery@box-2",
    )
    finished(report, 1, AttemptStatus.DONE, 1.5)
    Task.objects.filter(pk=export.pk).update(status=TaskStatus.FAILED, attempt=2)
    Task.objects.filter(pk=report.pk).update(status=TaskStatus.DONE, attempt=1)
    counts: list[str] = []
    page.on("request", lambda r: counts.append(r.url) if "/scheduling/task/counts/" in r.url else None)
    page.clock.install()

    with step("lists-01-task-list"):
        log_in(page, base, "op", "browser-pw-1")
        page.goto(f"{base}/admin/scheduling/task/")
        names = page.locator("#result_list tbody th a").all_text_contents()
        assert names[:2] == ["weekly report", "export-jira"]  # most recently updated first
        row = page.locator("#result_list tbody tr", has_text="export-jira")
        assert row.locator(".field-status_badge .th-badge").inner_text() == "FAILED"
        assert rgb(page, "#result_list .field-status_badge .th-badge[data-status=FAILED]") == "rgb(241, 174, 181)"
        assert rgb(page, "#result_list .field-status_badge .th-badge[data-status=DONE]") == "rgb(163, 207, 187)"
        assert row.locator(".field-tag_list").inner_text().split() == ["TEST_RECORD", "jira"]
        assert re.search(
            r"0 3 \* \* \* UTC\s+next: \d{4}-\d\d-\d\d 03:00 UTC", row.locator(".field-schedule").inner_text()
        )
        assert re.fullmatch(r"FAILED 1\W+minutes? ago 28 ms", row.locator(".field-last_run").inner_text())
        assert page.locator('[data-th-count="tasks.FAILED"]').inner_text() == "1"

    with step("lists-02-counts-follow-without-reload"):
        Task.objects.filter(pk=export.pk).update(status=TaskStatus.DONE)
        page.clock.run_for(6_000)  # one polling interval
        page.locator('[data-th-count="tasks.DONE"]', has_text="2").wait_for()
        assert page.locator('[data-th-count="tasks.FAILED"]').inner_text() == "0"

    with step("lists-03-paused-counts-stay"):
        page.click(".th-live-pause")
        assert page.locator(".th-live-pause").inner_text() == "Resume live updates"
        asked = len(counts)
        Task.objects.filter(pk=export.pk).update(status=TaskStatus.FAILED)
        page.clock.run_for(30_000)
        assert len(counts) == asked and page.locator('[data-th-count="tasks.FAILED"]').inner_text() == "0"
        page.reload()  # the pause is remembered
        assert page.locator(".th-live-pause").inner_text() == "Resume live updates"
        page.click(".th-live-pause")
        page.clock.run_for(6_000)
        page.locator('[data-th-count="tasks.FAILED"]', has_text="1").wait_for()

    with step("lists-04-result-list-filtered"):
        page.goto(f"{base}/admin/scheduling/taskresult/")
        assert page.locator("#result_list tbody tr").count() == 3
        first = page.locator("#result_list tbody tr").first
        assert first.locator(".field-task_name").inner_text() == "weekly report"
        assert first.locator(".field-took").inner_text() == "1.5 s"
        failed_row = page.locator("#result_list tbody tr", has_text="celery@box-2")
        assert failed_row.locator(".field-took").inner_text() == "28 ms"
        assert failed_row.locator(".field-error_excerpt").inner_text() == "JiraError: HTTP 503"
        assert failed_row.locator(".field-attempt").inner_text() == "2"
        page.fill("#changelist-filter input[name=worker]", "celery@box-1")
        page.press("#changelist-filter input[name=worker]", "Enter")
        page.wait_for_url(re.compile(r"worker=celery%40box-1"))
        page.click("#changelist-filter a:text-is('Failed')")
        page.wait_for_url(re.compile(r"status__exact=FAILED"))
        assert "worker=celery%40box-1" in page.url
        rows = page.locator("#result_list tbody tr")
        assert rows.count() == 1 and rows.first.locator(".field-took").inner_text() == "1 min 5 s"
        page.fill("#changelist-filter input[name=task_name]", "weekly")
        page.press("#changelist-filter input[name=task_name]", "Enter")
        page.locator("#result_list").wait_for(state="detached")  # no attempt is weekly, FAILED and on box-1
        assert "status__exact=FAILED" in page.url and "0 task results" in page.locator("#changelist").inner_text()

    with step("lists-05-attempt-page"):
        page.goto(f"{base}/admin/scheduling/taskresult/{failed.pk}/change/")
        assert page.locator("#content h1").inner_text() == "export-jira, attempt 2"
        assert page.title().startswith("export-jira, attempt 2")
        assert page.locator("pre.th-traceback").inner_text() == TRACEBACK  # indentation kept
        assert page.locator(".field-took .readonly").inner_text() == "28 ms"

    with step("lists-06-dashboard-counts-follow"):
        page.goto(f"{base}/admin/scheduling/task/dashboard/")
        card = page.locator(".th-card[data-status=RUNNING] .th-card-n")
        assert card.inner_text() == "0"
        Task.objects.filter(pk=report.pk).update(status=TaskStatus.RUNNING)
        page.clock.run_for(6_000)
        page.locator(".th-card[data-status=RUNNING] .th-card-n", has_text="1").wait_for()
        assert page.locator(".th-card[data-status=DONE] .th-card-n").inner_text() == "0"

    assert page.js_errors == []


def test_whole_pipeline_follows_status(live_server: Any, page: Any, step: Any, superuser: Any) -> None:
    base = live_server.url
    # 50 tasks: five branches of ten steps, each step also depending on the branch's first one (long edges),
    # joined by a final report that depends on every branch's last step.
    heads, tails = [], []
    for branch in range(5):
        head = make(f"b{branch} extract", tags=["TEST_RECORD", "nightly"])
        previous = head
        for number in range(1, 9):
            deps = [previous.pk] + ([head.pk] if number > 1 else [])
            previous = make(f"b{branch} step {number}", tags=["TEST_RECORD", "nightly"], dependencies=deps)
        heads.append(head)
        tails.append(previous)
    report = make("nightly report", tags=["TEST_RECORD", "nightly"], dependencies=[t.pk for t in tails])
    make("unrelated", tags=["TEST_RECORD"])
    assert Task.objects.filter(tags__name="nightly").count() == 46
    for index in range(4):  # 50 in all: the report's own four followers
        make(f"publish {index}", tags=["TEST_RECORD", "nightly"], dependencies=[report.pk])
    page.clock.install()

    with step("pipeline-01-from-the-list"):
        log_in(page, base, "op", "browser-pw-1")
        page.goto(f"{base}/admin/scheduling/task/")
        page.select_option("#th-pipeline-tag", "nightly")
        page.click("button.th-open-pipeline")
        page.locator("svg.th-graph").wait_for()
        assert page.locator("svg.th-graph a.th-node").count() == 50
        assert page.locator("svg.th-graph .th-edge").count() == 5 * (8 + 7) + 5 + 4
        assert page.locator("#content h1").inner_text() == "Pipeline: tasks tagged nightly"
        boxes = page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('svg.th-graph a.th-node')].map(a =>
                 [a.querySelector('text').textContent, Number(a.querySelector('rect').getAttribute('x'))]))"""
        )
        for branch in range(5):  # each step right of its previous step and of its branch's first task
            for number in range(2, 9):
                assert (
                    boxes[f"b{branch} step {number}"]
                    > boxes[f"b{branch} step {number - 1}"]
                    > boxes[f"b{branch} extract"]
                )
        assert boxes["nightly report"] > max(boxes[f"b{b} step 8"] for b in range(5))
        assert "unrelated" not in boxes

    with step("pipeline-02-follows-status"):
        Task.objects.filter(pk=report.pk).update(status=TaskStatus.RUNNING)
        page.clock.run_for(6_000)
        node = page.locator("svg.th-graph a.th-node", has_text="nightly report")
        node.and_(page.locator("[data-status=RUNNING]")).wait_for()
        assert node.locator("rect").get_attribute("fill") == "#9ec5fe"

    with step("pipeline-03-from-the-task-page"):
        page.goto(f"{base}/admin/scheduling/task/{heads[0].pk}/change/")
        page.click("a.th-open-pipeline")
        page.wait_for_url(re.compile(rf"/pipeline/\?task={heads[0].pk}$"))
        assert page.locator("#content h1").inner_text() == "Pipeline of b0 extract"
        assert page.locator("svg.th-graph a.th-node").count() == 50  # connected through the report
        focus = page.locator("svg.th-graph a.th-node", has_text="b0 extract").locator("rect")
        assert focus.get_attribute("stroke-width") == "3"

    assert page.js_errors == []


def test_admin_shape_and_cancel_confirmation(
    live_server: Any,
    page: Any,
    step: Any,
    superuser: Any,
    start_worker: Any,
) -> None:
    base = live_server.url
    staff = get_user_model().objects.create_user("staff", password="browser-pw-2", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label__in=["django_celery_beat", "scheduling"])
    )

    with step("shape-01-index-superuser"):
        log_in(page, base, "op", "browser-pw-1")
        captions = page.locator("#content-main .module caption a.section").all_text_contents()
        assert captions[0] == "Scheduling" and captions[-1] == "Scheduler internals (django-celery-beat)"
        page.locator(".th-internals-note").wait_for()

    with step("shape-02-add-form"):
        page.goto(f"{base}/admin/scheduling/task/add/")
        assert page.locator("h2", has_text="State").count() == 0
        assert page.locator(".form-row.field-cron_expr").is_hidden()  # IMMEDIATE by default
        page.select_option("#id_task_type", "SCHEDULED")
        assert page.locator(".form-row.field-cron_expr").is_visible()
        assert page.locator(".form-row.field-timezone").is_visible()
        page.select_option("#id_handler_tag", "HTTP_REQUEST")
        skeleton = page.locator("#id_parameters").input_value()
        assert '"url": ""' in skeleton and '"method": "GET"' in skeleton
        page.fill("#id_parameters", '{"url": "http://127.0.0.1:9/x"}')
        page.select_option("#id_handler_tag", "TEST_RECORD")  # typed parameters are never replaced
        assert page.locator("#id_parameters").input_value() == '{"url": "http://127.0.0.1:9/x"}'
        page.select_option("#id_task_type", "IMMEDIATE")
        assert page.locator(".form-row.field-cron_expr").is_hidden()

    task = services.task_create(data={"name": "long export", "tags": ["TEST_SLEEP"], "parameters": {"seconds": 60}})

    with step("shape-03-cancel-asks"):
        start_worker()
        page.goto(f"{base}/admin/scheduling/task/{task.pk}/change/")
        page.locator(".th-status-line .th-badge[data-status=RUNNING]").wait_for(timeout=60_000)
        page.click("button[data-action=cancel]")
        page.locator("h1", has_text="Are you sure?").wait_for()
        assert "long export, attempt 1" in page.locator(".th-running-list").inner_text()
        assert TaskResult.objects.get(task=task).status == AttemptStatus.RUNNING

    with step("shape-04-cancel-confirmed"):
        page.click("input.th-confirm-cancel")
        page.locator(".messagelist .success", has_text="Cancelled 1 attempt of 'long export'.").wait_for()
        assert TaskResult.objects.get(task=task).status == AttemptStatus.CANCELLED

    with step("shape-05-index-staff"):
        page.context.clear_cookies()
        log_in(page, base, "staff", "browser-pw-2")
        captions = page.locator("#content-main .module caption a.section").all_text_contents()
        assert "Scheduling" in captions and not any("internals" in c for c in captions)
        page.goto(f"{base}/admin/django_celery_beat/periodictask/")
        assert "403" in page.title() or page.locator("text=403 Forbidden").count() == 1

    assert page.js_errors == []
