"""Every invalid request is a 4xx naming the field and what is expected, and writes nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from scheduling.models import RetryPolicy, Task
from tests.api.conftest import snapshot, task_body

HTTP = {"tags": ["HTTP_REQUEST"]}
CRON = {"task_type": "SCHEDULED", "cron_expr": "0 0 * * *"}

# (case, body overrides, field named in the error, words the message must contain)
BAD_CREATES: list[tuple[str, dict[str, Any], str, str]] = [
    ("invalid cron", {"task_type": "SCHEDULED", "cron_expr": "61 * * * *"}, "cron_expr", "minute"),
    ("cron with 4 fields", {"task_type": "SCHEDULED", "cron_expr": "0 0 * *"}, "cron_expr", "5 fields"),
    ("cron on an IMMEDIATE task", {"cron_expr": "0 0 * * *"}, "cron_expr", "only allowed on SCHEDULED"),
    ("SCHEDULED without cron", {"task_type": "SCHEDULED"}, "cron_expr", "required"),
    (
        "unknown time zone",
        {"task_type": "SCHEDULED", "cron_expr": "0 0 * * *", "timezone": "Mars/Base"},
        "timezone",
        "IANA",
    ),
    ("unknown dependency", {"dependencies": [str(uuid.UUID(int=7))]}, "dependencies", "unknown task id"),
    ("dependency not a uuid", {"dependencies": ["abc"]}, "dependencies", "UUID"),
    ("no handler tag", {"tags": ["just-a-label"]}, "tags", "exactly one handler tag"),
    ("two handler tags", {"tags": ["TEST_RECORD", "NOOP"]}, "tags", "exactly one handler tag"),
    ("tags not a list", {"tags": "TEST_RECORD"}, "tags", "list"),
    ("parameters failing the schema", {**HTTP, "parameters": {"method": "GET"}}, "parameters", "'url' is a required"),
    (
        "host not allowed",
        {**HTTP, "parameters": {"url": "http://evil.example.com/x"}},
        "parameters",
        "not in http.allowed_hosts",
    ),
    ("parameters not an object", {"parameters": [1, 2]}, "parameters", "dictionary"),
    ("zero timeout", {"timeout_seconds": 0}, "timeout_seconds", "greater than or equal to 1"),
    ("negative timeout", {"timeout_seconds": -5}, "timeout_seconds", "greater than or equal to 1"),
    ("timeout over the ceiling", {"timeout_seconds": 10**9}, "timeout_seconds", "max_timeout_seconds"),
    ("timeout not a number", {"timeout_seconds": "soon"}, "timeout_seconds", "integer"),
    ("negative retries", {"retry_policy": {"max_retries": -1}}, "retry_policy", "greater than or equal to 0"),
    ("backoff below 1", {"retry_policy": {"backoff_factor": 0.5}}, "retry_policy", "greater than or equal to 1"),
    ("infinite delay", {"retry_policy": {"retry_delay": "inf"}}, "retry_policy", "valid number"),
    ("unknown retry policy field", {"retry_policy": {"tries": 3}}, "retry_policy", "unknown field"),
    ("unknown retry policy id", {"retry_policy": {"id": 999}}, "retry_policy", "unknown retry policy"),
    ("retry policy not an object", {"retry_policy": 5}, "retry_policy", "dictionary"),
    ("unknown priority", {"priority": "URGENT"}, "priority", "HIGH, MEDIUM, LOW"),
    ("priority as a number", {"priority": 1}, "priority", "HIGH, MEDIUM, LOW"),
    ("unknown task_type", {"task_type": "WEEKLY"}, "task_type", "IMMEDIATE, SCHEDULED"),
    ("unknown overlap_policy", {"overlap_policy": "panic"}, "overlap_policy", "skip, queue, replace"),
    ("enabled not a boolean", {"enabled": "perhaps"}, "enabled", "boolean"),
    ("empty name", {"name": ""}, "name", "blank"),
    ("name too long", {"name": "x" * 201}, "name", "200"),
    ("status is read-only", {"status": "DONE"}, "status", "read-only"),
    ("owner is read-only", {"owner": "bob"}, "owner", "read-only"),
    ("created_at is read-only", {"created_at": "2020-01-01T00:00:00Z"}, "created_at", "read-only"),
    ("id is read-only", {"id": str(uuid.UUID(int=1))}, "id", "read-only"),
    ("unknown field", {"colour": "red"}, "colour", "unknown field"),
]


@pytest.mark.parametrize(("case", "fields", "field", "words"), BAD_CREATES, ids=[c[0] for c in BAD_CREATES])
def test_bad_create_is_400_naming_the_field_and_writes_nothing(
    api: APIClient, case: str, fields: dict[str, Any], field: str, words: str
) -> None:
    before = snapshot()
    response = api.post("/tasks", task_body(**fields), format="json")
    assert response.status_code == 400, response.json()
    errors = response.json()
    assert field in errors, errors
    assert words.lower() in json.dumps(errors[field]).lower(), errors
    assert snapshot() == before


def test_name_missing_and_tags_missing_are_both_reported(api: APIClient) -> None:
    response = api.post("/tasks", {"parameters": {}}, format="json")
    assert response.status_code == 400
    assert set(response.json()) >= {"name", "tags"}


def test_several_domain_errors_are_reported_together(api: APIClient) -> None:
    response = api.post(
        "/tasks", task_body(cron_expr="0 0 * * *", tags=["nothing"], timeout_seconds=10**9), format="json"
    )
    assert response.status_code == 400
    assert {"cron_expr", "tags", "timeout_seconds"} <= set(response.json())


def test_dependency_on_a_task_the_user_cannot_see_is_unknown(api: APIClient, bob: User, task_of) -> None:
    hidden = task_of(bob, "bob's")
    before = snapshot()
    response = api.post("/tasks", task_body(dependencies=[str(hidden.pk)]), format="json")
    assert response.status_code == 400
    assert "unknown task id" in response.json()["dependencies"][0]
    assert snapshot() == before


def test_self_dependency_is_400_and_changes_nothing(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "me")
    before = snapshot()
    response = api.patch(f"/tasks/{task.pk}", {"dependencies": [str(task.pk)]}, format="json")
    assert response.status_code == 400
    assert "cannot depend on itself" in response.json()["dependencies"][0]
    assert snapshot() == before


def test_cyclic_dependency_is_400_naming_the_cycle(api: APIClient, alice: User, task_of) -> None:
    first = task_of(alice, "first")
    second = task_of(alice, "second", dependencies=[first.pk])
    third = task_of(alice, "third", dependencies=[second.pk])
    before = snapshot()
    response = api.patch(f"/tasks/{first.pk}", {"dependencies": [str(third.pk)]}, format="json")
    assert response.status_code == 400
    message = response.json()["dependencies"][0]
    assert "cycle" in message and "first" in message and "third" in message
    assert snapshot() == before


def test_bad_put_changes_nothing(api: APIClient, alice: User, task_of) -> None:
    task = task_of(alice, "keep", priority="HIGH")
    before = snapshot()
    response = api.put(
        f"/tasks/{task.pk}", {"name": "new", "tags": ["TEST_RECORD"], "cron_expr": "0 0 * * *"}, format="json"
    )
    assert response.status_code == 400 and "cron_expr" in response.json()
    response = api.put(f"/tasks/{task.pk}", {"name": "new", "tags": ["TEST_RECORD"], "status": "DONE"}, format="json")
    assert response.status_code == 400 and "status" in response.json()
    assert snapshot() == before


def test_retry_policy_id_with_different_values_is_refused(api: APIClient) -> None:
    policy = RetryPolicy.objects.create(name="shared", max_retries=1)
    response = api.post("/tasks", task_body(retry_policy={"id": policy.pk, "max_retries": 5}), format="json")
    assert response.status_code == 400
    assert "leave out id" in response.json()["retry_policy"]["max_retries"][0]


def test_retry_policy_with_a_taken_name_is_refused(api: APIClient, alice: User) -> None:
    """Names are unique among the owner's policies (another user's or a shared one's name is not taken)."""
    RetryPolicy.objects.create(name="mine", owner=alice)
    response = api.post("/tasks", task_body(retry_policy={"name": "mine", "max_retries": 5}), format="json")
    assert response.status_code == 400
    assert "exists" in response.json()["retry_policy"][0]
    assert RetryPolicy.objects.count() == 1 and Task.objects.count() == 0


