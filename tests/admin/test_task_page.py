"""The task page: attempts timeline, artifacts, live progress, the waiting reason and the dependency graph."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus
from tests.admin.conftest import create, task_url

pytestmark = pytest.mark.django_db


def finished_attempt(task: Task, attempt: int, status: str = AttemptStatus.DONE, **fields: Any) -> TaskResult:
    now = timezone.now()
    values: dict[str, Any] = {
        "task": task,
        "attempt": attempt,
        "status": status,
        "started_at": now - timedelta(seconds=90),
        "finished_at": now - timedelta(seconds=30),
        "duration": 60.0,
        "worker": "w1@box",
    }
    values.update(fields)
    return TaskResult.objects.create(**values)


def write_artifact(relative: str, content: bytes) -> None:
    path = Path(settings.STORAGE_DIR) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def test_timeline_lists_attempts_with_status_worker_duration_error_and_artifacts(client_op: Client) -> None:
    task = create("export")
    TaskResult.objects.filter(task=task).update(status=AttemptStatus.CANCELLED)
    finished_attempt(task, 1, AttemptStatus.FAILED, error_message="jira said 503 <b>busy</b>")
    ok = finished_attempt(task, 2, artifacts=["artifacts/x/1/report.xlsx"], duration=12.5)
    page = client_op.get(task_url("change", task.pk)).content.decode()
    assert page.count('class="th-attempt"') == 3
    assert "jira said 503 &lt;b&gt;busy&lt;/b&gt;" in page  # the error, escaped
    assert '<span class="th-duration">12 s</span>' in page and "on w1@box" in page  # humanised, not 12.50
    assert f"/admin/scheduling/task/{task.pk}/artifact/{ok.pk}/0/" in page
    assert ">report.xlsx</a>" in page


def test_artifact_downloads_for_a_user_who_may_view_the_task(client_viewer: Client) -> None:
    task = create("export")
    write_artifact("artifacts/export/7/report.csv", b"id,name\n1,alpha\n")
    result = finished_attempt(task, 1, artifacts=["artifacts/export/7/report.csv"])
    response = client_viewer.get(task_url("artifact", task.pk, result.pk, 0))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"id,name\n1,alpha\n"
    assert 'attachment; filename="report.csv"' in response["Content-Disposition"]


@pytest.mark.parametrize("stored", ["../outside.txt", "/etc/passwd", "artifacts/../../outside.txt", "."])
def test_artifact_paths_outside_storage_are_refused(client_op: Client, stored: str) -> None:
    (Path(settings.STORAGE_DIR).parent / "outside.txt").write_text("secret")
    task = create("export")
    result = finished_attempt(task, 1, artifacts=[stored])
    assert client_op.get(task_url("artifact", task.pk, result.pk, 0)).status_code == 403


def test_artifact_symlink_out_of_storage_is_refused(client_op: Client, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    link = Path(settings.STORAGE_DIR) / "artifacts" / "link.txt"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(tmp_path / "secret.txt")
    task = create("export")
    result = finished_attempt(task, 1, artifacts=["artifacts/link.txt"])
    assert client_op.get(task_url("artifact", task.pk, result.pk, 0)).status_code == 403


def test_artifact_of_another_task_missing_index_or_missing_file_is_not_found(client_op: Client) -> None:
    task, other = create("export"), create("other")
    write_artifact("artifacts/o/1/a.txt", b"a")
    result = finished_attempt(other, 1, artifacts=["artifacts/o/1/a.txt", "artifacts/o/1/gone.txt"])
    assert client_op.get(task_url("artifact", task.pk, result.pk, 0)).status_code == 404  # not this task's attempt
    assert client_op.get(task_url("artifact", other.pk, result.pk, 2)).status_code == 404  # no third artifact
    assert client_op.get(task_url("artifact", other.pk, result.pk, 1)).status_code == 404  # file deleted
    assert client_op.get(task_url("artifact", other.pk, result.pk, 0)).status_code == 200


def test_artifact_needs_the_view_permission(db: None) -> None:
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_user("nobody", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    task = create("export")
    write_artifact("artifacts/e/1/a.txt", b"a")
    result = finished_attempt(task, 1, artifacts=["artifacts/e/1/a.txt"])
    assert client.get(task_url("artifact", task.pk, result.pk, 0)).status_code == 403
    anonymous = Client().get(task_url("artifact", task.pk, result.pk, 0))
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


def test_waiting_task_says_what_it_waits_on(client_op: Client, chain: dict[str, Task]) -> None:
    Task.objects.filter(pk=chain["extract"].pk).update(status=TaskStatus.RUNNING)
    page = client_op.get(task_url("change", chain["transform"].pk)).content.decode()
    assert "waiting on: extract (RUNNING)" in page
    load = client_op.get(task_url("change", chain["load"].pk)).content.decode()
    assert "waiting on: transform (PENDING)" in load
    extract = client_op.get(task_url("change", chain["extract"].pk)).content.decode()
    assert "waiting on:" not in extract


def test_live_endpoint_reports_progress_of_the_running_attempt(client_op: Client) -> None:
    task = create("slow")
    attempt = TaskResult.objects.get(task=task)
    TaskResult.objects.filter(pk=attempt.pk).update(
        status=AttemptStatus.RUNNING, started_at=timezone.now(), progress=40, progress_message="page 4 of 10"
    )
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.RUNNING)
    data = client_op.get(task_url("live", task.pk)).json()
    assert (data["status"], data["active"], data["progress"]) == ("RUNNING", True, 40)
    assert data["progress_message"] == "page 4 of 10"
    assert '<progress max="100" value="40">' in data["html"]
    assert 'data-action="cancel"' in data["actions_html"]  # the buttons follow the state


def test_live_endpoint_stops_polling_once_finished(client_op: Client) -> None:
    task = create("quick")
    TaskResult.objects.filter(task=task).update(status=AttemptStatus.DONE, finished_at=timezone.now())
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.DONE)
    data = client_op.get(task_url("live", task.pk)).json()
    assert (data["status"], data["active"], data["progress"]) == ("DONE", False, None)
    page = client_op.get(task_url("change", task.pk)).content.decode()
    assert 'data-active="0"' in page


def test_graph_shows_upstream_and_downstream_coloured_by_status(client_op: Client, chain: dict[str, Task]) -> None:
    Task.objects.filter(pk=chain["extract"].pk).update(status=TaskStatus.DONE)
    page = client_op.get(task_url("change", chain["transform"].pk)).content.decode()
    start = page.index('<svg xmlns="http://www.w3.org/2000/svg" class="th-graph"')
    svg = page[start : page.index("</svg>", start)]
    for name in ("extract", "transform", "load"):
        assert f">{name}</text>" in svg
    assert ">publish</text>" not in svg  # a sibling is neither upstream nor downstream
    assert 'data-status="DONE"' in svg and 'fill="#a3cfbb"' in svg  # extract, coloured DONE
    assert svg.count('class="th-edge"') == 2
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing external
    assert f'href="/admin/scheduling/task/{chain["load"].pk}/change/"' in svg


def test_graph_page_escapes_names_and_shows_the_whole_neighbourhood(client_op: Client, chain: dict[str, Task]) -> None:
    evil = create("<script>x</script>", dependencies=[chain["load"].pk])
    response = client_op.get(task_url("graph", chain["extract"].pk))
    assert response.status_code == 200
    page = response.content.decode()
    for name in ("extract", "transform", "load", "publish"):
        assert f">{name}</text>" in page
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert str(evil.pk) in page


def test_task_page_queries_do_not_grow_with_attempts_or_graph(client_op: Client, chain: dict[str, Task]) -> None:
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client_op.get(task_url("change", chain["transform"].pk)).status_code == 200
        return len(queries)

    finished_attempt(chain["transform"], 1)  # one attempt shown (its log is read once), then 20 more
    few = count()
    for index in range(20):
        finished_attempt(chain["transform"], index + 2)
        create(f"more {index}", dependencies=[chain["transform"].pk])
        create(f"up {index}").dependents.add(chain["transform"])
    assert count() <= few


def test_results_inline_is_bounded_and_saving_survives_new_attempts(client_op: Client) -> None:
    from tests.admin.test_admin_site import change_data

    task = create("busy cron")
    for index in range(55):
        finished_attempt(task, index + 2)
    response = client_op.get(task_url("change", task.pk))
    assert response.context["inline_admin_formsets"][0].formset.queryset.count() == 50
    data = change_data(client_op, task, priority="1")
    finished_attempt(task, 99)  # a new attempt arrives while the form is open
    response = client_op.post(task_url("change", task.pk), data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert Task.objects.get(pk=task.pk).priority == 1


def test_without_view_all_tasks_a_user_sees_only_their_own_tasks(db: None) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from scheduling import services

    bob = get_user_model().objects.create_user("bob", password="x", is_staff=True)
    bob.user_permissions.add(*Permission.objects.filter(codename__in=["view_task", "view_taskresult"]))
    client = Client()
    client.force_login(bob)
    mine = services.task_create(data={"name": "bob's", "tags": ["TEST_RECORD"], "parameters": {}}, owner=bob)
    theirs = create("someone else's")
    write_artifact("artifacts/t/1/a.txt", b"a")
    result = finished_attempt(theirs, 2, artifacts=["artifacts/t/1/a.txt"])
    names = [t.name for t in client.get(task_url("changelist")).context["cl"].result_list]
    assert names == ["bob's"]
    assert client.get(task_url("change", mine.pk)).status_code == 200
    assert client.get(task_url("change", theirs.pk)).status_code == 302  # "doesn't exist", like any unknown id
    assert client.get(task_url("artifact", theirs.pk, result.pk, 0)).status_code == 404
    assert client.get(task_url("live", theirs.pk)).status_code == 404


def test_graph_hides_the_names_of_tasks_the_user_may_not_see(db: None) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from scheduling import services

    bob = get_user_model().objects.create_user("bob", password="x", is_staff=True)
    bob.user_permissions.add(*Permission.objects.filter(codename__in=["view_task"]))
    client = Client()
    client.force_login(bob)
    mine = services.task_create(data={"name": "bob's", "tags": ["TEST_RECORD"], "parameters": {}}, owner=bob)
    secret = create("secret downstream", dependencies=[mine.pk])  # someone else's task waits for bob's
    page = client.get(task_url("change", mine.pk)).content.decode()
    assert "secret downstream" not in page
    assert "another user&#x27;s task" in page and str(secret.pk) not in page
