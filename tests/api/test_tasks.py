"""Contract tests for /tasks and /tasks/{id}: the JSON shape, every method, with and without a trailing slash."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from scheduling.models import Priority, RetryPolicy, Task, TaskResult
from tests.api.conftest import finish, task_body

TASK_FIELDS = {
    "id",
    "name",
    "task_type",
    "cron_expr",
    "timezone",
    "cron_description",
    "status",
    "status_reason",
    "created_at",
    "updated_at",
    "priority",
    "metadata",
    "tags",
    "handler",
    "owner",
    "dependencies",
    "dependency_modes",
    "waiting_on",
    "dependency_timeout",
    "timeout_seconds",
    "retry_policy",
    "parameters",
    "secret_parameters",
    "enabled",
    "overlap_policy",
    "attempt",
    "next_run_at",
    "last_result",
}


def test_create_immediate_task_returns_it_owned_by_the_caller(api: APIClient, alice: User) -> None:
    response = api.post(
        "/tasks",
        task_body(priority="HIGH", metadata={"team": "qa"}, timeout_seconds=30, tags=["TEST_RECORD", "nightly"]),
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == TASK_FIELDS
    task = Task.objects.get(pk=body["id"])
    assert response["Location"] == f"/tasks/{task.pk}"
    assert task.owner == alice and body["owner"] == "alice"
    assert task.priority == Priority.HIGH and body["priority"] == "HIGH"
    assert body["status"] == "PENDING" and body["task_type"] == "IMMEDIATE"
    assert sorted(body["tags"]) == ["TEST_RECORD", "nightly"] and body["handler"] == "TEST_RECORD"
    assert body["metadata"] == {"team": "qa"} and body["timeout_seconds"] == 30
    assert body["last_result"]["status"] == "PENDING" and body["last_result"]["attempt"] == 1
    assert body["retry_policy"] is None


def test_create_scheduled_task_shows_cron_description_and_next_run(api: APIClient) -> None:
    response = api.post(
        "/tasks/",
        task_body(task_type="SCHEDULED", cron_expr="0 6 * * 1", timezone="Europe/Paris"),
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["cron_expr"] == "0 6 * * 1" and body["timezone"] == "Europe/Paris"
    assert "06:00" in body["cron_description"] and "Monday" in body["cron_description"]
    assert body["next_run_at"] is not None
    assert body["last_result"] is None  # a scheduled task waits for its first fire


def test_create_with_a_nested_retry_policy_creates_the_policy(api: APIClient) -> None:
    policy = {"max_retries": 5, "retry_delay": 10, "backoff_factor": 3, "max_delay": 600, "jitter": True}
    response = api.post("/tasks", task_body(retry_policy=policy), format="json")
    assert response.status_code == 201, response.json()
    shown = response.json()["retry_policy"]
    assert {k: shown[k] for k in policy} == policy
    stored = Task.objects.get(pk=response.json()["id"]).retry_policy
    assert stored.pk == shown["id"] and stored.max_retries == 5 and stored.retry_on_timeout is True


def test_two_tasks_with_the_same_name_can_each_get_a_new_retry_policy(api: APIClient) -> None:
    for _ in range(2):
        response = api.post("/tasks", task_body(name="same", retry_policy={"max_retries": 1}), format="json")
        assert response.status_code == 201, response.json()
    assert RetryPolicy.objects.count() == 2


def test_create_with_a_retry_policy_id_reuses_the_stored_policy(api: APIClient) -> None:
    policy = RetryPolicy.objects.create(name="shared", max_retries=7)
    response = api.post("/tasks", task_body(retry_policy={"id": policy.pk}), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["retry_policy"]["name"] == "shared"
    assert RetryPolicy.objects.count() == 1


def test_create_with_dependencies_shows_what_the_task_waits_on(api: APIClient, alice: User, task_of) -> None:
    upstream = task_of(alice, "extract")
    done = task_of(alice, "done")
    finish(done)
    response = api.post("/tasks", task_body(dependencies=[str(upstream.pk), str(done.pk)]), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert sorted(body["dependencies"]) == sorted([str(upstream.pk), str(done.pk)])
    assert body["waiting_on"] == [{"id": str(upstream.pk), "name": "extract", "status": "PENDING", "since": None}]
    assert body["dependency_modes"] == {str(upstream.pk): "fresh", str(done.pk): "fresh"}


@pytest.mark.parametrize("path", ["/tasks/{id}", "/tasks/{id}/"])
def test_get_one_task_with_and_without_trailing_slash(api: APIClient, alice: User, task_of, path: str) -> None:
    task = task_of(alice, "one")
    response = api.get(path.format(id=task.pk))
    assert response.status_code == 200
    assert response.json()["id"] == str(task.pk) and response.json()["name"] == "one"


@pytest.mark.parametrize("path", ["/tasks", "/tasks/"])
def test_list_with_and_without_trailing_slash(api: APIClient, alice: User, task_of, path: str) -> None:
    task_of(alice, "a")
    response = api.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1 and [t["name"] for t in body["results"]] == ["a"]


def test_unknown_or_malformed_id_is_404(api: APIClient) -> None:
    assert api.get(f"/tasks/{uuid.uuid4()}").status_code == 404
    assert api.get("/tasks/not-a-uuid").status_code == 404
    assert api.post("/tasks/not-a-uuid/run").status_code == 404


def test_patch_changes_only_the_given_fields(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "before", priority="LOW", metadata={"keep": 1})
    response = api.patch(f"/tasks/{task.pk}", {"name": "after", "priority": "HIGH"}, format="json")
    assert response.status_code == 200, response.json()
    task.refresh_from_db()
    assert task.name == "after" and task.priority == Priority.HIGH and task.metadata == {"keep": 1}
    assert response.json()["name"] == "after"


@pytest.mark.parametrize("path", ["/tasks/{id}", "/tasks/{id}/"])
def test_put_replaces_the_writable_fields(api: APIClient, alice: User, task_of, path: str) -> None:
    task = task_of(alice, "before", priority="LOW", metadata={"old": True}, timeout_seconds=10)
    response = api.put(
        path.format(id=task.pk),
        {"name": "after", "tags": ["TEST_RECORD"], "task_type": "SCHEDULED", "cron_expr": "*/5 * * * *"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    task.refresh_from_db()
    assert (task.name, task.task_type, task.cron_expr) == ("after", "SCHEDULED", "*/5 * * * *")
    # Left out of a PUT means back to the default, not "keep".
    assert task.priority == Priority.MEDIUM and task.metadata == {} and task.timeout_seconds is None
    assert task.next_fire_at is not None


def test_put_echoing_the_retry_policy_keeps_it(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "t", retry_policy={"name": "mine", "max_retries": 2})
    policy = api.get(f"/tasks/{task.pk}").json()["retry_policy"]
    response = api.put(
        f"/tasks/{task.pk}", {"name": "t", "tags": ["TEST_RECORD"], "retry_policy": policy}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["retry_policy"]["id"] == policy["id"]
    response = api.patch(f"/tasks/{task.pk}", {"retry_policy": {"max_retries": 2}}, format="json")
    assert response.json()["retry_policy"]["id"] == policy["id"]  # same values: no new policy
    assert RetryPolicy.objects.count() == 1


def test_patch_retry_policy_with_new_values_makes_a_new_policy(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "t", retry_policy={"name": "mine", "max_retries": 2})
    response = api.patch(f"/tasks/{task.pk}", {"retry_policy": {"max_retries": 9}}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["retry_policy"]["max_retries"] == 9
    assert RetryPolicy.objects.get(name="mine").max_retries == 2  # a shared policy is never edited in place
    response = api.patch(f"/tasks/{task.pk}", {"retry_policy": None}, format="json")
    assert response.json()["retry_policy"] is None


@pytest.mark.parametrize("path", ["/tasks/{id}", "/tasks/{id}/"])
def test_delete_removes_the_task(api: APIClient, alice: User, task_of, path: str) -> None:
    task = task_of(alice, "gone")
    response = api.delete(path.format(id=task.pk))
    assert response.status_code == 204
    assert not Task.objects.filter(pk=task.pk).exists()
    assert not TaskResult.objects.filter(task_id=task.pk).exists()


def test_delete_a_task_others_depend_on_is_409(api: APIClient, alice: User, task_of) -> None:
    upstream = task_of(alice, "upstream")
    task_of(alice, "downstream", dependencies=[upstream.pk])
    response = api.delete(f"/tasks/{upstream.pk}")
    assert response.status_code == 409
    assert "downstream" in response.json()["detail"]
    assert response.json()["current_status"] == "PENDING"
    assert Task.objects.filter(pk=upstream.pk).exists()


def test_browsable_api_renders_list_detail_and_forms(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "browse")
    for path in ("/tasks", f"/tasks/{task.pk}", "/task_history", "/handlers"):
        response = api.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, path
        assert b"browse" in response.content or path in ("/task_history", "/handlers")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/tasks"),
        ("delete", "/tasks"),
        ("post", "/tasks/status/DONE"),
        ("post", "/task_history"),
        ("delete", "/handlers"),
        ("post", "/tasks/{id}"),
        ("post", "/tasks/{id}/results"),
        ("post", "/tasks/{id}/audit"),
    ],
)
def test_methods_an_endpoint_does_not_offer_are_405(
    api: APIClient, alice: User, task_of, method: str, path: str
) -> None:
    task = task_of(alice, "t")
    response = getattr(api, method)(path.format(id=task.pk))
    assert response.status_code == 405
    assert "not allowed" in response.json()["detail"]
