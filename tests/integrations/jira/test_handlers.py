"""JIRA_TASK_EXP / JIRA_TASK_UPDATE: parameters checked at task creation, handlers run against the fake Jira."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings
from openpyxl import load_workbook

from integrations.jira.handlers import export, update
from scheduling import services
from scheduling.handlers import HandlerContext
from scheduling.models import AttemptStatus, TaskResult
from taskhub.exceptions import IntegrationError, ValidationError
from tests.integrations.jira.conftest import ENV1, ENV2

# The handlers read their attempt's row (deadline, the run's checkpoint).
pytestmark = pytest.mark.django_db

SEED_ROOT = {"jira_envs": [ENV1, ENV2], "key_type": "root_ticket", "key_value": "PROJ-123", "user": "johndoe"}
SEED_PROJECT = {"jira_envs": [ENV1], "key_type": "project", "key_value": "PROJ", "user": "johndoe"}


def context(task_id: str | None = None, result_id: int = 1) -> HandlerContext:
    progress: list[tuple[float | None, str]] = []
    ctx = HandlerContext(
        task_id=task_id or str(uuid.uuid4()),
        task_name="Jira test",
        attempt=1,
        result_id=result_id,
        logger=logging.getLogger("test"),
        progress=lambda percent, message="": progress.append((percent, message)),
    )
    ctx.seen = progress  # type: ignore[attr-defined]
    return ctx


def create(parameters, tag="JIRA_TASK_EXP", **fields):
    data = {"name": f"jira {uuid.uuid4().hex[:6]}", "tags": [tag], "parameters": parameters, **fields}
    return services.task_create(data=data)


# --- validation when the task is created ------------------------------------------------------------


def test_seed_example_tasks_are_accepted(db, fake_jira, fake_jira2):
    create(SEED_ROOT)
    create(SEED_PROJECT, task_type="SCHEDULED", cron_expr="0 0 * * *")


def test_unknown_environment_is_refused_at_creation_listing_the_configured_ones(db, fake_jira, fake_jira2):
    with pytest.raises(ValidationError) as caught:
        create({**SEED_ROOT, "jira_envs": [ENV1, "https://evil.example.com"]})
    message = caught.value.errors["parameters"][0]
    assert "jira_envs: unknown Jira environment 'https://evil.example.com'" in message
    configured = message.split("configured: ")[1].split(", ")
    assert ENV1 in configured and ENV2 in configured


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"key_value": "PROJ"}, "key_value: expected an issue key such as PROJ-123 for key_type root_ticket"),
        ({"key_type": "project", "key_value": "PROJ-1"}, "key_value: expected a project key such as PROJ"),
        ({"incremental": True}, "incremental: only for key_type project"),
        ({"key_type": "board"}, "'board' is not one of ['root_ticket', 'project']"),
        ({"jira_envs": []}, "jira_envs: [] should be non-empty"),
        ({"url": "https://jira.example.com"}, "Additional properties are not allowed ('url' was unexpected)"),
        ({"max_depth": 99}, "max_depth: 99 is greater than the maximum of 20"),
    ],
)
def test_bad_export_parameters_are_refused_with_the_field_and_what_is_expected(db, fake_jira, change, expected):
    with pytest.raises(ValidationError) as caught:
        create({**SEED_ROOT, "jira_envs": [ENV1], **change})
    assert any(expected in message for message in caught.value.errors["parameters"]), caught.value.errors


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"jira_env": ENV1, "transition": "Done"}, "give exactly one of keys (a list of issue keys) or jql"),
        ({"jira_env": ENV1, "keys": ["PROJ-1"], "jql": "x", "transition": "Done"}, "give exactly one of keys"),
        ({"jira_env": ENV1, "keys": ["PROJ-1"]}, "nothing to do: give transition, fields or comment"),
        ({"jira_env": ENV1, "keys": ["not a key"], "transition": "Done"}, "keys: expected issue keys such as"),
        ({"jira_env": "prod", "keys": ["PROJ-1"], "transition": "Done"}, "jira_env: unknown Jira environment 'prod'"),
    ],
)
def test_bad_update_parameters_are_refused(db, fake_jira, parameters, expected):
    with pytest.raises(ValidationError) as caught:
        create(parameters, tag="JIRA_TASK_UPDATE")
    assert expected in caught.value.errors["parameters"][0]


# --- JIRA_TASK_EXP -------------------------------------------------------------------------------


def test_export_handler_records_the_workbook_as_artifact_and_copies_it_to_reports(fake_jira, fake_jira2):
    ctx = context()
    result = export(dict(SEED_ROOT), ctx)
    assert ctx.artifacts == [result["workbook"]]
    path = Path(settings.STORAGE_DIR) / result["workbook"]
    assert path.parent == ctx.artifact_dir and path.name.startswith("jira-root-ticket-proj-123-")
    report = Path(result["report"])
    assert report.parent == Path(settings.REPORTS_DIR) and report.read_bytes() == path.read_bytes()
    assert result["total"] == 10 and result["user"] == "johndoe"
    assert load_workbook(path).sheetnames == ["Summary", ENV1, ENV2]
    assert ctx.seen[-1][0] >= 95  # type: ignore[attr-defined]


def test_incremental_export_takes_issues_updated_since_the_last_successful_run(db, fake_jira):
    task = create({**SEED_PROJECT, "incremental": True}, task_type="SCHEDULED", cron_expr="0 0 * * *")
    first = export(dict(task.parameters), context(str(task.pk)))
    assert first["total"] == 8 and "since" not in first  # no earlier success: everything
    started = datetime(2024, 3, 5, 16, 1, tzinfo=UTC)
    done = TaskResult.objects.create(task=task, attempt=1, status=AttemptStatus.DONE, started_at=started)
    TaskResult.objects.create(task=task, attempt=2, status=AttemptStatus.FAILED, started_at=datetime.now(UTC))
    second = export(dict(task.parameters), context(str(task.pk), result_id=done.pk + 100))
    assert second["since"] == "2024-03-05T16:00:00+00:00"  # a minute early: JQL has minute precision
    assert second["total"] == 2
    assert fake_jira.searches()[-1]["jql"][0].startswith('project = "PROJ" AND updated >= "2024/03/05 17:00"')


# --- JIRA_TASK_UPDATE -----------------------------------------------------------------------------


def run_update(**parameters):
    return update({"jira_env": ENV1, **parameters}, context())


def test_transition_by_name_is_case_insensitive(fake_jira):
    result = run_update(keys=["PROJ-124", "proj-127"], transition="start PROGRESS")
    assert fake_jira.issues["PROJ-124"].status == "In Progress"
    assert fake_jira.issues["PROJ-127"].status == "In Progress"
    assert result["changed"] == 2
    assert result["issues"][0] == {
        "key": "PROJ-124", "status": "To Do", "transition": "Start Progress", "to_status": "In Progress",
    }  # fmt: skip


def test_target_status_name_works_too(fake_jira):
    run_update(keys=["PROJ-124"], transition="done")
    assert fake_jira.issues["PROJ-124"].status == "Done"
    assert fake_jira.issues["PROJ-124"].resolution == "Done"


def test_unavailable_transition_fails_listing_the_available_ones_and_changes_nothing(fake_jira):
    with pytest.raises(IntegrationError) as caught:
        run_update(keys=["PROJ-124", "PROJ-126"], transition="Stop Progress", fields={"labels": ["x"]})
    error = caught.value
    assert error.permanent
    assert "nothing changed" in str(error)
    assert "PROJ-124 (status To Do): no transition 'Stop Progress'; available: Start Progress (-> In Progress), " \
           "Done (-> Done)" in str(error)  # fmt: skip
    assert "PROJ-126 (status Done): no transition 'Stop Progress'; available: Reopen (-> To Do)" in str(error)
    assert fake_jira.issues["PROJ-124"].labels == []
    assert fake_jira.count("POST") == 0 and fake_jira.count("PUT") == 0


def test_issue_already_in_the_target_status_is_skipped(fake_jira):
    result = run_update(keys=["PROJ-126", "PROJ-124"], transition="Done")
    assert result["issues"][0]["skipped"] == "already in status Done"
    assert fake_jira.issues["PROJ-124"].status == "Done"
    assert result["changed"] == 1


def test_a_retry_after_a_partial_run_finishes_the_rest(fake_jira):
    fake_jira.fail_next(500, path="/PROJ-127/transitions", method="POST")
    with pytest.raises(IntegrationError) as caught:
        run_update(keys=["PROJ-124", "PROJ-127"], transition="Start Progress")
    assert not caught.value.permanent
    assert fake_jira.issues["PROJ-124"].status == "In Progress"
    result = run_update(keys=["PROJ-124", "PROJ-127"], transition="Start Progress")
    assert result["issues"][0]["skipped"] == "already in status In Progress"
    assert fake_jira.issues["PROJ-127"].status == "In Progress"


def test_dry_run_reports_the_changes_and_changes_nothing(fake_jira):
    result = run_update(
        keys=["PROJ-124"],
        transition="Start Progress",
        fields={"Story Points": 8, "labels": ["checkout"], "priority": {"name": "Medium"}},
        dry_run=True,
    )
    assert result["dry_run"] is True and result["changed"] == 0 and result["would_change"] == 1
    assert result["issues"][0]["fields"] == {
        "customfield_10106": {"from": 5.0, "to": 8},
        "labels": {"from": [], "to": ["checkout"]},
    }  # priority is already Medium: not a change
    assert result["issues"][0]["transition"] == "Start Progress"
    assert fake_jira.issues["PROJ-124"].story_points == 5.0 and fake_jira.issues["PROJ-124"].status == "To Do"
    assert fake_jira.count("PUT") == 0 and fake_jira.count("POST") == 0


def test_fields_by_name_or_id_are_set_and_a_comment_added(fake_jira):
    result = run_update(keys=["PROJ-124"], fields={"story points": 3, "summary": "Pay faster"}, comment="Done by bot")
    issue = fake_jira.issues["PROJ-124"]
    assert (issue.story_points, issue.summary, issue.comments) == (3, "Pay faster", ["Done by bot"])
    assert result["changed"] == 1


def test_unknown_field_is_a_permanent_error_naming_it(fake_jira):
    with pytest.raises(IntegrationError) as caught:
        run_update(keys=["PROJ-124"], fields={"Flavour": "vanilla"})
    assert caught.value.permanent and "unknown field 'Flavour'" in str(caught.value)


def test_field_jira_refuses_is_a_permanent_400_with_jiras_reason(fake_jira):
    with pytest.raises(IntegrationError) as caught:
        run_update(keys=["PROJ-124"], fields={"created": "2020-01-01"})
    assert caught.value.status == 400 and caught.value.permanent
    assert "created: Field 'created' cannot be set" in str(caught.value)


def test_jql_chooses_the_issues_and_max_issues_guards_mass_edits(fake_jira):
    jql = 'project = PROJ AND status = "To Do" ORDER BY key'
    with pytest.raises(IntegrationError) as caught:
        run_update(jql=jql, transition="Start Progress", max_issues=3)
    assert "the JQL matches 6 issues, more than max_issues=3" in str(caught.value)
    assert fake_jira.count("POST") == 0
    result = run_update(jql="project = PROJ AND labels = q2", transition="Done")
    assert [i["key"] for i in result["issues"]] == ["PROJ-123"]
    assert fake_jira.issues["PROJ-123"].status == "Done"


def test_missing_issue_key_is_a_permanent_404(fake_jira):
    with pytest.raises(IntegrationError) as caught:
        run_update(keys=["PROJ-999"], transition="Done")
    assert caught.value.status == 404 and "read issue PROJ-999" in str(caught.value)


def test_bad_jql_is_a_permanent_400_with_jiras_message(fake_jira):
    with pytest.raises(IntegrationError) as caught:
        run_update(jql="flavour = vanilla", transition="Done")
    assert caught.value.status == 400 and caught.value.permanent
    assert "Field 'flavour' does not exist or you do not have permission to view it." in str(caught.value)
