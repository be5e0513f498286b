"""Owned shared objects: retry policies and tags belong to one user or are shared on purpose.

Alice and Bob are team members (view/add/change/delete on tasks, results, audit, retry policies and tags;
no view_all_tasks, no share permission). Each attack is tried through the API, the admin and the CLI;
what Bob owns must neither be reached, changed nor named, and every change that reaches a task is in
that task's audit trail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling import services
from scheduling.models import AuditAction, RetryPolicy, Tag, Task, TaskAudit
from taskhub.exceptions import ConflictError, ValidationError
from tests.admin.conftest import task_form

pytestmark = pytest.mark.django_db

PERMS = [
    f"{verb}_{model}"
    for verb in ("view", "add", "change", "delete")
    for model in ("task", "taskresult", "taskaudit", "retrypolicy", "tag")
]


def member(name: str, *extra: str) -> Any:
    user = get_user_model().objects.create_user(name, password=f"{name}-pw-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=[*PERMS, *extra]))
    return user


def web(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def task_of(owner: Any, name: str, actor: Any = None, **fields: Any) -> Task:
    data = {"name": name, "tags": ["TEST_RECORD"], "parameters": {}, **fields}
    return services.task_create(data=data, owner=owner, actor=actor)


def operator() -> Any:
    """A superuser who links other users' tasks (e.g. a dependency across owners), as only they can."""
    return get_user_model().objects.get_or_create(username="op", defaults={"is_superuser": True})[0]


@pytest.fixture
def team() -> dict[str, Any]:
    alice, bob = member("alice"), member("bob")
    bobs_policy = services.policy_save(data={"name": "bobs-policy", "max_retries": 2}, actor=bob)
    bobs_task = task_of(bob, "bobs-private-task", tags=["TEST_RECORD", "bobs-tag"], retry_policy=bobs_policy)
    return {
        "alice": alice,
        "bob": bob,
        "bobs_policy": bobs_policy,
        "bobs_task": bobs_task,
        "bobs_tag": Tag.objects.get(name="bobs-tag"),
        "mine": task_of(alice, "alice-task", tags=["TEST_RECORD", "alice-tag"]),
    }


def policy_state(policy: RetryPolicy) -> tuple[Any, ...]:
    policy.refresh_from_db()
    return (policy.name, policy.max_retries, policy.retry_delay, policy.owner_id)


# --- who owns what ------------------------------------------------------------------------------------


def test_new_policies_and_tags_belong_to_the_task_owner_and_handler_tags_are_shared(team: dict[str, Any]) -> None:
    assert team["bobs_policy"].owner == team["bob"]
    assert team["bobs_tag"].owner == team["bob"]
    inline = task_of(team["alice"], "inline", retry_policy={"max_retries": 1})
    assert inline.retry_policy.owner == team["alice"]
    assert Tag.objects.get(name="TEST_RECORD").owner is None  # one shared handler tag, not one per user


def test_the_same_tag_name_means_each_owners_own_tag(team: dict[str, Any]) -> None:
    """Alice tagging "bobs-tag" gets a tag of her own: she neither attaches nor learns about Bob's."""
    task = task_of(team["alice"], "copycat", tags=["TEST_RECORD", "bobs-tag"])
    tag = task.tags.get(name="bobs-tag")
    assert tag.owner == team["alice"] and tag != team["bobs_tag"]
    assert list(team["bobs_tag"].tasks.all()) == [team["bobs_task"]]


def test_a_policy_name_is_per_owner(team: dict[str, Any]) -> None:
    mine = services.policy_save(data={"name": "bobs-policy"}, actor=team["alice"])  # Bob's name is not taken
    assert mine.owner == team["alice"]
    with pytest.raises(ValidationError) as error:
        services.policy_save(data={"name": "bobs-policy"}, actor=team["alice"])
    assert "exists" in str(error.value)


def test_only_a_user_allowed_to_share_creates_a_shared_policy_or_tag(team: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="allowed to share"):
        services.policy_save(data={"name": "for everyone"}, actor=team["alice"], shared=True)
    with pytest.raises(ValidationError, match="allowed to share"):
        services.tag_save(name="for everyone", actor=team["alice"], shared=True)
    carol = member("carol", "share_retrypolicy", "share_tag")
    assert services.policy_save(data={"name": "for everyone"}, actor=carol, shared=True).owner is None
    assert services.tag_save(name="for everyone", actor=carol, shared=True).owner is None


