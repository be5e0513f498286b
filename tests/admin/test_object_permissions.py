"""Object-level permissions in the admin: a staff user without view_all_tasks works on their own tasks only.

Alice and Bob are staff with every model permission on tasks, results and the audit trail, but not
scheduling.view_all_tasks. Alice must not list, view, change, run, cancel, retry, pause, resume or delete Bob's
task through any admin page, action or custom view; nor see it in the results, the audit trail or the dashboard.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from scheduling import services
from scheduling.engine import lifecycle
from scheduling.models import AttemptStatus, Task, TaskAudit, TaskResult
from tests.admin.conftest import task_form

pytestmark = pytest.mark.django_db

PERMS = [
    f"{verb}_{model}" for verb in ("view", "add", "change", "delete") for model in ("task", "taskresult", "taskaudit")
]


def staff(name: str, *extra: str) -> Any:
    user = get_user_model().objects.create_user(name, password=f"{name}-pw-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=[*PERMS, *extra]))
    return user


def login(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def failed_task(owner: Any, name: str, error: str) -> Task:
    task = services.task_create(data={"name": name, "tags": ["TEST_RECORD"], "parameters": {}}, owner=owner)
    attempt = TaskResult.objects.get(task=task)
    lifecycle.move(attempt, AttemptStatus.QUEUED)
    lifecycle.move(attempt, AttemptStatus.RUNNING, worker="w1")
    lifecycle.move(attempt, AttemptStatus.FAILED, claim=attempt.claim, error_message=error, duration=5.0)
    task.refresh_from_db()
    return task


@pytest.fixture
def people() -> dict[str, Any]:
    alice, bob = staff("alice"), staff("bob")
    return {
        "alice": alice,
        "bob": bob,
        "mine": failed_task(alice, "alice-task", "alice's error"),
        "theirs": failed_task(bob, "bobs-private-task", "bobs-private-error"),
    }


def state(task: Task) -> tuple[Any, ...]:
    task.refresh_from_db()
    return (task.name, task.status, task.enabled, TaskResult.objects.filter(task=task).count())


def test_changelists_show_only_own_tasks_results_and_audit(people: dict[str, Any]) -> None:
    client = login(people["alice"])
    for url in (
        reverse("admin:scheduling_task_changelist"),
        reverse("admin:scheduling_taskresult_changelist"),
        reverse("admin:scheduling_taskaudit_changelist"),
        reverse("admin:scheduling_task_changelist") + "?q=bobs",
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        assert "bobs-private" not in page.content.decode(), url
    tasks = client.get(reverse("admin:scheduling_task_changelist")).context["cl"].result_list
    assert [t.name for t in tasks] == ["alice-task"]
    # The owner filter lists the owners of visible tasks only, not every user.
    assert ">bob<" not in client.get(reverse("admin:scheduling_task_changelist")).content.decode()


def test_change_delete_history_and_custom_views_of_anothers_task_are_not_found(people: dict[str, Any]) -> None:
    client = login(people["alice"])
    theirs: Task = people["theirs"]
    result = TaskResult.objects.get(task=theirs)
    audit = TaskAudit.objects.filter(task_id=theirs.pk).first()
    before = state(theirs)
    for url in (
        reverse("admin:scheduling_task_change", args=[theirs.pk]),
        reverse("admin:scheduling_task_delete", args=[theirs.pk]),
        reverse("admin:scheduling_task_history", args=[theirs.pk]),
        reverse("admin:scheduling_taskresult_change", args=[result.pk]),
        reverse("admin:scheduling_taskaudit_change", args=[audit.pk]),
    ):
        response = client.get(url, follow=True)
        assert "bobs-private" not in response.content.decode(), url
        assert response.redirect_chain and response.redirect_chain[-1][0] == reverse("admin:index"), url
    for name in ("live", "graph"):
        assert client.get(reverse(f"admin:scheduling_task_{name}", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("admin:scheduling_task_artifact", args=[theirs.pk, result.pk, 0])).status_code == 404
    for action in ("run", "cancel", "retry", "pause", "resume"):
        assert client.post(reverse("admin:scheduling_task_do", args=[theirs.pk, action])).status_code == 404
    # A change or delete POST does nothing either.
    client.post(reverse("admin:scheduling_task_change", args=[theirs.pk]), {"name": "hijacked", "tag_names": "x"})
    client.post(reverse("admin:scheduling_task_delete", args=[theirs.pk]), {"post": "yes"})
    assert state(theirs) == before


@pytest.mark.parametrize("action", ["run_now", "cancel", "retry", "pause", "resume", "delete_selected"])
def test_bulk_actions_ignore_anothers_task(people: dict[str, Any], action: str) -> None:
    client = login(people["alice"])
    theirs: Task = people["theirs"]
    before = state(theirs)
    client.post(
        reverse("admin:scheduling_task_changelist"),
        {"action": action, "_selected_action": [str(theirs.pk)], "post": "yes"},
    )
    assert Task.objects.filter(pk=theirs.pk).exists()
    assert state(theirs) == before


def test_bulk_action_on_a_mixed_selection_touches_only_own_tasks(people: dict[str, Any]) -> None:
    client = login(people["alice"])
    mine, theirs = people["mine"], people["theirs"]
    before = state(theirs)
    client.post(
        reverse("admin:scheduling_task_changelist"),
        {"action": "retry", "_selected_action": [str(mine.pk), str(theirs.pk)]},
    )
    assert TaskResult.objects.filter(task=mine).count() == 2  # alice's task was retried
    assert state(theirs) == before


def test_own_task_still_works(people: dict[str, Any]) -> None:
    client = login(people["alice"])
    mine: Task = people["mine"]
    assert client.get(reverse("admin:scheduling_task_change", args=[mine.pk])).status_code == 200
    response = client.post(reverse("admin:scheduling_task_do", args=[mine.pk, "pause"]))
    assert response.status_code == 302
    mine.refresh_from_db()
    assert mine.enabled is False


def test_another_users_task_cannot_be_made_a_dependency(people: dict[str, Any]) -> None:
    client = login(people["alice"])
    response = client.post(
        reverse("admin:scheduling_task_add"),
        task_form(name="sneaky", dependencies=[str(people["theirs"].pk)]),
    )
    assert response.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in response.content.decode()
    assert not Task.objects.filter(name="sneaky").exists()


def test_dashboard_lists_only_own_failures_unless_view_all(people: dict[str, Any]) -> None:
    url = reverse("admin:scheduling_task_dashboard")
    page = login(people["alice"]).get(url).content.decode()
    assert "alice&#x27;s error" in page or "alice's error" in page
    assert "bobs-private" not in page
    auditor = staff("auditor", "view_all_tasks")
    page = login(auditor).get(url).content.decode()
    assert "bobs-private-error" in page


def test_view_all_tasks_shows_every_task_in_the_admin(people: dict[str, Any]) -> None:
    auditor = staff("auditor", "view_all_tasks")
    tasks = login(auditor).get(reverse("admin:scheduling_task_changelist")).context["cl"].result_list
    assert sorted(t.name for t in tasks) == ["alice-task", "bobs-private-task"]


def test_admin_action_post_without_csrf_token_is_refused(people: dict[str, Any]) -> None:
    client = login(people["alice"], enforce_csrf_checks=True)
    mine: Task = people["mine"]
    before = state(mine)
    assert client.post(reverse("admin:scheduling_task_do", args=[mine.pk, "run"])).status_code == 403
    response = client.post(
        reverse("admin:scheduling_task_changelist"), {"action": "run_now", "_selected_action": [str(mine.pk)]}
    )
    assert response.status_code == 403
    assert state(mine) == before
