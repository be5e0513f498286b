"""Task validation through the service layer: every entry point gets the same field-level errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scheduling import services
from scheduling.handlers import registry
from scheduling.models import RetryPolicy, Task, TaskResult
from taskhub.exceptions import ValidationError

pytestmark = pytest.mark.django_db

SCHEMA = {
    "type": "object",
    "properties": {"project": {"type": "string", "minLength": 1}, "limit": {"type": "integer", "minimum": 1}},
    "required": ["project"],
    "additionalProperties": False,
}


@pytest.fixture
def schema_handler() -> Iterator[str]:
    registry.register("TEST_SCHEMA", lambda parameters, context: None, schema=SCHEMA)
    yield "TEST_SCHEMA"
    registry.unregister("TEST_SCHEMA")


def errors_of(call: Callable[[], Any]) -> dict[str, list[str]]:
    """Return the field errors the call raises (and check nothing was half-written)."""
    before = (Task.objects.count(), TaskResult.objects.count())
    with pytest.raises(ValidationError) as caught:
        call()
    assert (Task.objects.count(), TaskResult.objects.count()) == before
    return caught.value.errors


def create(**fields: Any) -> Task:
    data: dict[str, Any] = {"name": "t", "tags": ["TEST_RECORD"], "parameters": {}}
    data.update(fields)
    return services.task_create(data=data)


def create_errors(**fields: Any) -> dict[str, list[str]]:
    return errors_of(lambda: create(**fields))


# --- cron ---------------------------------------------------------------------------------------------


def test_scheduled_task_needs_a_cron_expression() -> None:
    assert create_errors(task_type="SCHEDULED") == {
        "cron_expr": ["is required for a SCHEDULED task (5 fields, e.g. '0 0 * * *')"]
    }


def test_immediate_task_refuses_a_cron_expression() -> None:
    assert create_errors(task_type="IMMEDIATE", cron_expr="0 0 * * *") == {
        "cron_expr": ["is only allowed on SCHEDULED tasks; set task_type to SCHEDULED or leave it empty"]
    }


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4: '0 0 * *'"),
        ("0 25 * * *", "hour field '25' is not valid (allowed: 0-23, *, lists, ranges, steps)"),
        (
            "0 0 * * MONDAY",
            "day-of-week field 'MONDAY' is not valid (allowed: 0-6 or SUN-SAT, *, lists, ranges, steps)",
        ),
    ],
)
def test_bad_cron_names_the_field(expr: str, message: str) -> None:
    assert create_errors(task_type="SCHEDULED", cron_expr=expr) == {"cron_expr": [message]}


def test_bad_timezone_is_refused() -> None:
    errors = create_errors(task_type="SCHEDULED", cron_expr="0 0 * * *", timezone="Mars/Olympus")
    assert errors == {
        "timezone": ["unknown time zone 'Mars/Olympus'; expected an IANA name such as UTC or Europe/Paris"]
    }


def test_scheduled_task_is_stored_with_its_normalised_cron_and_next_fire() -> None:
    task = create(task_type="SCHEDULED", cron_expr="  0   6 * * 1-5 ", timezone="Europe/Berlin")
    assert task.cron_expr == "0 6 * * 1-5"
    assert task.next_fire_at is not None
    assert task.crontab is not None and task.crontab.hour == "6"
    assert not TaskResult.objects.filter(task=task).exists()  # it waits for its first fire


def test_update_to_scheduled_without_cron_is_refused() -> None:
    task = create()
    assert errors_of(lambda: services.task_update(task=task, data={"task_type": "SCHEDULED"})) == {
        "cron_expr": ["is required for a SCHEDULED task (5 fields, e.g. '0 0 * * *')"]
    }


def test_update_with_bad_cron_names_the_field_and_keeps_the_old_schedule() -> None:
    task = create(task_type="SCHEDULED", cron_expr="0 0 * * *")
    errors = errors_of(lambda: services.task_update(task=task, data={"cron_expr": "0 0 * * * *"}))
    assert list(errors) == ["cron_expr"]
    task.refresh_from_db()
    assert task.cron_expr == "0 0 * * *"


# --- dependencies -------------------------------------------------------------------------------------------


def test_dependency_on_itself_is_refused() -> None:
    task = create(name="A")
    errors = errors_of(lambda: services.task_update(task=task, data={"dependencies": [task.pk]}))
    assert errors == {"dependencies": ["a task cannot depend on itself (A)"]}


def test_unknown_dependency_id_is_refused() -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert create_errors(dependencies=[missing]) == {"dependencies": [f"unknown task id(s): {missing}"]}


def test_dependency_that_is_not_an_id_is_refused() -> None:
    assert create_errors(dependencies=["task-a"]) == {"dependencies": ["'task-a' is not a task id (expected a UUID)"]}


def test_two_task_cycle_is_refused_and_named() -> None:
    a = create(name="A")
    b = create(name="B", dependencies=[a.pk])
    errors = errors_of(lambda: services.task_update(task=a, data={"dependencies": [b.pk]}))
    assert errors == {"dependencies": ["would create a cycle: A -> B -> A"]}
    assert list(a.dependencies.all()) == []


def test_longer_cycle_names_every_task_on_it() -> None:
    a = create(name="A")
    b = create(name="B", dependencies=[a.pk])
    c = create(name="C", dependencies=[b.pk])
    d = create(name="D", dependencies=[c.pk])
    errors = errors_of(lambda: services.task_update(task=a, data={"dependencies": [d.pk]}))
    assert errors == {"dependencies": ["would create a cycle: A -> D -> C -> B -> A"]}


def test_diamond_is_not_a_cycle() -> None:
    root = create(name="root")
    left = create(name="left", dependencies=[root.pk])
    right = create(name="right", dependencies=[root.pk])
    join = create(name="join", dependencies=[left.pk, right.pk])
    assert set(join.dependencies.values_list("name", flat=True)) == {"left", "right"}
    services.task_update(task=join, data={"dependencies": [left.pk, right.pk, root.pk]})
    assert join.dependencies.count() == 3


def test_dependencies_are_stored_without_duplicates() -> None:
    a = create(name="A")
    b = create(name="B", dependencies=[a.pk, str(a.pk)])
    assert list(b.dependencies.values_list("name", flat=True)) == ["A"]
    assert [t.name for t in a.dependents.all()] == ["B"]


# --- timeout and retry values ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -5, 2.5, "60", True])
def test_timeout_must_be_a_positive_integer(value: Any) -> None:
    errors = create_errors(timeout_seconds=value)
    assert errors == {"timeout_seconds": [f"must be a positive whole number of seconds, got {value!r}"]}


def test_timeout_above_the_configured_ceiling_is_refused() -> None:
    errors = create_errors(timeout_seconds=10**9)
    assert errors == {"timeout_seconds": ["must be at most 86400 (scheduler.max_timeout_seconds), got 1000000000"]}


def test_positive_timeout_is_kept() -> None:
    assert create(timeout_seconds=30).timeout_seconds == 30


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"retry_delay": -1}, "retry_delay"),
        ({"max_delay": -0.5}, "max_delay"),
        ({"backoff_factor": 0.9}, "backoff_factor"),
        ({"backoff_factor": 0}, "backoff_factor"),
    ],
)
def test_retry_values_out_of_range_are_refused_with_the_field(policy: dict[str, Any], field: str) -> None:
    errors = create_errors(retry_policy=policy)
    assert list(errors) == ["retry_policy"]
    assert field in " ".join(errors["retry_policy"])
    assert not RetryPolicy.objects.exists()


def test_retry_policy_with_an_unknown_field_is_refused() -> None:
    errors = create_errors(retry_policy={"max_retries": 2, "delay": 5})
    assert errors == {
        "retry_policy": [
            "unknown field(s) delay; known: name, max_retries, retry_delay, backoff_factor, max_delay, jitter, "
            "retry_on_timeout"
        ]
    }


def test_retry_policy_with_a_non_numeric_value_is_refused() -> None:
    errors = create_errors(retry_policy={"retry_delay": "soon"})
    assert list(errors) == ["retry_policy"]
    assert errors["retry_policy"][0].startswith("retry_delay: ")


def test_retry_policy_name_already_taken_is_refused() -> None:
    RetryPolicy.objects.create(name="nightly")
    assert create_errors(retry_policy={"name": "nightly", "max_retries": 1}) == {
        "retry_policy": ["a retry policy named 'nightly' exists; pass its id to share it, or another name"]
    }


def test_inline_retry_policies_of_same_named_tasks_get_distinct_names() -> None:
    first = create(name="export", retry_policy={"max_retries": 1})
    second = create(name="export", retry_policy={"max_retries": 2})
    assert first.retry_policy.name == "policy for export"
    assert second.retry_policy.name == "policy for export (2)"


def test_retry_policy_at_the_bounds_is_accepted() -> None:
    task = create(retry_policy={"max_retries": 0, "retry_delay": 0, "max_delay": 0, "backoff_factor": 1})
    assert task.retry_policy is not None
    assert (task.retry_policy.max_retries, task.retry_policy.backoff_factor) == (0, 1)


def test_unknown_retry_policy_id_is_refused() -> None:
    assert create_errors(retry_policy=999999) == {"retry_policy": ["unknown retry policy 999999"]}


def test_retry_policy_by_id_is_shared() -> None:
    shared = RetryPolicy.objects.create(name="nightly", max_retries=2)
    assert create(retry_policy=shared.pk).retry_policy == shared
    assert create(name="u", retry_policy=shared).retry_policy == shared


# --- handler tag and parameters ------------------------------------------------------------------------------


def test_a_handler_tag_is_required() -> None:
    errors = create_errors(tags=["nightly", "reports"])
    assert list(errors) == ["tags"]
    assert errors["tags"][0].startswith("must include exactly one handler tag; known handler tags: ")
    assert "TEST_RECORD" in errors["tags"][0]


def test_two_handler_tags_are_refused() -> None:
    assert create_errors(tags=["TEST_RECORD", "NOOP", "nightly"]) == {
        "tags": ["must include exactly one handler tag, got 2: NOOP, TEST_RECORD"]
    }


def test_one_handler_tag_among_plain_tags_is_the_handler() -> None:
    task = create(tags=["nightly", "TEST_RECORD", "team-a"])
    assert task.handler == "TEST_RECORD"
    assert sorted(task.tags.values_list("name", flat=True)) == ["TEST_RECORD", "nightly", "team-a"]


@pytest.mark.parametrize("tags", ["TEST_RECORD", ["TEST_RECORD", ""], ["TEST_RECORD", "x" * 65]])
def test_malformed_tags_are_refused(tags: Any) -> None:
    assert list(create_errors(tags=tags)) == ["tags"]


def test_parameters_are_checked_against_the_handler_schema(schema_handler: str) -> None:
    errors = create_errors(tags=[schema_handler], parameters={"limit": 0, "extra": True})
    assert list(errors) == ["parameters"]
    text = " | ".join(errors["parameters"])
    assert "'project' is a required property" in text
    assert "limit: 0 is less than the minimum of 1" in text
    assert "Additional properties are not allowed ('extra' was unexpected)" in text


def test_parameters_matching_the_schema_are_accepted(schema_handler: str) -> None:
    task = create(tags=[schema_handler], parameters={"project": "OPS", "limit": 10})
    assert task.parameters == {"project": "OPS", "limit": 10}
    assert task.handler == schema_handler


def test_update_rechecks_parameters(schema_handler: str) -> None:
    task = create(tags=[schema_handler], parameters={"project": "OPS"})
    errors = errors_of(lambda: services.task_update(task=task, data={"parameters": {"project": ""}}))
    assert list(errors) == ["parameters"]
    task.refresh_from_db()
    assert task.parameters == {"project": "OPS"}


def test_parameters_must_be_an_object() -> None:
    assert "parameters" in create_errors(parameters=["a"])


# --- other fields, and every problem at once ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"task_type": "SOMETIMES"}, "task_type"),
        ({"priority": "URGENT"}, "priority"),
        ({"priority": 7}, "priority"),
        ({"overlap_policy": "ignore"}, "overlap_policy"),
        ({"metadata": "notes"}, "metadata"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_other_bad_fields_are_named(fields: dict[str, Any], field: str) -> None:
    assert list(create_errors(**fields)) == [field]


def test_priority_names_and_numbers_are_accepted() -> None:
    assert create(priority="high").priority == 1
    assert create(priority=3).priority_name == "LOW"


def test_every_problem_is_reported_at_once() -> None:
    errors = create_errors(
        name="",
        task_type="SCHEDULED",
        cron_expr="99 * * * *",
        timeout_seconds=0,
        tags=["nothing-registered"],
        dependencies=["00000000-0000-4000-8000-000000000000"],
    )
    assert set(errors) == {"name", "cron_expr", "timeout_seconds", "tags", "dependencies"}
    assert errors["cron_expr"] == ["minute field '99' is not valid (allowed: 0-59, *, lists, ranges, steps)"]


def test_task_validate_writes_nothing() -> None:
    clean = services.task_validate(data={"name": "dry run", "tags": ["TEST_RECORD"], "parameters": {}})
    assert clean["handler"] == "TEST_RECORD"
    assert not Task.objects.exists()


# --- wrong JSON types get field errors, never a server error ------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"dependencies": 5}, "dependencies", "must be a list of task ids, got 5"),
        ({"dependencies": "abc"}, "dependencies", "must be a list of task ids, got 'abc'"),
        ({"dependencies": [None]}, "dependencies", "None is not a task id (expected a UUID)"),
        ({"timezone": 5}, "timezone", "must be an IANA time zone name such as UTC or Europe/Paris, got 5"),
        ({"task_type": "SCHEDULED", "cron_expr": 5}, "cron_expr", "must be a string of 5 fields, got 5"),
        (
            {"task_type": "SCHEDULED", "cron_expr": ",".join(str(m) for m in range(60)) + " * * * *"},
            "cron_expr",
            "must be at most 120 characters, got 177",
        ),
        ({"retry_policy": {"retry_delay": float("nan")}}, "retry_policy", "retry_delay: must be a finite number"),
        ({"retry_policy": {"max_delay": float("inf")}}, "retry_policy", "max_delay: must be a finite number"),
        (
            {"retry_policy": {"name": "x" * 101}},
            "retry_policy",
            "name: Ensure this value has at most 100 characters (it has 101).",
        ),
    ],
)
def test_wrong_types_are_field_errors(fields: dict[str, Any], field: str, message: str) -> None:
    assert create_errors(**fields) == {field: [message]}


def test_no_dependencies_given_as_null_means_none() -> None:
    assert list(create(dependencies=None).dependencies.all()) == []
