"""Admin test fixtures: a view-only staff user, a small dependency chain (operator: tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from scheduling import services
from scheduling.models import Task


@pytest.fixture
def viewer(db: None) -> Any:
    """A staff user who may only look at tasks and results."""
    user = get_user_model().objects.create_user("viewer", password="viewer-pw-1", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_task", "view_taskresult", "view_all_tasks"])
    )
    return user


@pytest.fixture
def client_viewer(viewer: Any) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


def create(name: str, **fields: Any) -> Task:
    data: dict[str, Any] = {"name": name, "tags": ["TEST_RECORD"], "parameters": {}}
    data.update(fields)
    return services.task_create(data=data)


@pytest.fixture
def chain(db: None) -> dict[str, Task]:
    """extract -> transform -> load, plus a second dependent of extract (publish)."""
    extract = create("extract")
    transform = create("transform", dependencies=[extract.pk])
    load = create("load", dependencies=[transform.pk])
    publish = create("publish", dependencies=[extract.pk])
    return {"extract": extract, "transform": transform, "load": load, "publish": publish}


def task_url(view: str, *args: Any) -> str:
    return reverse(f"admin:scheduling_task_{view}", args=args)


def task_form(**fields: Any) -> dict[str, Any]:
    """The admin task form as a browser posts it: an IMMEDIATE TEST_RECORD task, ``fields`` changed."""
    return {
        "name": "from the form",
        "handler_tag": "TEST_RECORD",
        "tag_names": "",
        "task_type": "IMMEDIATE",
        "cron_expr": "",
        "timezone": "UTC",
        "overlap_policy": "skip",
        "priority": "2",
        "parameters": "{}",
        "metadata": "{}",
        "enabled": "on",
        "results-TOTAL_FORMS": "0",
        "results-INITIAL_FORMS": "0",
        "results-MIN_NUM_FORMS": "0",
        "results-MAX_NUM_FORMS": "0",
        **fields,
    }