def test_malformed_json_is_400(api: APIClient) -> None:
    response = api.post("/tasks", data='{"name": "x", "tags": [', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert Task.objects.count() == 0


@pytest.mark.parametrize("payload", ["[]", '"text"', "null", "NaN"])
def test_json_that_is_not_an_object_is_400(api: APIClient, payload: str) -> None:
    response = api.post("/tasks", data=payload, content_type="application/json")
    assert response.status_code == 400
    assert Task.objects.count() == 0


def test_non_json_body_is_415(api: APIClient) -> None:
    response = api.post("/tasks", data="name=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.json()["detail"]


def test_body_over_the_size_limit_is_refused(api: APIClient) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps(task_body(metadata={"blob": "x" * (limit + 10)}))
    response = api.post("/tasks", data=body, content_type="application/json")
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]
    assert Task.objects.count() == 0


def test_body_just_under_the_size_limit_is_accepted(api: APIClient) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    padding = limit - len(json.dumps(task_body(metadata={"blob": ""}))) - 10
    response = api.post(
        "/tasks", data=json.dumps(task_body(metadata={"blob": "x" * padding})), content_type="application/json"
    )
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=BOGUS", "status"),
        ("priority=URGENT", "priority"),
        ("task_type=WEEKLY", "task_type"),
        ("created_after=yesterday", "created_after"),
        ("enabled=maybe", "enabled"),
        ("page_size=many", "page_size"),
    ],
)
def test_bad_list_filters_are_400_naming_the_parameter(api: APIClient, query: str, field: str) -> None:
    response = api.get(f"/tasks?{query}")
    assert response.status_code == 400
    assert field in response.json()


