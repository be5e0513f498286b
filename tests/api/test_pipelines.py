"""Dependency modes and retry with downstream through the API: set and shown back, ?downstream= on run/retry."""

from __future__ import annotations

from django.contrib.auth.models import User
from rest_framework.test import APIClient

from scheduling.engine import lifecycle
from scheduling.models import Task, TaskAudit, TaskResult
from tests.api.conftest import finish, task_body


def test_a_dependency_mode_is_set_shown_back_and_kept_by_a_plain_id(api: APIClient, alice: User, task_of) -> None:
    export = task_of(alice, "export")
    other = task_of(alice, "other")
    body = task_body(dependencies=[{"id": str(export.pk), "mode": "any"}, str(other.pk)], dependency_timeout=600)
    response = api.post("/tasks", body, format="json")
    assert response.status_code == 201, response.json()
    shown = response.json()
    assert shown["dependency_modes"] == {str(export.pk): "any", str(other.pk): "fresh"}
    assert shown["dependency_timeout"] == 600
    patched = api.patch(f"/tasks/{shown['id']}", {"dependencies": [str(export.pk)]}, format="json")
    assert patched.status_code == 200, patched.json()
    assert patched.json()["dependency_modes"] == {str(export.pk): "any"}
    fresh = api.patch(
        f"/tasks/{shown['id']}", {"dependencies": [{"id": str(export.pk), "mode": "fresh"}]}, format="json"
    )
    assert fresh.json()["dependency_modes"] == {str(export.pk): "fresh"}
    audit = TaskAudit.objects.filter(task_id=shown["id"], action="changed").order_by("created_at", "id").last()
    assert audit.changes["dependencies"] == [["export (any run)"], ["export"]]


def test_a_bad_mode_or_entry_is_a_400_naming_the_field(api: APIClient, alice: User, task_of) -> None:
    export = task_of(alice, "export")
    for entry in ({"id": str(export.pk), "mode": "often"}, {"mode": "any"}, {"id": str(export.pk), "x": 1}, 7):
        response = api.post("/tasks", task_body(dependencies=[entry]), format="json")
        assert response.status_code == 400, (entry, response.json())
        assert "dependencies" in response.json()
    assert api.post("/tasks", task_body(dependency_timeout=0), format="json").status_code == 400


def test_waiting_on_says_since_when_a_fresh_run_is_awaited(api: APIClient, alice: User, task_of) -> None:
    export = task_of(alice, "export")
    finish(export)
    report = task_of(alice, "report", dependencies=[export.pk], task_type="SCHEDULED", cron_expr="0 3 * * *")
    api.post(f"/tasks/{report.pk}/run")
    finish(report)  # consumed the export's run
    api.post(f"/tasks/{report.pk}/run")
    (held,) = api.get(f"/tasks/{report.pk}").json()["waiting_on"]
    started = TaskResult.objects.filter(task=report, status="DONE").get().started_at
    assert held["name"] == "export" and held["status"] == "DONE"
    assert held["since"].replace("Z", "+00:00") == started.isoformat()
    listed = {t["name"]: t["waiting_on"] for t in api.get("/tasks").json()["results"]}
    assert [w["name"] for w in listed["report"]] == ["export"]


def test_retry_with_downstream_answers_what_it_brought(api: APIClient, alice: User, task_of) -> None:
    extract = task_of(alice, "extract")
    load = task_of(alice, "load", dependencies=[extract.pk])
    finish(extract, "FAILED", error_message="boom")
    lifecycle.fail_dependents(Task.objects.get(pk=extract.pk), reason="dependency 'extract' failed")
    assert api.post(f"/tasks/{extract.pk}/retry?downstream=sideways").status_code == 400
    response = api.post(f"/tasks/{extract.pk}/retry?downstream=failed")
    assert response.status_code == 202, response.json()
    assert response.json()["downstream"]["started"] == ["load"]
    assert response.json()["downstream"]["hidden"] == 0
    assert Task.objects.get(pk=load.pk).status == "PENDING"
    assert api.post(f"/tasks/{extract.pk}/run?downstream=all").status_code == 409  # a run already waits
    assert "downstream" not in api.post(f"/tasks/{load.pk}/cancel").json()
