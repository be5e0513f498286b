"""End to end: beat runs the report every reporting.interval; a worker sends it to (fake) Mattermost."""

from __future__ import annotations

import pytest

from reporting.models import Report, ReportOutcome
from scheduling.models import Task, TaskStatus
from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _mentions(texts: list[str], name: str) -> int:
    return sum(text.count(f"[{name}]") for text in texts)


def test_beat_reports_finished_tasks_and_catches_up_after_an_outage(
    fake_mattermost, celery_env, start_worker, start_beat, make_task
):
    celery_env.update(
        TASKHUB_REPORTING_INTERVAL="1",
        TASKHUB_REPORTING_REPORT_TYPES="mattermost",
        TASKHUB_MATTERMOST_WEBHOOK_URL=fake_mattermost.webhook_url,
    )
    start_worker()
    start_beat()

    first = make_task("first-task")
    wait_until(lambda: _mentions(fake_mattermost.texts(), "first-task") == 1, timeout=30)

    fake_mattermost.down = True
    during = make_task("during-outage")
    wait_until(lambda: Task.objects.get(pk=during.pk).status == TaskStatus.DONE)
    wait_until(lambda: Report.objects.filter(outcome=ReportOutcome.FAILED).exists(), timeout=30)
    fake_mattermost.down = False
    wait_until(lambda: _mentions(fake_mattermost.texts(), "during-outage") == 1, timeout=30)

    texts = fake_mattermost.texts()
    assert _mentions(texts, "first-task") == 1 and _mentions(texts, "during-outage") == 1
    assert Task.objects.get(pk=first.pk).status == TaskStatus.DONE
