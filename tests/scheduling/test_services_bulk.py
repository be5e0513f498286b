"""services.task_create_many: all or nothing, the same rules and messages as task_create, bulk writes.

(The API's list body: tests/api/test_bulk_create.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduling import services
from scheduling.engine import dispatcher
from scheduling.models import RetryPolicy, Task, TaskAudit, TaskResult
from taskhub.exceptions import BulkValidationError, ValidationError
from tests.api.conftest import finish, snapshot


def item(name: str = "t", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "tags": ["TEST_RECORD"], "parameters": {"label": name}}
    data.update(fields)
    return data


@pytest.fixture
def alice(db: None) -> User:
    return User.objects.create_user("alice")


@pytest.fixture
def bob(db: None) -> User:
    return User.objects.create_user("bob")


def test_creates_every_item_in_the_order_given(alice: User) -> None:
    tasks = services.task_create_many(items=[item(f"t{n}") for n in range(5)], owner=alice, actor=alice)
    assert [t.name for t in tasks] == [f"t{n}" for n in range(5)]
    stored = list(Task.objects.filter(owner=alice).order_by("created_at"))
    assert [t.name for t in stored] == [f"t{n}" for n in range(5)]  # created_at keeps the order given
    assert all(list(t.tags.values_list("name", flat=True)) == ["TEST_RECORD"] for t in stored)


def test_immediate_ones_get_a_pending_first_attempt_scheduled_ones_a_next_fire(alice: User) -> None:
    now_task, cron_task = services.task_create_many(
        items=[item("now"), item("cron", task_type="SCHEDULED", cron_expr="0 0 * * *")], owner=alice
    )
    assert list(TaskResult.objects.filter(task=now_task).values_list("attempt", "status")) == [(1, "PENDING")]
    assert not TaskResult.objects.filter(task=cron_task).exists()
    cron_task.refresh_from_db()
    assert cron_task.next_fire_at is not None and cron_task.crontab is not None


def test_one_audit_entry_per_task_with_what_task_create_writes(alice: User) -> None:
    upstream = services.task_create(data=item("up"), owner=alice)
    data = item(
        "same",
        priority="HIGH",
        tags=["TEST_RECORD", "mine"],
        dependencies=[upstream.pk],
        metadata={"k": 1},
        retry_policy={"max_retries": 2},
    )
    single = services.task_create(data=data, owner=alice, actor=alice)
    many = services.task_create_many(items=[data, item("other")], owner=alice, actor=alice)
    entries = {t.pk: list(TaskAudit.objects.filter(task_id=t.pk)) for t in [single, *many]}
    assert all(len(found) == 1 for found in entries.values())
    (one,), (first, _) = entries[single.pk], [entries[t.pk][0] for t in many]

    def content(entry: TaskAudit) -> dict[str, Any]:
        changes = dict(entry.changes)
        changes.pop("retry_policy")  # "policy for same" and "policy for same (2)": each task's own new policy
        return {"action": entry.action, "actor": entry.actor, "task_name": entry.task_name, "changes": changes}

    assert content(first) == content(one)
    assert first.changes["retry_policy"] == [None, "policy for same (2)"]


def test_one_bad_item_writes_nothing_and_names_it_by_index_and_field(alice: User) -> None:
    services.task_create(data=item("before"), owner=alice)
    before = snapshot()
    items = [item("a"), item("", priority="URGENT"), item("c"), item("d", task_type="SCHEDULED")]
    with pytest.raises(BulkValidationError) as error:
        services.task_create_many(items=items, owner=alice)
    assert snapshot() == before
    assert error.value.items[0] == {} and error.value.items[2] == {}
    assert set(error.value.items[1]) == {"name", "priority"}
    assert set(error.value.items[3]) == {"cron_expr"}
    assert "1.name" in error.value.errors and "3.cron_expr" in error.value.errors


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x" * 201},
        {"tags": ["NO_SUCH_HANDLER"]},
        {"timeout_seconds": 10**9},
        {"parameters": {"headers": {"Authorization": "Bearer x"}}},
        {"dependencies": ["not-a-uuid"]},
        {"task_type": "SCHEDULED", "cron_expr": "61 * * * *"},
        {"retry_policy": {"max_retries": -1}},
    ],
)
def test_the_same_messages_as_task_create(alice: User, bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as single:
        services.task_create(data={**item("x"), **bad}, owner=alice)
    assert not isinstance(single.value, BulkValidationError)  # task_create's error is unchanged
    with pytest.raises(BulkValidationError) as many:
        services.task_create_many(items=[item("ok"), {**item("x"), **bad}], owner=alice)
    assert many.value.items == [{}, single.value.errors]


def test_a_limit_of_one_task_holds_per_item(alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(settings.TASKHUB["security"], "max_parameters_bytes", 200)
    with pytest.raises(BulkValidationError) as error:
        services.task_create_many(items=[item("ok"), item("big", parameters={"label": "z" * 500})], owner=alice)
    assert "security.max_parameters_bytes" in error.value.items[1]["parameters"][0]


def test_more_than_max_bulk_items_are_refused_naming_the_limit(alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.TASKHUB.security.max_bulk == 1000
    monkeypatch.setitem(settings.TASKHUB["security"], "max_bulk", 3)
    with pytest.raises(ValidationError) as error:
        services.task_create_many(items=[item(f"t{n}") for n in range(4)], owner=alice)
    (message,) = error.value.errors["non_field_errors"]
    assert "at most 3 tasks" in message and "got 4" in message and "security.max_bulk" in message
    assert not Task.objects.exists()
    assert len(services.task_create_many(items=[item(f"t{n}") for n in range(3)], owner=alice)) == 3


def test_dispatch_happens_once_after_commit(
    alice: User, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    woken: list[int] = []
    monkeypatch.setattr(dispatcher, "wake", lambda: woken.append(TaskResult.objects.count()))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.task_create_many(items=[item(f"t{n}") for n in range(4)], owner=alice)
        assert woken == []  # not before the commit
    assert len(callbacks) == 1 and woken == [4]  # once, with every first attempt written


def test_a_dependency_the_actor_cannot_see_is_unknown(alice: User, bob: User) -> None:
    hidden = services.task_create(data=item("bob's"), owner=bob)
    with pytest.raises(BulkValidationError) as error:
        services.task_create_many(items=[item("a"), item("b", dependencies=[hidden.pk])], owner=alice, actor=alice)
    assert error.value.items == [{}, {"dependencies": [f"unknown task id(s): {hidden.pk}"]}]
    with pytest.raises(ValidationError) as single:
        services.task_create(data=item("b", dependencies=[hidden.pk]), owner=alice, actor=alice)
    assert single.value.errors == error.value.items[1]


def test_another_users_retry_policy_is_refused(alice: User, bob: User) -> None:
    policy = RetryPolicy.objects.create(name="bob's", owner=bob)
    with pytest.raises(BulkValidationError) as error:
        services.task_create_many(items=[item("a", retry_policy={"id": policy.pk})], owner=alice, actor=alice)
    assert error.value.items == [{"retry_policy.id": [f"unknown retry policy {policy.pk}"]}]
    assert not Task.objects.exists()


def test_visible_dependencies_are_linked(alice: User) -> None:
    up1, up2 = services.task_create_many(items=[item("up1"), item("up2")], owner=alice)
    (down, other) = services.task_create_many(
        items=[item("down", dependencies=[up1.pk, up2.pk]), item("other", dependencies=[up2.pk])], owner=alice
    )
    assert set(down.dependencies.all()) == {up1, up2} and list(other.dependencies.all()) == [up2]


def test_an_item_cannot_depend_on_another_item_of_the_same_call(alice: User) -> None:
    # Ids are the server's: an item cannot name one created in the same call, so the id is unknown.
    with pytest.raises(BulkValidationError) as error:
        services.task_create_many(
            items=[item("a"), item("b", dependencies=["00000000-0000-0000-0000-000000000001"])], owner=alice
        )
    assert "unknown task id(s)" in error.value.items[1]["dependencies"][0]


def test_a_failed_upstream_fails_the_new_tasks_first_run(alice: User) -> None:
    upstream = services.task_create(data=item("up"), owner=alice)
    finish(upstream, "FAILED")
    (down, fine) = services.task_create_many(
        items=[item("down", dependencies=[upstream.pk]), item("fine")], owner=alice
    )
    assert TaskResult.objects.get(task=down).status == "FAILED"
    assert TaskResult.objects.get(task=fine).status == "PENDING"
    single = services.task_create(data=item("single", dependencies=[upstream.pk]), owner=alice)
    assert TaskResult.objects.get(task=down).error_message == TaskResult.objects.get(task=single).error_message


def test_two_items_creating_a_policy_of_one_name_are_refused(alice: User) -> None:
    policy = {"name": "p", "max_retries": 2}
    before = snapshot()
    with pytest.raises(BulkValidationError) as error:
        services.task_create_many(items=[item("a", retry_policy=policy), item("b", retry_policy=policy)], owner=alice)
    assert error.value.items[0] == {}
    assert "created by item 0 of this list" in error.value.items[1]["retry_policy"][0]
    assert snapshot() == before


def test_new_unnamed_policies_get_free_names(alice: User) -> None:
    tasks = services.task_create_many(
        items=[item("same", retry_policy={"max_retries": 1}), item("same", retry_policy={"max_retries": 2})],
        owner=alice,
    )
    assert [t.retry_policy.name for t in tasks] == ["policy for same", "policy for same (2)"]


def test_an_empty_list_creates_nothing(alice: User) -> None:
    assert services.task_create_many(items=[], owner=alice) == []


def _statements(owner: User, count: int, **fields: Any) -> int:
    with CaptureQueriesContext(connection) as queries:
        services.task_create_many(items=[item(f"t{n}", **fields) for n in range(count)], owner=owner, actor=owner)
    return len(queries.captured_queries)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"tags": ["TEST_RECORD", "mine", "yours"], "priority": "HIGH"},
        {"task_type": "SCHEDULED", "cron_expr": "0 0 * * *"},
        {"dependencies": "upstream"},
    ],
    ids=["plain", "tags", "scheduled", "dependencies"],
)
def test_statements_do_not_grow_with_the_number_of_items(alice: User, fields: dict[str, Any]) -> None:
    if fields.get("dependencies") == "upstream":
        fields = {"dependencies": [services.task_create(data=item("up"), owner=alice).pk]}
    five, fifty = _statements(alice, 5, **fields), _statements(alice, 50, **fields)
    assert fifty <= five + 2, (five, fifty)


def test_task_create_costs_no_more_statements_than_before(alice: User) -> None:
    # Measured on task_create before it became task_create_many of one item: 11 with two tags (one new).
    assert _statements(alice, 1, tags=["TEST_RECORD", "mine"]) <= 11


def test_dependency_modes_and_timeouts_are_written_as_by_a_single_create(alice: User) -> None:
    export = services.task_create(data=item("export", task_type="SCHEDULED", cron_expr="0 0 * * *"), owner=alice)
    audit = services.task_create(data=item("audit", task_type="SCHEDULED", cron_expr="0 1 * * *"), owner=alice)
    (report,) = services.task_create_many(
        items=[
            item(
                "report",
                task_type="SCHEDULED",
                cron_expr="0 2 * * *",
                dependencies=[{"id": str(export.pk), "mode": "any"}, str(audit.pk)],
                dependency_timeout=600,
            )
        ],
        owner=alice,
    )
    report.refresh_from_db()
    assert set(report.dependencies.all()) == {export, audit}
    assert list(report.any_run_dependencies.all()) == [export]
    assert report.dependency_timeout == 600
    created = TaskAudit.objects.get(task_id=report.pk, action="created")
    single = services.task_create(
        data=item(
            "report 2",
            task_type="SCHEDULED",
            cron_expr="0 2 * * *",
            dependencies=[{"id": str(export.pk), "mode": "any"}, str(audit.pk)],
            dependency_timeout=600,
        ),
        owner=alice,
    )
    by_single = TaskAudit.objects.get(task_id=single.pk, action="created")
    assert created.changes["dependencies"] == by_single.changes["dependencies"]
    assert created.changes["dependency_timeout"] == [None, 600]


def test_a_bad_dependency_mode_is_reported_by_index_and_nothing_is_written(alice: User) -> None:
    export = services.task_create(data=item("export"), owner=alice)
    before = snapshot()
    with pytest.raises(BulkValidationError) as error:
        services.task_create_many(
            items=[item("fine"), item("bad", dependencies=[{"id": str(export.pk), "mode": "sometimes"}])],
            owner=alice,
        )
    assert error.value.items[0] == {}
    assert "mode must be one of" in error.value.items[1]["dependencies"][0]
    assert snapshot() == before
