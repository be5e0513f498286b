"""POST /tasks with a JSON list: many tasks, all or none, errors by index and field, one throttled request.

(The service's own rules: tests/scheduling/test_services_bulk.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from scheduling import services
from scheduling.api.permissions import WriteRateThrottle
from scheduling.models import RetryPolicy, Task, TaskAudit, TaskResult
from tests.api.conftest import snapshot, task_body


def bodies(count: int, **fields: Any) -> list[dict[str, Any]]:
    return [task_body(name=f"t{n}", **fields) for n in range(count)]


def test_a_list_creates_every_task_and_answers_them_in_order(api: APIClient, alice: User) -> None:
    response = api.post("/tasks", bodies(3, priority="HIGH"), format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert [t["name"] for t in created] == ["t0", "t1", "t2"]
    assert "Location" not in response
    for shown in created:  # the TaskSerializer form, as GET /tasks/{id} shows it
        assert api.get(f"/tasks/{shown['id']}").json() == shown
    assert Task.objects.filter(owner=alice).count() == 3
    assert TaskAudit.objects.filter(action="created").count() == 3
    assert set(TaskResult.objects.values_list("status", flat=True)) == {"PENDING"}


def test_a_single_object_still_answers_one_task_with_location(api: APIClient) -> None:
    response = api.post("/tasks", task_body(), format="json")
    assert response.status_code == 201 and response["Location"] == f"/tasks/{response.json()['id']}"


def test_one_bad_task_writes_nothing_and_errors_name_it_by_index(api: APIClient, alice: User, task_of) -> None:
    task_of(alice, "before")
    before = snapshot()
    body = [task_body(name="a"), task_body(name="b", task_type="SCHEDULED"), task_body(name="c")]
    response = api.post("/tasks", body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == ["1"]  # only the bad task, by its index in the list (DRF's list errors)
    assert list(errors["1"]) == ["cron_expr"] and "is required for a SCHEDULED task" in errors["1"]["cron_expr"][0]
    assert snapshot() == before


def test_shape_errors_are_reported_per_item_too(api: APIClient) -> None:
    body = [task_body(), task_body(priority="URGENT", status="DONE"), "not an object", task_body()]
    before = snapshot()
    response = api.post("/tasks", body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {"1", "2"}
    assert set(errors["1"]) == {"priority", "status"} and "is read-only" in errors["1"]["status"][0]
    assert "Expected a dictionary" in errors["2"]["non_field_errors"][0]
    assert snapshot() == before


def test_the_same_messages_as_a_single_create(api: APIClient) -> None:
    bad = task_body(name="x" * 201, tags=["TEST_RECORD", "NOOP"])
    single = api.post("/tasks", bad, format="json")
    many = api.post("/tasks", [task_body(), bad], format="json")
    assert single.status_code == many.status_code == 400
    assert many.json() == {"1": single.json()}


def test_more_than_max_bulk_is_a_400_saying_the_limit_and_how_to_raise_it(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(settings.TASKHUB["security"], "max_bulk", 2)
    response = api.post("/tasks", bodies(3), format="json")
    assert response.status_code == 400
    (message,) = response.json()["non_field_errors"]
    assert "at most 2 tasks" in message and "got 3" in message and "security.max_bulk" in message
    assert not Task.objects.exists()
    assert api.post("/tasks", bodies(2), format="json").status_code == 201


def test_an_empty_list_is_a_400(api: APIClient) -> None:
    response = api.post("/tasks", [], format="json")
    assert response.status_code == 400 and "at least one task" in response.json()["non_field_errors"][0]


def test_a_list_counts_as_one_request_against_the_write_throttle(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(WriteRateThrottle.THROTTLE_RATES, "writes", "2/minute")
    assert api.post("/tasks", bodies(20), format="json").status_code == 201
    assert api.post("/tasks", bodies(20), format="json").status_code == 201
    refused = api.post("/tasks", bodies(20), format="json")
    assert refused.status_code == 429 and "Retry-After" in refused
    assert Task.objects.count() == 40


def test_creating_needs_the_add_permission(make_user: Callable[..., User], client_for) -> None:
    viewer = client_for(make_user("viewer", perms=("view_task",)))
    response = viewer.post("/tasks", bodies(2), format="json")
    assert response.status_code == 403 and "scheduling.add_task" in response.json()["detail"]
    assert not Task.objects.exists()


def test_a_dependency_on_a_task_the_user_cannot_see_is_unknown(api: APIClient, bob: User, task_of) -> None:
    hidden = task_of(bob, "bob's")
    before = snapshot()
    response = api.post("/tasks", [task_body(), task_body(dependencies=[str(hidden.pk)])], format="json")
    assert response.status_code == 400
    assert response.json() == {"1": {"dependencies": [f"unknown task id(s): {hidden.pk}"]}}
    assert snapshot() == before


def test_another_users_retry_policy_is_refused(api: APIClient, bob: User) -> None:
    policy = RetryPolicy.objects.create(name="bob's", owner=bob)
    response = api.post("/tasks", [task_body(retry_policy={"id": policy.pk}), task_body()], format="json")
    assert response.status_code == 400
    assert response.json() == {"0": {"retry_policy": {"id": [f"unknown retry policy {policy.pk}"]}}}
    assert not Task.objects.exists()


def test_dependencies_on_visible_tasks_are_linked(api: APIClient, alice: User, task_of) -> None:
    upstream = task_of(alice, "up")
    response = api.post("/tasks", bodies(2, dependencies=[str(upstream.pk)]), format="json")
    assert response.status_code == 201
    assert all(shown["dependencies"] == [str(upstream.pk)] for shown in response.json())


def _statements(api: APIClient, count: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert api.post("/tasks", bodies(count, tags=["TEST_RECORD", "mine"]), format="json").status_code == 201
    return len(queries.captured_queries)


def test_statements_per_request_do_not_grow_with_the_list(api: APIClient) -> None:
    five, fifty = _statements(api, 5), _statements(api, 50)
    assert fifty <= five + 2, (five, fifty)


def test_the_schema_documents_both_body_shapes(db: None) -> None:
    schema = APIClient().get("/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    post = schema["paths"]["/tasks"]["post"]
    request = post["requestBody"]["content"]["application/json"]["schema"]
    assert request == {"$ref": "#/components/schemas/TaskCreateRequest"}
    shapes = schema["components"]["schemas"]["TaskCreateRequest"]["oneOf"]
    assert {"$ref": "#/components/schemas/TaskWriteRequest"} in shapes
    assert {"type": "array", "items": {"$ref": "#/components/schemas/TaskWriteRequest"}} in shapes
    created = schema["components"]["schemas"]["TaskCreated"]["oneOf"]
    assert {"type": "array", "items": {"$ref": "#/components/schemas/Task"}} in created
    assert "security.max_bulk" in post["description"]
    refused = post["responses"]["400"]["content"]["application/json"]["schema"]["anyOf"]
    assert {"$ref": "#/components/schemas/ItemFieldErrors"} in refused
    by_index = schema["components"]["schemas"]["ItemFieldErrors"]["additionalProperties"]
    assert by_index == {"$ref": "#/components/schemas/FieldErrors"}


def test_the_service_is_the_one_path(api: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = services.task_create_many

    def spy(**kwargs: Any) -> list[Task]:
        calls.append(len(kwargs["items"]))
        return real(**kwargs)

    monkeypatch.setattr(services, "task_create_many", spy)
    assert api.post("/tasks", bodies(4), format="json").status_code == 201
    assert calls == [4]
