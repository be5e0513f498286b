"""GET /pipeline_runs/{id}: each task's status in a pipeline run, the run's status, the tasks' visibility rules."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import User
from rest_framework.test import APIClient

from scheduling.models import PipelineRun, Task, TaskResult
from tests.api.conftest import finish


def test_a_pipeline_run_shows_each_task_once_and_hides_what_the_reader_may_not_see(
    api: APIClient, alice: User, bob: User, make_user: Callable[..., User], client_for, task_of
) -> None:
    root = task_of(alice, "extract")
    mine = task_of(alice, "load", dependencies=[root.pk])
    theirs = task_of(None, "bobs-report", dependencies=[root.pk])  # bob cannot name alice's task himself
    Task.objects.filter(pk=theirs.pk).update(owner=bob)
    for task in (root, mine, theirs):
        finish(task)
    admin = make_user("carol", is_superuser=True)
    started = client_for(admin).post(f"/tasks/{root.pk}/run?downstream=all")
    assert started.status_code == 202, started.json()
    run_id = started.json()["downstream"]["pipeline_run"]
    assert PipelineRun.objects.get(pk=run_id).actor == admin

    shown = api.get(f"/pipeline_runs/{run_id}")
    assert shown.status_code == 200, shown.json()
    body = shown.json()
    assert body["status"] == "RUNNING" and body["root_task"] == str(root.pk) and body["which"] == "all"
    assert body["origin"] == "run" and body["created_by"] == "carol"
    assert sorted(t["name"] for t in body["tasks"]) == ["extract", "load"]
    assert body["hidden_tasks"] == 1
    assert "bobs-report" not in shown.content.decode()
    assert {t["status"] for t in body["tasks"]} == {"PENDING"}

    # Bob may not see the root task: the run does not exist for him. A missing or malformed id is a 404 too.
    assert client_for(bob).get(f"/pipeline_runs/{run_id}").status_code == 404
    assert api.get("/pipeline_runs/999999").status_code == 404
    assert api.get("/pipeline_runs/x").status_code == 404
    viewer = make_user("dave", perms=("view_task", "view_all_tasks"))
    everything = client_for(viewer).get(f"/pipeline_runs/{run_id}").json()
    assert everything["hidden_tasks"] == 0 and len(everything["tasks"]) == 3
    nobody = make_user("erin", perms=())
    assert client_for(nobody).get(f"/pipeline_runs/{run_id}").status_code == 403

    for task in (root, mine, theirs):
        finish(Task.objects.get(pk=task.pk))
    done = api.get(f"/pipeline_runs/{run_id}/").json()
    assert done["status"] == "DONE"
    assert all(t["finished_at"] and t["started_at"] for t in done["tasks"])

    # Each attempt names its pipeline run.
    results = api.get(f"/tasks/{mine.pk}/results").json()["results"]
    assert [r["pipeline_run"] for r in results] == [run_id, None]
    assert TaskResult.objects.filter(pipeline_run_id=run_id).count() == 3


def test_a_failed_task_makes_the_run_failed(api: APIClient, alice: User, task_of) -> None:
    root = task_of(alice, "extract")
    load = task_of(alice, "load", dependencies=[root.pk])
    finish(root)
    finish(load)
    run_id = api.post(f"/tasks/{root.pk}/run?downstream=all").json()["downstream"]["pipeline_run"]
    finish(Task.objects.get(pk=root.pk), "FAILED", error_message="boom")
    from scheduling.engine import lifecycle

    lifecycle.fail_dependents(
        Task.objects.get(pk=root.pk), reason="dependency 'extract' failed", pipeline_run_id=run_id
    )
    body = api.get(f"/pipeline_runs/{run_id}").json()
    assert body["status"] == "FAILED"
    assert {t["name"]: t["status"] for t in body["tasks"]} == {"extract": "FAILED", "load": "FAILED"}


def test_the_schema_documents_pipeline_runs(api: APIClient) -> None:
    schema = api.get("/schema?format=json").json()
    assert "/pipeline_runs/{id}" in schema["paths"]
    assert "PipelineRun" in schema["components"]["schemas"]
    assert "pipeline_run" in schema["components"]["schemas"]["TaskResult"]["properties"]