# --- attaching another user's policy by id -------------------------------------------------------------


def test_api_attach_by_id_answers_like_an_unknown_id(team: dict[str, Any]) -> None:
    client = api(team["alice"])
    theirs = team["bobs_policy"].pk
    missing = RetryPolicy.objects.order_by("-pk").first().pk + 1000
    body = {"name": "steal", "tags": ["TEST_RECORD"]}
    answers = []
    for pk in (theirs, missing):
        response = client.post("/tasks", {**body, "retry_policy": {"id": pk}}, format="json")
        assert response.status_code == 400
        answers.append(json.dumps(response.json()).replace(str(pk), "N"))
        assert "bobs" not in response.content.decode()
    assert answers[0] == answers[1]  # nothing tells Bob's policy from no policy
    mine = team["mine"]
    for method in (client.patch, client.put):
        response = method(f"/tasks/{mine.pk}", {**body, "retry_policy": {"id": theirs}}, format="json")
        assert response.status_code == 400 and "bobs" not in response.content.decode()
    mine.refresh_from_db()
    assert mine.retry_policy is None
    assert not Task.objects.filter(name="steal").exists()


def test_service_refuses_anothers_policy_object_too(team: dict[str, Any]) -> None:
    """The rule is in the service: a serializer or form that let the object through is caught there."""
    with pytest.raises(ValidationError) as error:
        services.task_update(task=team["mine"], data={"retry_policy": team["bobs_policy"]}, actor=team["alice"])
    assert error.value.errors["retry_policy"] == [f"unknown retry policy {team['bobs_policy'].pk}"]
    # An operator who sees both may still not attach Bob's own policy to Alice's task.
    with pytest.raises(ValidationError, match="belongs to another user"):
        services.task_update(task=team["mine"], data={"retry_policy": team["bobs_policy"].pk})


def test_admin_form_attach_by_id_is_refused(team: dict[str, Any]) -> None:
    client = web(team["alice"])
    response = client.post(
        reverse("admin:scheduling_task_add"), task_form(name="steal", retry_policy=str(team["bobs_policy"].pk))
    )
    assert response.status_code == 200  # the form again, with the error
    assert "retry_policy" in response.context["adminform"].form.errors
    assert "bobs" not in response.content.decode()
    assert not Task.objects.filter(name="steal").exists()


def test_cli_attach_by_id_is_refused(team: dict[str, Any]) -> None:
    mine = team["mine"]
    with pytest.raises(CommandError) as error:
        call_command(
            "task_action", "change", str(mine.pk), "--set", f"retry_policy={team['bobs_policy'].pk}", "--user", "alice"
        )
    assert "unknown retry policy" in str(error.value) and "bobs" not in str(error.value)
    mine.refresh_from_db()
    assert mine.retry_policy is None


# --- listing, autocomplete, filters ---------------------------------------------------------------------


def test_admin_lists_autocompletes_and_filters_only_own_and_shared(team: dict[str, Any]) -> None:
    shared = services.policy_save(data={"name": "shared-policy"}, actor=None, shared=True)
    services.tag_save(name="shared-tag", actor=None, shared=True)
    own = services.policy_save(data={"name": "alice-policy"}, actor=team["alice"])
    client = web(team["alice"])
    policies = client.get(reverse("admin:scheduling_retrypolicy_changelist")).context["cl"].result_list
    assert sorted(p.name for p in policies) == sorted([shared.name, own.name])
    searched = client.get(reverse("admin:scheduling_retrypolicy_changelist"), {"q": "bobs"}).context["cl"]
    assert list(searched.result_list) == []
    tags = client.get(reverse("admin:scheduling_tag_changelist")).context["cl"].result_list
    assert "bobs-tag" not in [t.name for t in tags] and "shared-tag" in [t.name for t in tags]
    found = client.get(
        reverse("admin:autocomplete"),
        {"term": "", "app_label": "scheduling", "model_name": "task", "field_name": "retry_policy"},
    )
    assert found.status_code == 200
    assert sorted(r["text"] for r in found.json()["results"]) == sorted([shared.name, own.name])
    page = client.get(reverse("admin:scheduling_task_changelist")).content.decode()
    assert "bobs-tag" not in page and "alice-tag" in page  # the tag filter
    assert "?tag=shared-tag" in page