def test_bad_history_filters_are_400(api: APIClient) -> None:
    assert "task" in api.get("/task_history?task=abc").json()
    assert "status" in api.get("/task_history?status=RUNNING").json()  # not a finished status
    assert "finished_after" in api.get("/task_history?finished_after=noon").json()


def test_unknown_ordering_field_is_ignored_not_an_error(api: APIClient) -> None:
    assert api.get("/tasks?ordering=password").status_code == 200


def test_json_nested_past_the_parsers_limit_is_400_not_500(api: APIClient) -> None:
    depth = 100_000
    body = '{"name": "x", "tags": ["TEST_RECORD"], "metadata": {"a": ' + "[" * depth + "]" * depth + "}}"
    response = api.post("/tasks", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


def test_deeply_nested_metadata_is_400(api: APIClient) -> None:
    nested: Any = "leaf"
    for _ in range(40):
        nested = {"k": nested}
    response = api.post("/tasks", task_body(metadata=nested), format="json")
    assert response.status_code == 400
    assert "nested deeper than 32" in response.json()["metadata"][0]
    assert Task.objects.count() == 0


@pytest.mark.parametrize("where", ["metadata", "parameters"])
def test_nul_characters_in_json_fields_are_400(api: APIClient, where: str) -> None:
    response = api.post("/tasks", task_body(**{where: {"note": "a\u0000b"}}), format="json")
    assert response.status_code == 400
    assert "NUL" in response.json()[where][0]
    assert Task.objects.count() == 0


def test_nul_character_in_name_is_400(api: APIClient) -> None:
    response = api.post("/tasks", task_body(name="a\u0000b"), format="json")
    assert response.status_code == 400 and "name" in response.json()
