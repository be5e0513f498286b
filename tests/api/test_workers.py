"""GET /workers and /workers/{name}: workers from their heartbeats, who may read them, and attempts naming them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from scheduling.engine import workers
from scheduling.models import AttemptStatus, TaskResult, Worker

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)


def beat(name: str, seconds_ago: float, **fields: Any) -> None:
    values: dict[str, Any] = {
        "name": name,
        "host": name.split("@")[-1],
        "pid": 4000,
        "pool": "prefork",
        "concurrency": 4,
        "processes": [4002, 4001],
        "queues": ["celery"],
        "interval": 10,
    }
    workers.register(workers.Report(**{**values, **fields}), now=NOW - timedelta(seconds=seconds_ago))


@pytest.fixture
def fleet(make_task: Any) -> Any:
    """w-a online running two attempts, w-b silent for 25 s (offline), w-c shut down cleanly."""
    with time_machine.travel(NOW, tick=False):
        beat("w-a@h1", 3, queues=["jira", "celery"])
        beat("w-b@h2", 25)
        beat("w-c@h3", 60)
        workers.stopped("w-c@h3", now=NOW - timedelta(seconds=50))
        task = make_task("busy")
        TaskResult.objects.filter(task=task).update(status=AttemptStatus.RUNNING, worker_node="w-a@h1")
        TaskResult.objects.create(task=task, attempt=2, status=AttemptStatus.RUNNING, worker_node="w-a@h1")
        TaskResult.objects.create(task=task, attempt=3, status=AttemptStatus.DONE, worker_node="w-b@h2")
    return task


@pytest.fixture
def ops(make_user: Callable[..., User], client_for: Callable[[User], APIClient]) -> APIClient:
    return client_for(make_user("ops", perms=("view_worker",)))


@time_machine.travel(NOW, tick=False)
def test_workers_are_listed_online_first_with_their_heartbeat(ops: APIClient, fleet: Any) -> None:
    body = ops.get("/workers").json()
    assert body["count"] == 3
    rows = body["results"]
    assert [(r["name"], r["state"], r["online"], r["running"]) for r in rows] == [
        ("w-a@h1", "online", True, 2),
        ("w-b@h2", "offline", False, 0),
        ("w-c@h3", "stopped", False, 0),
    ]
    first = rows[0]
    assert (first["host"], first["pid"], first["pool"], first["concurrency"]) == ("h1", 4000, "prefork", 4)
    assert (first["processes"], first["queues"], first["heartbeat_interval"]) == ([4001, 4002], ["celery", "jira"], 10)
    assert first["last_seen"] == "2026-11-29T12:29:57Z" and first["offline_after"] == "2026-11-29T12:30:17Z"
    assert rows[2]["stopped_at"] == "2026-11-29T12:29:10Z"
    assert [r["name"] for r in ops.get("/workers?online=true").json()["results"]] == ["w-a@h1"]
    assert [r["name"] for r in ops.get("/workers/?online=false").json()["results"]] == ["w-b@h2", "w-c@h3"]
    one = ops.get("/workers/w-a@h1")
    assert one.status_code == 200 and one.json() == first


def test_the_online_filter_says_what_it_expects(ops: APIClient) -> None:
    response = ops.get("/workers?online=maybe")
    assert response.status_code == 400
    assert response.json() == {"online": ["expected true or false, got 'maybe'"]}


def test_an_unknown_worker_is_a_json_404(ops: APIClient) -> None:
    for path in ("/workers/nobody@nowhere", "/workers/nobody/extra", "/workers/a%00b", "/workers/" + "x" * 300):
        response = ops.get(path)
        assert response.status_code == 404 and response.json()["detail"], path


def test_workers_need_the_view_worker_permission(
    make_user: Callable[..., User], client_for: Callable[[User], APIClient], fleet: Any
) -> None:
    assert APIClient().get("/workers").status_code == 401
    task_user = client_for(make_user("tasks-only"))  # view/add/change/delete on tasks, not workers
    for path in ("/workers", "/workers/w-a@h1"):
        response = task_user.get(path)
        assert response.status_code == 403
        assert response.json() == {"detail": "You need the permission scheduling.view_worker for this."}
    for method in ("post", "put", "patch", "delete"):
        assert (
            getattr(client_for(make_user(f"w-{method}", perms=("view_worker",))), method)("/workers/w-a@h1").status_code
            == 405
        )


def test_an_attempt_names_its_worker_node(fleet: Any, make_user: Callable[..., User], client_for: Any) -> None:
    owner = make_user("owner", perms=("view_task", "view_all_tasks"))
    results = client_for(owner).get(f"/tasks/{fleet.pk}/results").json()["results"]
    assert {r["attempt"]: r["worker_node"] for r in results} == {1: "w-a@h1", 2: "w-a@h1", 3: "w-b@h2"}


def test_the_openapi_document_describes_workers(ops: APIClient) -> None:
    schema = APIClient().get("/schema?format=json").json()
    assert {"/workers", "/workers/{name}"} <= set(schema["paths"])
    listing = schema["paths"]["/workers"]["get"]
    assert {"200", "400", "401", "403"} <= set(listing["responses"])
    assert "404" in schema["paths"]["/workers/{name}"]["get"]["responses"]
    assert "online" in {p["name"] for p in listing["parameters"]}
    fields = schema["components"]["schemas"]["Worker"]["properties"]
    assert {"name", "host", "state", "online", "processes", "queues", "running", "last_seen"} <= set(fields)
    assert "worker_node" in schema["components"]["schemas"]["TaskResult"]["properties"]


@time_machine.travel(NOW, tick=False)
def test_the_admin_result_page_links_to_its_worker_and_the_worker_list_shows_state(
    client_op: Client, fleet: Any
) -> None:
    worker = Worker.objects.get(name="w-a@h1")
    result = TaskResult.objects.filter(worker_node="w-a@h1").first()
    page = client_op.get(reverse("admin:scheduling_taskresult_change", args=[result.pk])).content.decode()
    assert f'<a href="{reverse("admin:scheduling_worker_change", args=[worker.pk])}">w-a@h1</a>' in page
    TaskResult.objects.filter(pk=result.pk).update(worker_node="forgotten@h9")
    page = client_op.get(reverse("admin:scheduling_taskresult_change", args=[result.pk])).content.decode()
    assert "forgotten@h9 <small>(no longer known)</small>" in page
    listing = client_op.get(reverse("admin:scheduling_worker_changelist")).content.decode()
    assert listing.count('alt="True"') == 1 and listing.count('alt="False"') == 2  # the online column
    assert "?worker_node=w-a@h1&amp;status__exact=RUNNING" in listing.replace("%40", "@")
    detail = client_op.get(reverse("admin:scheduling_worker_change", args=[worker.pk])).content.decode()
    assert "online" in detail and "prefork: 4001, 4002" in detail
    assert "2026-11-29 12:29:57 UTC (3 s ago)" in detail
