"""End to end through the API: tasks created over HTTP run on a real Celery worker; results come back over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def status_of(api: APIClient, task_id: str) -> str:
    return api.get(f"/tasks/{task_id}").json()["status"]


def test_dependent_tasks_created_over_http_run_in_order_and_show_in_history(
    start_worker: Callable, api: APIClient, alice: User
) -> None:
    start_worker()
    body = {"name": "extract", "tags": ["TEST_RECORD"], "parameters": {"label": "x"}}
    first = api.post("/tasks", body, format="json")
    assert first.status_code == 201
    first_id = first.json()["id"]
    second = api.post(
        "/tasks",
        {"name": "report", "tags": ["TEST_RECORD"], "parameters": {"label": "y"}, "dependencies": [first_id]},
        format="json",
    ).json()
    wait_until(lambda: status_of(api, second["id"]) == "DONE")

    shown = api.get(f"/tasks/{second['id']}").json()
    assert shown["waiting_on"] == []
    assert shown["last_result"]["status"] == "DONE"
    assert shown["last_result"]["result"] == {"label": "y", "attempt": 1}
    history = api.get("/task_history").json()["results"]
    assert [row["task_name"] for row in history] == ["report", "extract"]
    assert all(row["worker"] and row["duration"] is not None for row in history)
    assert {t["name"] for t in api.get("/tasks/status/DONE").json()["results"]} == {"extract", "report"}


def test_failure_retry_and_cancel_over_http(start_worker: Callable, api: APIClient, alice: User) -> None:
    start_worker()
    flaky = api.post(
        "/tasks", {"name": "flaky", "tags": ["TEST_FLAKY"], "parameters": {"failures": 1}}, format="json"
    ).json()
    wait_until(lambda: status_of(api, flaky["id"]) == "FAILED")
    failed = api.get(f"/tasks/{flaky['id']}/results").json()["results"]
    assert [row["status"] for row in failed] == ["FAILED"]
    assert "boom on attempt 1" in failed[0]["error_message"]
    assert api.post(f"/tasks/{flaky['id']}/cancel").status_code == 409  # nothing left to cancel

    assert api.post(f"/tasks/{flaky['id']}/retry").status_code == 202
    wait_until(lambda: len(api.get(f"/tasks/{flaky['id']}/results").json()["results"]) == 2)
    wait_until(lambda: status_of(api, flaky["id"]) in ("FAILED", "DONE"))

    sleeper = api.post(
        "/tasks", {"name": "long", "tags": ["TEST_SLEEP"], "parameters": {"seconds": 30}}, format="json"
    ).json()
    wait_until(lambda: status_of(api, sleeper["id"]) == "RUNNING")
    response = api.post(f"/tasks/{sleeper['id']}/cancel", {"reason": "not needed"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED" and response.json()["status_reason"] == "not needed"
    assert api.get("/task_history?status=CANCELLED").json()["results"][0]["task_name"] == "long"