def test_admin_pages_of_anothers_policy_and_tag_are_not_found(team: dict[str, Any]) -> None:
    client = web(team["alice"])
    policy, tag = team["bobs_policy"], team["bobs_tag"]
    before = policy_state(policy)
    for url in (
        reverse("admin:scheduling_retrypolicy_change", args=[policy.pk]),
        reverse("admin:scheduling_retrypolicy_delete", args=[policy.pk]),
        reverse("admin:scheduling_retrypolicy_history", args=[policy.pk]),
        reverse("admin:scheduling_tag_change", args=[tag.pk]),
        reverse("admin:scheduling_tag_delete", args=[tag.pk]),
    ):
        response = client.get(url, follow=True)
        assert response.redirect_chain[-1][0] == reverse("admin:index"), url
        assert "bobs" not in response.content.decode()
    client.post(
        reverse("admin:scheduling_retrypolicy_change", args=[policy.pk]),
        {"name": "hijacked", "max_retries": "1000", "retry_delay": "0", "backoff_factor": "1", "max_delay": "0"},
    )
    client.post(reverse("admin:scheduling_retrypolicy_delete", args=[policy.pk]), {"post": "yes"})
    client.post(reverse("admin:scheduling_tag_delete", args=[tag.pk]), {"post": "yes"})
    client.post(
        reverse("admin:scheduling_tag_changelist"),
        {"action": "delete_selected", "_selected_action": [str(tag.pk)], "post": "yes"},
    )
    assert policy_state(policy) == before
    assert Tag.objects.filter(pk=tag.pk).exists() and team["bobs_task"].tags.filter(pk=tag.pk).exists()
    assert not TaskAudit.objects.filter(task_id=team["bobs_task"].pk, actor=team["alice"]).exists()


def test_shared_policy_is_read_only_without_the_share_permission(team: dict[str, Any]) -> None:
    shared = services.policy_save(data={"name": "shared-policy", "max_retries": 3}, actor=None, shared=True)
    client = web(team["alice"])
    form = {"name": "shared-policy", "max_retries": "1000", "retry_delay": "0", "backoff_factor": "1", "max_delay": "0"}
    assert client.post(reverse("admin:scheduling_retrypolicy_change", args=[shared.pk]), form).status_code == 403
    assert policy_state(shared)[1] == 3
    with pytest.raises(ValidationError, match="a shared retry policy"):
        services.policy_save(policy=shared, data={"max_retries": 1000}, actor=team["alice"])


# --- changes are audited on every affected task --------------------------------------------------------


def test_changing_a_policy_audits_every_task_that_uses_it(team: dict[str, Any]) -> None:
    bob, policy = team["bob"], team["bobs_policy"]
    second = task_of(bob, "second", retry_policy=policy.pk)
    client = web(bob)
    response = client.post(
        reverse("admin:scheduling_retrypolicy_change", args=[policy.pk]),
        {
            "name": "bobs-policy",
            "max_retries": "1000",
            "retry_delay": "0",
            "backoff_factor": "2",
            "max_delay": "3600",
            "retry_on_timeout": "on",
        },
    )
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    for task in (team["bobs_task"], second):
        entry = TaskAudit.objects.filter(task_id=task.pk).first()
        assert (entry.action, entry.actor) == (AuditAction.CHANGED, bob)
        assert entry.changes == {"retry_policy.max_retries": [2, 1000], "retry_policy.retry_delay": [60.0, 0.0]}
        assert "bobs-policy" in entry.detail


