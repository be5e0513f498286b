"""Every status a place offers finds the tasks in it: admin filter, dashboard card, API, list_tasks.

The tasks reach their statuses through the executor and the services (the real transitions), not by
writing ``status``: a run that ended with a timeout must read TIMEOUT, one whose timeout is being
retried RETRY.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling import services
from scheduling.engine import dispatcher, executor
from scheduling.models import AttemptStatus, RetryPolicy, Task, TaskStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_of_each(make_task: Callable[..., Task]) -> dict[str, Task]:
    """One task in every task status, each moved there by the lifecycle."""
    retry = RetryPolicy.objects.create(name="retry timeouts", max_retries=2, retry_delay=600)
    tasks: dict[str, Task] = {}

    def started(name: str, **fields: object) -> tuple[Task, object]:
        task = make_task(name, **fields)
        (result,) = dispatcher.dispatch()
        return task, result

    tasks["QUEUED"], _ = started("queued one")
    tasks["RUNNING"], result = started("running one")
    executor.claim(result.pk)
    tasks["DONE"], result = started("done one")
    executor.run_attempt(result.pk)
    tasks["FAILED"], result = started("failed one", tags=["TEST_FLAKY"], parameters={"failures": 1})
    executor.run_attempt(result.pk)
    tasks["TIMEOUT"], result = started("timed out one")
    executor.complete(executor.claim(result.pk), executor.Outcome(AttemptStatus.TIMEOUT, error="timed out"))
    tasks["RETRY"], result = started("retrying timeout", retry_policy=retry.pk)
    executor.complete(executor.claim(result.pk), executor.Outcome(AttemptStatus.TIMEOUT, error="timed out"))
    tasks["CANCELLED"] = make_task("cancelled one", enabled=False)
    services.task_cancel(task=tasks["CANCELLED"])
    tasks["PENDING"] = make_task("pending one")  # not dispatched yet
    for status, task in tasks.items():
        task.refresh_from_db()
        assert task.status == status, (task.name, task.status)
    assert set(tasks) == set(TaskStatus.values)  # every status offered anywhere is covered
    return tasks


@pytest.fixture
def admin_client(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.mark.parametrize("status", TaskStatus.values)
def test_admin_status_filter_finds_tasks_in_each_status(one_of_each, admin_client, status):
    page = admin_client.get("/admin/scheduling/task/", {"status__exact": status})
    assert page.status_code == 200
    html = page.content.decode()
    assert f"?status__exact={status}" in html  # the filter offers it
    found = {name for name in (t.name for t in one_of_each.values()) if name in html}
    assert found == {one_of_each[status].name}


def test_dashboard_card_of_each_status_counts_and_links_its_tasks(one_of_each, admin_client):
    html = admin_client.get(reverse("admin:scheduling_task_dashboard")).content.decode()
    for status, task in one_of_each.items():
        card = re.search(rf'data-status="{status}" href="([^"]+)">\s*<span class="th-card-n"[^>]*>(\d+)</span>', html)
        assert card is not None, f"no card for {status}"
        assert card.group(2) == "1", (status, card.group(2))
        listed = admin_client.get(card.group(1).replace("&amp;", "&")).content.decode()
        assert task.name in listed


@pytest.mark.parametrize("status", TaskStatus.values)
def test_api_status_route_and_filter_find_tasks_in_each_status(one_of_each, operator, status):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator).key}")
    for url in (f"/tasks/status/{status}", f"/tasks?status={status}"):
        response = api.get(url)
        assert response.status_code == 200, url
        assert [row["name"] for row in response.json()["results"]] == [one_of_each[status].name], url
        assert response.json()["results"][0]["status"] == status


@pytest.mark.parametrize("status", TaskStatus.values)
def test_list_tasks_status_option_finds_tasks_in_each_status(one_of_each, capsys, status):
    call_command("list_tasks", "--status", status)
    out = capsys.readouterr().out
    found = {task.name for task in one_of_each.values() if task.name in out}
    assert found == {one_of_each[status].name}
