"""POST /tasks/{id}/run|cancel|retry|pause|resume: state changes through the services; misfits are 409."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from scheduling.models import Task, TaskResult
from tests.api.conftest import finish


@pytest.mark.parametrize("slash", ["", "/"])
def test_run_a_finished_task_starts_a_new_run(api: APIClient, alice: User, task_of, slash: str) -> None:
    task = task_of(alice, "again")
    finish(task)
    response = api.post(f"/tasks/{task.pk}/run{slash}")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "PENDING"
    assert body["last_result"]["status"] == "PENDING"
    assert TaskResult.objects.filter(task=task).count() == 2


def test_run_a_scheduled_task_outside_its_schedule(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "cron", task_type="SCHEDULED", cron_expr="0 0 1 1 *")
    response = api.post(f"/tasks/{task.pk}/run")
    assert response.status_code == 202
    assert TaskResult.objects.filter(task=task, status="PENDING").count() == 1


def test_run_while_a_run_waits_is_409_with_the_status(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "waiting")
    response = api.post(f"/tasks/{task.pk}/run")
    assert response.status_code == 409
    assert response.json()["current_status"] == "PENDING"
    assert "already has a run waiting" in response.json()["detail"]
    assert TaskResult.objects.filter(task=task).count() == 1


@pytest.mark.parametrize("slash", ["", "/"])
def test_cancel_a_pending_task_with_a_reason(api: APIClient, alice: User, task_of, slash: str) -> None:
    task = task_of(alice, "stop me")
    response = api.post(f"/tasks/{task.pk}/cancel{slash}", {"reason": "wrong project"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "CANCELLED"
    assert response.json()["status_reason"] == "wrong project"
    assert TaskResult.objects.get(task=task).status == "CANCELLED"


def test_cancel_without_a_body(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "stop me")
    response = api.post(f"/tasks/{task.pk}/cancel")
    assert response.status_code == 200
    assert Task.objects.get(pk=task.pk).status == "CANCELLED"


def test_cancel_a_done_task_is_409_naming_the_status(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "finished")
    finish(task)
    response = api.post(f"/tasks/{task.pk}/cancel")
    assert response.status_code == 409
    assert response.json()["current_status"] == "DONE"
    assert "DONE" in response.json()["detail"]
    assert Task.objects.get(pk=task.pk).status == "DONE"


def test_cancel_with_a_bad_reason_is_400(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "t")
    response = api.post(f"/tasks/{task.pk}/cancel", {"reason": "x" * 501}, format="json")
    assert response.status_code == 400 and "reason" in response.json()
    assert Task.objects.get(pk=task.pk).status == "PENDING"


@pytest.mark.parametrize("slash", ["", "/"])
def test_retry_a_failed_task(api: APIClient, alice: User, task_of, slash: str) -> None:
    task = task_of(alice, "flaky")
    finish(task, "FAILED", error_message="boom")
    response = api.post(f"/tasks/{task.pk}/retry{slash}")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "PENDING"
    assert response.json()["last_result"]["attempt"] == 1


def test_retry_a_done_task_is_409(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "ok")
    finish(task)
    response = api.post(f"/tasks/{task.pk}/retry")
    assert response.status_code == 409
    assert response.json()["current_status"] == "DONE"
    assert TaskResult.objects.filter(task=task).count() == 1


@pytest.mark.parametrize("slash", ["", "/"])
def test_pause_and_resume_a_scheduled_task(api: APIClient, alice: User, task_of, slash: str) -> None:
    task = task_of(alice, "nightly", task_type="SCHEDULED", cron_expr="0 2 * * *")
    response = api.post(f"/tasks/{task.pk}/pause{slash}")
    assert response.status_code == 200, response.json()
    assert response.json()["enabled"] is False and response.json()["next_run_at"] is None
    assert Task.objects.get(pk=task.pk).next_fire_at is None

    response = api.post(f"/tasks/{task.pk}/resume{slash}")
    assert response.status_code == 200
    assert response.json()["enabled"] is True and response.json()["next_run_at"] is not None


def test_pause_twice_and_resume_an_active_task_are_409(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "t")
    assert api.post(f"/tasks/{task.pk}/resume").status_code == 409
    assert api.post(f"/tasks/{task.pk}/pause").status_code == 200
    response = api.post(f"/tasks/{task.pk}/pause")
    assert response.status_code == 409
    assert "already paused" in response.json()["detail"]


@pytest.mark.parametrize("name", ["run", "cancel", "retry", "pause", "resume"])
def test_actions_only_accept_post(api: APIClient, alice: User, task_of, name: str) -> None:
    task = task_of(alice, "t")
    assert api.get(f"/tasks/{task.pk}/{name}").status_code == 405


def test_audit_trail_names_the_api_user_for_every_change(api: APIClient, alice: User) -> None:
    task_id = api.post("/tasks", {"name": "a", "tags": ["TEST_RECORD"]}, format="json").json()["id"]
    api.patch(f"/tasks/{task_id}", {"priority": "HIGH"}, format="json")
    api.post(f"/tasks/{task_id}/cancel")
    api.post(f"/tasks/{task_id}/pause")
    api.post(f"/tasks/{task_id}/resume")
    for slash in ("", "/"):
        response = api.get(f"/tasks/{task_id}/audit{slash}")
        assert response.status_code == 200
        entries = response.json()["results"]
        assert [e["action"] for e in entries] == ["resumed", "paused", "cancelled", "changed", "created"]
        assert {e["actor"] for e in entries} == {"alice"}
        assert entries[3]["changes"]["priority"] == ["MEDIUM", "HIGH"]


def test_audit_of_another_users_task_is_404(api: APIClient, bob: User, task_of) -> None:
    theirs = task_of(bob, "b")
    assert api.get(f"/tasks/{theirs.pk}/audit").status_code == 404
