"""One set of limits: the admin form, the API and the CLI refuse the same over-the-limit task with the same message.

The limits are defined once (scheduling.validation: MAX_TAGS, MAX_DEPENDENCIES, NAME_MAX_LENGTH,
TAG_MAX_LENGTH; the configured security.max_parameters_bytes and scheduler.max_timeout_seconds) and applied
by the one validation service every path calls. The admin form used to take 100,000 tags where the API
refused more than 50.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling import services, validation
from scheduling.models import Task
from tests.admin.conftest import task_form

pytestmark = pytest.mark.django_db

PATHS = ["admin", "api", "cli"]
EXTRA_TAGS = [f"label-{n}" for n in range(validation.MAX_TAGS)]  # + the handler tag: one over the limit


def _dependencies(count: int) -> list[str]:
    return [str(services.task_create(data={"name": f"dep {n}", "tags": ["TEST_RECORD"]}).pk) for n in range(count)]


# limit -> (fields over the limit, built lazily; the field whose error is expected; the message)
LIMITS: dict[str, tuple[Callable[[], dict[str, Any]], str, str]] = {
    "tags": (
        lambda: {"tags": ["TEST_RECORD", *EXTRA_TAGS]},
        "tags",
        f"at most {validation.MAX_TAGS} tags per task, got {validation.MAX_TAGS + 1}",
    ),
    "tag length": (
        lambda: {"tags": ["TEST_RECORD", "t" * (validation.TAG_MAX_LENGTH + 1)]},
        "tags",
        f"each tag must be 1-{validation.TAG_MAX_LENGTH} printable characters",
    ),
    "name length": (
        lambda: {"name": "n" * (validation.NAME_MAX_LENGTH + 1)},
        "name",
        f"must be at most {validation.NAME_MAX_LENGTH} characters, got {validation.NAME_MAX_LENGTH + 1}",
    ),
    "parameters size": (
        lambda: {"parameters": {"label": "p" * 300}},
        "parameters",
        "more than the limit of 200 (security.max_parameters_bytes)",
    ),
    "dependencies": (
        lambda: {"dependencies": _dependencies(validation.MAX_DEPENDENCIES + 1)},
        "dependencies",
        f"at most {validation.MAX_DEPENDENCIES} dependencies, got {validation.MAX_DEPENDENCIES + 1}",
    ),
    "timeout ceiling": (
        lambda: {"timeout_seconds": settings.TASKHUB["scheduler"]["max_timeout_seconds"] + 1},
        "timeout_seconds",
        f"must be at most {settings.TASKHUB['scheduler']['max_timeout_seconds']} (scheduler.max_timeout_seconds)",
    ),
}


@pytest.fixture(autouse=True)
def small_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(settings.TASKHUB["security"], "max_parameters_bytes", 200)


def through_admin(client: Client, fields: dict[str, Any]) -> list[str]:
    """Post the admin add form; return the messages shown for the task (nothing created is asserted by the caller)."""
    form = task_form(name=fields.get("name", "limited"))
    if "tags" in fields:
        form["tag_names"] = ", ".join(t for t in fields["tags"] if t != "TEST_RECORD")
    if "parameters" in fields:
        form["parameters"] = json.dumps(fields["parameters"])
    if "dependencies" in fields:
        form["dependencies"] = fields["dependencies"]
    if "timeout_seconds" in fields:
        form["timeout_seconds"] = str(fields["timeout_seconds"])
    response = client.post(reverse("admin:scheduling_task_add"), form)
    assert response.status_code == 200, "the form should come back with the error"
    return [m for messages in response.context["adminform"].form.errors.values() for m in messages]


def through_api(client: APIClient, fields: dict[str, Any]) -> list[str]:
    body = {"name": "limited", "tags": ["TEST_RECORD"], **fields}
    response = client.post("/tasks", body, format="json")
    assert response.status_code == 400, response.content
    return [m for messages in response.json().values() for m in messages]


def through_cli(fields: dict[str, Any]) -> list[str]:
    task = Task.objects.get(name="target")
    sets = [f"{key}={json.dumps(value)}" for key, value in fields.items()]
    args = [arg for item in sets for arg in ("--set", item)]
    with pytest.raises(CommandError) as error:
        call_command("task_action", "change", str(task.pk), *args, "--user", "operator")
    return [str(error.value)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("limit", list(LIMITS))
def test_each_limit_is_refused_the_same_way_on_every_path(
    limit: str, path: str, operator: Any, client_op: Client
) -> None:
    target = services.task_create(data={"name": "target", "tags": ["TEST_RECORD"]})
    build, field, message = LIMITS[limit]
    fields = build()
    tasks_before = Task.objects.count()
    if path == "admin":
        messages = through_admin(client_op, fields)
    elif path == "api":
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator).key}")
        messages = through_api(api, fields)
    else:
        messages = through_cli(fields)
    assert any(message in m for m in messages), messages
    assert Task.objects.count() == tasks_before  # nothing created
    target.refresh_from_db()
    assert target.name == "target" and target.tags.count() == 1 and target.dependencies.count() == 0


@pytest.mark.parametrize("path", PATHS)
def test_exactly_the_tag_limit_is_accepted_on_every_path(path: str, operator: Any, client_op: Client) -> None:
    tags = ["TEST_RECORD", *EXTRA_TAGS[:-1]]  # 50 in all
    if path == "admin":
        form = task_form(name="at the limit", tag_names=", ".join(tags[1:]))
        assert client_op.post(reverse("admin:scheduling_task_add"), form).status_code == 302
        task = Task.objects.get(name="at the limit")
    elif path == "api":
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator).key}")
        response = api.post("/tasks", {"name": "at the limit", "tags": tags}, format="json")
        assert response.status_code == 201, response.content
        task = Task.objects.get(pk=response.json()["id"])
    else:
        task = services.task_create(data={"name": "at the limit", "tags": ["TEST_RECORD"]})
        call_command("task_action", "change", str(task.pk), "--set", f"tags={json.dumps(tags)}")
    assert task.tags.count() == validation.MAX_TAGS