def test_renaming_and_deleting_a_tag_audits_every_task_that_carries_it(team: dict[str, Any]) -> None:
    bob, tag = team["bob"], team["bobs_tag"]
    client = web(bob)
    assert client.post(reverse("admin:scheduling_tag_change", args=[tag.pk]), {"name": "renamed"}).status_code == 302
    entry = TaskAudit.objects.filter(task_id=team["bobs_task"].pk).first()
    assert entry.changes == {"tags": [["TEST_RECORD", "bobs-tag"], ["TEST_RECORD", "renamed"]]}
    response = client.post(reverse("admin:scheduling_tag_delete", args=[tag.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Tag.objects.filter(pk=tag.pk).exists()
    entry = TaskAudit.objects.filter(task_id=team["bobs_task"].pk).first()
    assert (entry.actor, entry.changes) == (bob, {"tags": [["TEST_RECORD", "renamed"], ["TEST_RECORD"]]})


def test_a_handler_tag_cannot_be_deleted_or_renamed(team: dict[str, Any]) -> None:
    handler = Tag.objects.get(name="TEST_RECORD")
    with pytest.raises(ConflictError) as error:
        services.tag_delete(tag=handler, actor=None)
    assert "alice-task" in str(error.value)
    with pytest.raises(ValidationError, match="handler's tag"):
        services.tag_save(tag=handler, name="other", actor=None)


# --- errors never name what the user cannot see --------------------------------------------------------


def test_409_on_delete_counts_dependents_the_user_cannot_see(team: dict[str, Any]) -> None:
    mine = team["mine"]
    # Set up by an operator: two of Bob's tasks depend on Alice's, one of hers does too.
    for name in ("bobs-hidden-1", "bobs-hidden-2"):
        task_of(team["bob"], name, actor=operator(), dependencies=[mine.pk])
    services.task_create(
        data={"name": "alice-dependent", "tags": ["TEST_RECORD"], "dependencies": [mine.pk]}, owner=team["alice"]
    )
    response = api(team["alice"]).delete(f"/tasks/{mine.pk}")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "alice-dependent" in detail and "2 tasks you cannot see" in detail and "bobs" not in detail
    page = web(team["alice"]).get(reverse("admin:scheduling_task_delete", args=[mine.pk])).content.decode()
    assert "2 task(s) you cannot see" in page and "bobs-hidden" not in page
    with pytest.raises(CommandError) as error:
        call_command("task_action", "delete", str(mine.pk), "--user", "alice")
    assert "2 tasks you cannot see" in str(error.value) and "bobs" not in str(error.value)
    assert Task.objects.filter(pk=mine.pk).exists()


def test_a_cycle_through_hidden_tasks_does_not_name_them(team: dict[str, Any]) -> None:
    alice, mine = team["alice"], team["mine"]
    hidden = task_of(team["bob"], "bobs-middle", actor=operator(), dependencies=[mine.pk])
    top = services.task_create(
        data={"name": "alice-top", "tags": ["TEST_RECORD"], "dependencies": [hidden.pk]}, owner=alice, actor=operator()
    )
    response = api(alice).patch(f"/tasks/{mine.pk}", {"dependencies": [str(top.pk)]}, format="json")
    assert response.status_code == 400
    message = response.json()["dependencies"][0]
    assert "cycle" in message and "(a task you cannot see)" in message and "bobs" not in message


def test_depending_on_a_hidden_task_answers_like_an_unknown_id(team: dict[str, Any]) -> None:
    theirs = team["bobs_task"]
    with pytest.raises(ValidationError) as error:
        services.task_update(task=team["mine"], data={"dependencies": [theirs.pk]}, actor=team["alice"])
    assert error.value.errors["dependencies"] == [f"unknown task id(s): {theirs.pk}"]


def test_deleting_a_shared_policy_in_use_counts_the_tasks_the_user_cannot_see(team: dict[str, Any]) -> None:
    carol = member("carol", "share_retrypolicy")
    shared = services.policy_save(data={"name": "shared-policy"}, actor=carol, shared=True)
    task_of(team["bob"], "bobs-user-of-shared", retry_policy=shared.pk)
    response = web(carol).get(reverse("admin:scheduling_retrypolicy_delete", args=[shared.pk]))
    page = response.content.decode()
    assert "1 task you cannot see" in page and "bobs" not in page
    with pytest.raises(ConflictError) as error:
        services.policy_delete(policy=shared, actor=carol)
    assert "1 task you cannot see" in str(error.value) and "bobs" not in str(error.value)
    assert RetryPolicy.objects.filter(pk=shared.pk).exists()
