"""Abuse limits: parameters size, dependency count, request body size, write rate, tasks per list, with clear errors.

(Page size: tests/api/test_lists.py; timeout ceiling: tests/api/test_bad_input.py; throttling itself:
tests/api/test_auth.py. Here: the limits that were missing and that the configuration now sets.)
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.test import APIClient

from scheduling import services
from scheduling.models import Task
from taskhub import config as taskhub_config
from taskhub.exceptions import ConfigError, ValidationError
from tests.api.conftest import snapshot, task_body


@pytest.fixture
def small_parameters(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setitem(settings.TASKHUB["security"], "max_parameters_bytes", 200)
    return 200


def test_parameters_over_the_limit_are_400_naming_the_size_and_setting(api: APIClient, small_parameters: int) -> None:
    before = snapshot()
    response = api.post("/tasks", task_body(parameters={"label": "x" * 300}), format="json")
    assert response.status_code == 400
    message = response.json()["parameters"][0]
    assert "more than the limit of 200" in message and "security.max_parameters_bytes" in message
    assert snapshot() == before


def test_parameters_at_the_limit_are_accepted(api: APIClient, small_parameters: int) -> None:
    overhead = len(json.dumps({"label": ""}, separators=(",", ":")))
    response = api.post("/tasks", task_body(parameters={"label": "x" * (200 - overhead)}), format="json")
    assert response.status_code == 201, response.json()


def test_size_counts_utf8_bytes_not_characters(api: APIClient, small_parameters: int) -> None:
    response = api.post("/tasks", task_body(parameters={"label": "é" * 150}), format="json")  # 300 bytes
    assert response.status_code == 400 and "parameters" in response.json()


def test_secret_parameters_have_the_same_limit(api: APIClient, small_parameters: int) -> None:
    body = task_body(
        tags=["HTTP_REQUEST"],
        parameters={"url": "http://127.0.0.1/"},
        secret_parameters={"headers": {"Authorization": "x" * 300}},
    )
    response = api.post("/tasks", body, format="json")
    assert response.status_code == 400
    assert "security.max_parameters_bytes" in response.json()["secret_parameters"][0]
    assert "x" * 300 not in response.content.decode()  # the refused secret is not echoed


def test_patch_over_the_limit_changes_nothing(api: APIClient, alice: User, task_of, small_parameters: int) -> None:
    task = task_of(alice, "keep")
    before = snapshot()
    response = api.patch(f"/tasks/{task.pk}", {"parameters": {"label": "y" * 500}}, format="json")
    assert response.status_code == 400 and "parameters" in response.json()
    assert snapshot() == before


def test_the_limit_holds_for_the_admin_and_cli_path_too(db: None, small_parameters: int) -> None:
    with pytest.raises(ValidationError) as error:
        services.task_create(data={"name": "big", "tags": ["TEST_RECORD"], "parameters": {"label": "z" * 500}})
    assert "security.max_parameters_bytes" in error.value.errors["parameters"][0]


def test_more_than_100_dependencies_are_refused(api: APIClient, alice: User, task_of) -> None:
    ids = [str(task_of(alice, f"dep {n}").pk) for n in range(101)]
    before = snapshot()
    response = api.post("/tasks", task_body(dependencies=ids), format="json")
    assert response.status_code == 400
    assert response.json()["dependencies"] == ["at most 100 dependencies, got 101"]
    assert snapshot() == before
    assert api.post("/tasks", task_body(dependencies=ids[:100]), format="json").status_code == 201


def test_dependency_limit_holds_below_the_api(db: None, task_of) -> None:
    ids = [task_of(None, f"d{n}").pk for n in range(101)]
    with pytest.raises(ValidationError) as error:
        services.task_create(data={"name": "many", "tags": ["TEST_RECORD"], "dependencies": ids})
    assert "at most 100 dependencies" in error.value.errors["dependencies"][0]


def test_request_body_limit_comes_from_the_config(api: APIClient) -> None:
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.TASKHUB["security"]["max_request_bytes"]
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048):
        response = api.post("/tasks", task_body(metadata={"blob": "x" * 3000}), format="json")
    assert response.status_code == 413 and "2048" in response.json()["detail"]
    assert Task.objects.count() == 0


def test_write_rate_comes_from_the_config() -> None:
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["writes"] == settings.TASKHUB["security"]["write_rate"]


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("security", "write_rate", "lots", "expected a rate such as 600/minute"),
        ("security", "write_rate", "0/minute", "expected a rate such as 600/minute"),
        ("security", "max_request_bytes", 10, "expected an integer >= 1024"),
        ("security", "max_parameters_bytes", 0, "expected a positive integer"),
        ("security", "max_bulk", 0, "expected a positive integer"),
        ("security", "max_bulk", "many", "expected a positive integer"),
        ("security", "max_bulk", True, "expected a positive integer"),
    ],
)
def test_bad_limit_values_are_config_errors(section: str, key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        taskhub_config.parse({section: {key: value}}, env={})
    assert str(error.value).startswith(f"{section}.{key}: {expected}")


def test_limits_can_be_set_from_the_environment() -> None:
    loaded = taskhub_config.parse(
        {},
        env={
            "TASKHUB_SECURITY_WRITE_RATE": "30/second",
            "TASKHUB_SECURITY_MAX_REQUEST_BYTES": "2097152",
            "TASKHUB_SECURITY_MAX_PARAMETERS_BYTES": "1000",
            "TASKHUB_SECURITY_MAX_BULK": "5000",
        },
    )
    assert loaded["security"]["max_bulk"] == 5000
    assert loaded.security.max_bulk == 5000
    assert taskhub_config.parse({}, env={}).security.max_bulk == 1000
    assert loaded["security"]["write_rate"] == "30/second"
    assert loaded["security"]["max_request_bytes"] == 2097152
    assert loaded["security"]["max_parameters_bytes"] == 1000
