"""Lists: filters, ordering, bounded pages, /tasks/status/{status}, /task_history, /tasks/{id}/results, query counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from scheduling.models import Task, TaskResult
from tests.api.conftest import finish


def names(response) -> list[str]:  # noqa: ANN001 - a test client response
    assert response.status_code == 200, response.json()
    return [row.get("name") or row.get("task_name") for row in response.json()["results"]]


@pytest.fixture
def mixed(alice: User, bob: User, task_of) -> dict[str, Task]:
    """Tasks of several priorities, types, tags and statuses, owned by alice (and one by bob)."""
    tasks = {
        "high": task_of(alice, "alpha export", priority="HIGH", tags=["TEST_RECORD", "jira"]),
        "low": task_of(alice, "beta report", priority="LOW", tags=["TEST_RECORD", "confluence"]),
        "cron": task_of(alice, "gamma nightly", task_type="SCHEDULED", cron_expr="0 3 * * *"),
        "done": task_of(alice, "delta done", tags=["TEST_RECORD", "jira", "weekly"]),
        "bobs": task_of(bob, "bob's jira", tags=["TEST_RECORD", "jira"], priority="HIGH"),
    }
    finish(tasks["done"])
    return tasks


def test_default_order_is_priority_then_age(api: APIClient, mixed: dict[str, Task]) -> None:
    assert names(api.get("/tasks")) == ["alpha export", "gamma nightly", "delta done", "beta report"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=DONE", ["delta done"]),
        ("status=DONE&status=PENDING", ["alpha export", "gamma nightly", "delta done", "beta report"]),
        ("priority=HIGH", ["alpha export"]),
        ("priority=HIGH&priority=LOW", ["alpha export", "beta report"]),
        ("task_type=SCHEDULED", ["gamma nightly"]),
        ("tag=jira", ["alpha export", "delta done"]),
        ("tag=jira,weekly", ["delta done"]),
        ("tag=nothing", []),
        ("name=NIGHT", ["gamma nightly"]),
        ("search=beta", ["beta report"]),
        ("owner=alice&priority=LOW", ["beta report"]),
        ("owner=bob", []),  # bob's tasks are not alice's to see
        ("enabled=false", []),
        ("ordering=name", ["alpha export", "beta report", "delta done", "gamma nightly"]),
        ("ordering=-name", ["gamma nightly", "delta done", "beta report", "alpha export"]),
    ],
)
def test_task_filters_and_ordering(api: APIClient, mixed: dict[str, Task], query: str, expected: list[str]) -> None:
    assert names(api.get(f"/tasks?{query}")) == expected


def test_created_and_updated_ranges(api: APIClient, alice: User, task_of) -> None:
    old = task_of(alice, "old")
    Task.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    task_of(alice, "new")
    cut = (timezone.now() - timedelta(days=1)).isoformat()
    assert names(api.get("/tasks", {"created_after": cut})) == ["new"]
    assert names(api.get("/tasks", {"created_before": cut})) == ["old"]
    assert sorted(names(api.get("/tasks", {"updated_after": cut}))) == ["new", "old"]
    assert names(api.get("/tasks", {"updated_before": cut})) == []


def test_pages_are_bounded_and_page_size_is_honoured(api: APIClient, alice: User, task_of) -> None:
    for i in range(7):
        task_of(alice, f"t{i}")
    body = api.get("/tasks?page_size=3").json()
    assert body["count"] == 7 and len(body["results"]) == 3 and "page=2" in body["next"]
    last = api.get("/tasks?page_size=3&page=3").json()
    assert len(last["results"]) == 1 and last["next"] is None
    assert api.get("/tasks?page_size=3&page=9").status_code == 404
    assert len(api.get("/tasks?page_size=100000").json()["results"]) == 7  # capped at max_page_size, not an error
    for bad in ("0", "-1", "ten"):
        response = api.get(f"/tasks?page_size={bad}")
        assert response.status_code == 400 and "from 1 to" in response.json()["page_size"][0]


def test_page_size_is_capped_at_max_page_size(
    api: APIClient, alice: User, task_of, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskhub.pagination import BoundedPageNumberPagination

    monkeypatch.setattr(BoundedPageNumberPagination, "max_page_size", 4)
    for i in range(6):
        task_of(alice, f"t{i}")
    assert len(api.get("/tasks?page_size=100").json()["results"]) == 4


@pytest.mark.parametrize("path", ["/tasks/status/DONE", "/tasks/status/DONE/", "/tasks/status/done"])
def test_tasks_by_status(api: APIClient, mixed: dict[str, Task], path: str) -> None:
    assert names(api.get(path)) == ["delta done"]


def test_tasks_by_status_keeps_the_other_filters(api: APIClient, mixed: dict[str, Task]) -> None:
    assert names(api.get("/tasks/status/PENDING?tag=jira")) == ["alpha export"]
    assert names(api.get("/tasks/status/RUNNING")) == []


def test_unknown_status_is_400_listing_the_valid_ones(api: APIClient) -> None:
    response = api.get("/tasks/status/SLEEPING")
    assert response.status_code == 400
    message = response.json()["status"][0]
    assert "SLEEPING" in message
    for valid in ("PENDING", "QUEUED", "RUNNING", "DONE", "FAILED", "TIMEOUT", "RETRY", "CANCELLED"):
        assert valid in message


@pytest.fixture
def history(alice: User, bob: User, task_of) -> dict[str, TaskResult]:
    """Finished attempts at known times: two of alice's, one of bob's, and one still waiting."""
    now = timezone.now()
    rows = {
        "ok": finish(task_of(alice, "ok", tags=["TEST_RECORD", "jira"])),
        "failed": finish(task_of(alice, "failed"), "FAILED", error_message="boom"),
        "bobs": finish(task_of(bob, "bobs")),
    }
    task_of(alice, "waiting")
    for offset, key in enumerate(["ok", "failed", "bobs"]):
        TaskResult.objects.filter(pk=rows[key].pk).update(finished_at=now - timedelta(hours=3 - offset))
    return rows


def test_history_is_finished_attempts_newest_first(api: APIClient, history: dict[str, TaskResult]) -> None:
    body = api.get("/task_history").json()
    assert [row["task_name"] for row in body["results"]] == ["failed", "ok"]
    assert {row["status"] for row in body["results"]} == {"DONE", "FAILED"}
    assert body["results"][0]["error_message"] == "boom"
    assert api.get("/task_history/").status_code == 200


def test_history_filters(api: APIClient, alice: User, history: dict[str, TaskResult]) -> None:
    ok = history["ok"]
    assert names(api.get(f"/task_history?task={ok.task_id}")) == ["ok"]
    assert names(api.get("/task_history?status=FAILED")) == ["failed"]
    assert names(api.get("/task_history?tag=jira")) == ["ok"]
    assert names(api.get("/task_history?owner=alice")) == ["failed", "ok"]
    cut = (timezone.now() - timedelta(hours=2, minutes=30)).isoformat()
    assert names(api.get("/task_history", {"finished_after": cut})) == ["failed"]
    assert names(api.get("/task_history", {"finished_before": cut})) == ["ok"]
    assert names(api.get("/task_history?ordering=finished_at")) == ["ok", "failed"]


def test_history_with_view_all_shows_everyones(history: dict[str, TaskResult], make_user, client_for) -> None:
    auditor = make_user("auditor", perms=("view_task", "view_all_tasks"))
    assert names(client_for(auditor).get("/task_history")) == ["bobs", "failed", "ok"]


@pytest.mark.parametrize("slash", ["", "/"])
def test_results_of_a_task_newest_first(api: APIClient, alice: User, task_of, slash: str) -> None:
    task = task_of(alice, "twice")
    finish(task, "FAILED", error_message="first")
    api.post(f"/tasks/{task.pk}/retry")
    response = api.get(f"/tasks/{task.pk}/results{slash}")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["status"] for row in rows] == ["PENDING", "FAILED"]
    assert rows[1]["error_message"] == "first" and rows[0]["task"] == str(task.pk)


def _list_queries(client: APIClient, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries)


def test_task_list_query_count_does_not_grow_with_page_size(api: APIClient, alice: User, task_of) -> None:
    upstream = task_of(alice, "upstream")
    for i in range(12):
        task = task_of(alice, f"t{i}", tags=["TEST_RECORD", f"tag{i}", "common"], dependencies=[upstream.pk])
        if i % 3 == 0:
            finish(task)
    small = _list_queries(api, "/tasks?page_size=2")
    large = _list_queries(api, "/tasks?page_size=13")
    assert small == large, (small, large)
    assert large <= 10
    by_status = _list_queries(api, "/tasks/status/PENDING?page_size=2"), _list_queries(api, "/tasks/status/PENDING")
    assert by_status[0] == by_status[1]


def test_history_query_count_does_not_grow_with_page_size(api: APIClient, alice: User, task_of) -> None:
    for i in range(8):
        finish(task_of(alice, f"t{i}"))
    assert _list_queries(api, "/task_history?page_size=2") == _list_queries(api, "/task_history?page_size=8")


def test_time_filters_accept_any_offset_and_refuse_out_of_range(api: APIClient, alice: User, task_of) -> None:
    task_of(alice, "now")
    # -18:56 is valid ISO 8601 but beyond PostgreSQL's ±15:59: converted to UTC first.
    assert names(api.get("/tasks", {"created_after": "2000-05-20T12:32:31-18:56"})) == ["now"]
    assert names(api.get("/task_history", {"finished_after": "2000-05-20T12:32:31-18:56"})) == []
    response = api.get("/tasks", {"created_before": "0001-01-01T00:00:00+05:00"})
    assert response.status_code == 400 and "out of range" in response.json()["created_before"][0]


def test_paging_through_ties_shows_every_task_once(api: APIClient, alice: User, task_of) -> None:
    tasks = [task_of(alice, "same") for _ in range(6)]
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(created_at=timezone.now())
    for ordering in ("", "name", "-priority"):
        seen = [
            api.get("/tasks", {"page_size": 1, "page": page, "ordering": ordering}).json()["results"][0]["id"]
            for page in range(1, 7)
        ]
        assert sorted(seen) == sorted(str(t.pk) for t in tasks), ordering
