"""Fixtures for the REST API tests: users with model permissions, token-authenticated clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling import services
from scheduling.engine import lifecycle
from scheduling.models import RetryPolicy, Task, TaskAudit, TaskResult

TASK_PERMS = ("view_task", "add_task", "change_task", "delete_task")


@pytest.fixture(autouse=True)
def _fresh_throttle() -> None:
    """Start every test with empty throttle counters (they live in the cache)."""
    cache.clear()


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    """Create a user holding the given scheduling permissions (codenames)."""

    def make(username: str, perms: tuple[str, ...] = TASK_PERMS, **fields: Any) -> User:
        user = User.objects.create_user(username=username, password="pw-" + username, **fields)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label="scheduling", codename__in=perms))
        return user

    return make


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    """Return an API client that sends the user's token (Authorization: Token ...)."""

    def make(user: User) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    return make_user("bob")


@pytest.fixture
def api(alice: User, client_for: Callable[[User], APIClient]) -> APIClient:
    """Alice's client: she may view, add, change and delete her own tasks."""
    return client_for(alice)


@pytest.fixture
def task_of(db: None) -> Callable[..., Task]:
    """Create a task for an owner through the service layer."""

    def make(owner: User | None, name: str = "task", **fields: Any) -> Task:
        data: dict[str, Any] = {"name": name, "tags": ["TEST_RECORD"], "parameters": {"label": name}}
        data.update(fields)
        return services.task_create(data=data, owner=owner)

    return make


def task_body(**fields: Any) -> dict[str, Any]:
    """Return a valid POST /tasks body, with ``fields`` overriding."""
    body: dict[str, Any] = {"name": "report", "tags": ["TEST_RECORD"], "parameters": {"label": "x"}}
    body.update(fields)
    return body


def finish(task: Task, status: str = "DONE", **fields: Any) -> TaskResult:
    """Drive the task's waiting attempt through QUEUED and RUNNING to ``status``, as a worker would."""
    result = TaskResult.objects.filter(task=task, status__in=("PENDING", "RETRY")).latest("created_at")
    lifecycle.move(result, "QUEUED")
    lifecycle.move(result, "RUNNING")
    return lifecycle.move(result, status, claim=result.claim, **fields)


def snapshot() -> dict[str, Any]:
    """Return what a refused request must leave unchanged: row counts and every task's stored fields."""
    return {
        "tasks": list(Task.objects.order_by("pk").values()),
        "results": TaskResult.objects.count(),
        "policies": RetryPolicy.objects.count(),
        "audit": TaskAudit.objects.count(),
        "tags": list(Task.tags.through.objects.order_by("pk").values_list("task_id", "tag_id")),
        "deps": list(Task.dependencies.through.objects.order_by("pk").values_list("from_task_id", "to_task_id")),
    }
