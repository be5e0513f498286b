"""Jira Cloud beside Server / Data Center: the real ``jira`` client against the fake in its Cloud mode.

The fake answers as Jira Cloud does (see tests/fakes/jira_server.py): 410 on the removed
search, the enhanced search with nextPageToken and no total, account ids, parent epics,
"Story point estimate", ADF rich text, e-mail + API token only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from openpyxl import load_workbook

from integrations.jira.checkpoint import STALE_SECONDS, Checkpoint, prune
from integrations.jira.client import RATE_LIMIT_WAITS, attempt_deadline, get_client
from integrations.jira.services import ExportRequest, export_issues
from integrations.jira.updates import UpdateRequest, update_issues
from taskhub.exceptions import IntegrationError
from tests.fakes.jira_server import CLOUD_STORY_POINTS, FakeJira
from tests.integrations.jira.conftest import CLOUD, ENV1, build_env1, configure

PEOPLE = {"Assignee", "Reporter", "Assignee ID", "Reporter ID"}


def export(tmp_path: Path, env: str, key_type: str = "project", key_value: str = "PROJ", **options) -> dict:
    progress = options.pop("progress", None) or (lambda percent, message="": None)
    checkpoint = options.pop("checkpoint", None)
    request = ExportRequest(envs=[env], key_type=key_type, key_value=key_value, **options)
    return export_issues(request, tmp_path / f"{env}.xlsx", progress=progress, checkpoint=checkpoint)


def rows(path: Path, sheet: str) -> list[dict]:
    ws = load_workbook(path)[sheet]
    values = list(ws.iter_rows(values_only=True))
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


def update(env: str, **fields) -> dict:
    return update_issues(UpdateRequest(env=env, **fields), progress=lambda *a: None, logger=logging.getLogger("t"))


# --- search -----------------------------------------------------------------------------------


def test_cloud_export_pages_with_next_page_token_and_never_calls_a_removed_endpoint(fake_cloud, tmp_path):
    seen: list[tuple[float | None, str]] = []
    summary = export(tmp_path, CLOUD, page_size=3, progress=lambda percent, message="": seen.append((percent, message)))
    keys = [row["Key"] for row in rows(tmp_path / f"{CLOUD}.xlsx", CLOUD)]
    assert keys == [f"PROJ-{n}" for n in (123, 124, 125, 126, 127, 128, 130, 200)]
    assert summary["environments"][CLOUD]["deployment"] == "cloud"
    paths = [path for _, path, _ in fake_cloud.requests]
    assert not [p for p in paths if p.endswith("/search")]  # the removed API (410 on Cloud)
    searches = [query for method, path, query in fake_cloud.requests if path == "/rest/api/3/search/jql"]
    assert len(searches) == 3  # 8 issues, 3 a page: the third page says isLast
    assert "nextPageToken" not in searches[0] and all("nextPageToken" in q for q in searches[1:])
    assert all(q.get("fields") for q in searches)  # fields named explicitly (Cloud's default is the id only)
    # No total on Cloud: progress counts what came.
    assert [message for _, message in seen if "so far" in message] == [
        f"{CLOUD}: 3 issues so far",
        f"{CLOUD}: 6 issues so far",
        f"{CLOUD}: 8 issues so far",
    ]


def test_the_removed_search_answers_410_as_cloud_does(fake_cloud, monkeypatch, tmp_path):
    # A Cloud Jira declared as server would be searched the old way: the message says what to change.
    configure(monkeypatch, CLOUD, fake_cloud, deployment="server")
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path, CLOUD)
    assert caught.value.status == 410 and caught.value.permanent
    assert "set the environment's deployment to cloud" in str(caught.value)
    assert "/rest/api/3/search/jql" in str(caught.value)


def test_auto_reads_the_deployment_once_per_client(fake_cloud, fake_jira, tmp_path):
    for _ in range(2):
        export(tmp_path, CLOUD)
        export(tmp_path, ENV1)
    assert fake_cloud.count("GET", "/serverInfo") == 1
    assert fake_jira.count("GET", "/serverInfo") == 1
    assert get_client(CLOUD).is_cloud and not get_client(ENV1).is_cloud


def test_declared_deployment_reads_no_server_info(fake_cloud, monkeypatch, tmp_path):
    configure(monkeypatch, CLOUD, fake_cloud, deployment="cloud")
    export(tmp_path, CLOUD)
    assert fake_cloud.count("GET", "/serverInfo") == 0


# --- data ---------------------------------------------------------------------------------------


def test_cloud_rows_match_server_rows_except_people(fake_cloud, fake_jira, tmp_path):
    export(tmp_path, CLOUD)
    export(tmp_path, ENV1)
    cloud, server = rows(tmp_path / f"{CLOUD}.xlsx", CLOUD), rows(tmp_path / f"{ENV1}.xlsx", ENV1)
    assert len(cloud) == len(server) == 8
    for c, s in zip(cloud, server, strict=True):
        assert {k: v for k, v in c.items() if k not in PEOPLE} == {k: v for k, v in s.items() if k not in PEOPLE}
        assert c["Assignee"] == s["Assignee"]  # display names on both
    story = next(row for row in cloud if row["Key"] == "PROJ-124")
    assert story["Epic"] == "PROJ-123" and story["Parent"] is None  # the epic came through parent
    assert story["Story Points"] == 5  # found by its name, "Story point estimate"
    # Rich text: ADF on Cloud (REST v3), text on Server (v2), the same plain text in both workbooks.
    assert story["Description"] == "As a shopper I pay with a card I saved before.\nNo card number is shown in full."
    assert story["Assignee"] == "Bob Baker" and story["Assignee ID"] == fake_cloud.account_id("bob")
    assert next(row for row in server if row["Key"] == "PROJ-124")["Assignee ID"] == "bob"
    assert CLOUD_STORY_POINTS in ",".join(fake_cloud.searches()[0]["fields"])


def test_cloud_tree_finds_epic_children_through_parent_and_lists_hidden_links(fake_cloud, fake_jira, tmp_path):
    cloud = export(tmp_path, CLOUD, key_type="root_ticket", key_value="PROJ-123")
    server = export(tmp_path, ENV1, key_type="root_ticket", key_value="PROJ-123")
    cloud_rows = rows(tmp_path / f"{CLOUD}.xlsx", CLOUD)
    server_rows = rows(tmp_path / f"{ENV1}.xlsx", ENV1)
    assert [r["Key"] for r in cloud_rows] == [r["Key"] for r in server_rows]
    assert [(r["Depth"], r["Found via"]) for r in cloud_rows] == [(r["Depth"], r["Found via"]) for r in server_rows]
    assert ("PROJ-124", "in epic PROJ-123") in [(r["Key"], r["Found via"]) for r in cloud_rows]
    # Cloud refuses a JQL naming an invisible key (no validateQuery there): it is dropped and listed.
    assert cloud["environments"][CLOUD]["missing"] == server["environments"][ENV1]["missing"] == ["PROJ-129"]
    assert not [p for _, p, _ in fake_cloud.requests if p.endswith("/search")]
    assert not [q for q in fake_cloud.searches() if "Epic Link" in q.get("jql", [""])[0]]


# --- credentials --------------------------------------------------------------------------------


def test_wrong_cloud_token_fails_once_naming_the_environment_and_the_keys(fake_cloud, monkeypatch, tmp_path):
    configure(monkeypatch, CLOUD, fake_cloud, api_token="ATATT-not-the-token")
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path, CLOUD)
    error = str(caught.value)
    assert caught.value.status == 401 and caught.value.permanent
    assert error.startswith(f"Jira {CLOUD} ")
    assert f"jira.environments.{CLOUD}.email and .api_token" in error
    assert "TASKHUB_JIRA_ENVIRONMENTS_ACME_ATLASSIAN_NET_API_TOKEN" in error
    assert "ATATT-not-the-token" not in error
    assert len(fake_cloud.requests) == 1  # refused on the first request, not retried


def test_cloud_refuses_a_password_or_a_bearer_token(fake_cloud, monkeypatch, tmp_path):
    for credentials in (
        {"email": "", "api_token": "", "username": "taskhub-bot", "password": "pw"},
        {"email": "", "api_token": "", "token": fake_cloud.api_token},
    ):
        configure(monkeypatch, CLOUD, fake_cloud, deployment="cloud", **credentials)
        with pytest.raises(IntegrationError) as caught:
            export(tmp_path, CLOUD)
        assert caught.value.status == 401


# --- updates --------------------------------------------------------------------------------------


@pytest.fixture(params=["server", "cloud"])
def either(request, jira_servers, monkeypatch) -> tuple[str, FakeJira]:
    """The same issues on a Server and on a Cloud Jira whose workflow offers a global "Done" transition."""
    if request.param == "cloud":
        server = jira_servers(cloud=True, email="bot@acme.example", api_token="ATATT-token", self_transitions=True)
    else:
        server = jira_servers(username="bot", password="pw", self_transitions=True)
    build_env1(server)
    configure(monkeypatch, request.param, server)
    return request.param, server


def test_transition_field_edit_and_comment_on_both_deployments(either):
    env, jira = either
    result = update(
        env,
        keys=["PROJ-124"],
        transition="start progress",
        fields={"description": "Line one\nLine two", "Story Points" if env == "server" else "Story point estimate": 8},
        comment="Moved by TaskHub",
    )
    assert result["changed"] == 1
    issue = jira.issues["PROJ-124"]
    assert issue.status == "In Progress" and issue.story_points == 8
    assert issue.description == "Line one\nLine two" and issue.comments == ["Moved by TaskHub"]
    # Editing to the same text again changes nothing (ADF on Cloud read back as text).
    again = update(env, keys=["PROJ-124"], fields={"description": "Line one\nLine two"})
    assert again["would_change"] == 0 and "fields" not in again["issues"][0]


def test_issue_already_in_the_requested_status_is_skipped_despite_a_self_transition(either):
    env, jira = either
    jira.issues["PROJ-124"].status = "Done"
    result = update(env, keys=["PROJ-124", "PROJ-127"], transition="Done")
    assert result["issues"][0] == {"key": "PROJ-124", "status": "Done", "skipped": "already in status Done"}
    assert result["issues"][1]["to_status"] == "Done" and result["changed"] == 1
    transitions = [p for m, p, _ in jira.requests if m == "POST" and p.endswith("/transitions")]
    assert len(transitions) == 1 and transitions[0].endswith("/issue/PROJ-127/transitions")


def test_jql_selection_without_a_total_still_guards_max_issues(fake_cloud):
    with pytest.raises(IntegrationError) as caught:
        update(CLOUD, jql="project = PROJ", transition="Done", max_issues=3)
    assert "matches more than 3 issues, more than max_issues=3" in str(caught.value)
    assert fake_cloud.count("POST", "/transitions") == 0


# --- rate limits ------------------------------------------------------------------------------------


def test_429_is_waited_out_inside_the_attempt_after_retry_after(either, tmp_path):
    env, jira = either
    jira.fail_next(429, path="/search", retry_after="1")
    started = time.monotonic()
    summary = export(tmp_path, env)
    assert summary["total"] == 8
    assert 1 <= time.monotonic() - started < 10
    assert len(jira.searches()) == 2


def test_429_that_persists_fails_after_bounded_waits_promising_no_retry(either, tmp_path):
    env, jira = either
    jira.fail_next(429, times=RATE_LIMIT_WAITS + 5, path="/search", retry_after="0")
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path, env)
    assert caught.value.status == 429 and not caught.value.permanent
    assert len(jira.searches()) == RATE_LIMIT_WAITS + 1
    assert "will retry" not in str(caught.value)


def test_429_wait_never_passes_the_attempts_deadline(either, tmp_path):
    env, jira = either
    jira.fail_next(429, path="/search", retry_after="30")
    started = time.monotonic()
    with attempt_deadline(5), pytest.raises(IntegrationError) as caught:
        export(tmp_path, env)
    assert time.monotonic() - started < 5
    assert "waiting would pass the task's timeout_seconds" in str(caught.value)
    assert len(jira.searches()) == 1


# --- resumable exports --------------------------------------------------------------------------------


def test_interrupted_export_resumes_from_its_last_completed_page(either, tmp_path):
    env, jira = either
    jira.generate("BIG", 250)
    checkpoint_dir = tmp_path / "checkpoint"

    def fail_after_three_pages(percent, message=""):
        if message.startswith(f"{env}: 150 "):
            jira.fail_next(503, path="/search")

    request = {"key_value": "BIG", "page_size": 50}
    with pytest.raises(IntegrationError):
        first = Checkpoint(checkpoint_dir, "run-1")
        export(tmp_path, env, checkpoint=first, progress=fail_after_three_pages, **request)
    assert len(jira.searches()) == 4  # three pages, then the 503
    before = len(jira.searches())
    retry = Checkpoint(checkpoint_dir, "run-1")
    assert retry.resumed
    summary = export(tmp_path, env, checkpoint=retry, **request)
    assert len(jira.searches()) - before == 2  # pages four and five only
    keys = [row["Key"] for row in rows(tmp_path / f"{env}.xlsx", env)]
    assert keys == [f"BIG-{n}" for n in range(1, 251)]  # complete, each issue once, in order
    assert summary["environments"][env]["resumed_issues"] == 150
    assert not checkpoint_dir.exists()  # the workbook is the record now


def test_an_expired_page_token_in_the_checkpoint_reads_again_from_the_first_page(fake_cloud, tmp_path):
    folder = tmp_path / "checkpoint"

    def fail_after_one_page(percent, message=""):
        if message == f"{CLOUD}: 3 issues so far":
            fake_cloud.fail_next(503, path="/search")

    with pytest.raises(IntegrationError):
        export(tmp_path, CLOUD, page_size=3, checkpoint=Checkpoint(folder, "r"), progress=fail_after_one_page)
    stale = Checkpoint(folder, "r")
    stale.state(CLOUD).cursor = {"nextPageToken": "expired-token"}  # Cloud's tokens expire after 7 days
    stale._save()
    summary = export(tmp_path, CLOUD, page_size=3, checkpoint=Checkpoint(folder, "r"))
    keys = [row["Key"] for row in rows(tmp_path / f"{CLOUD}.xlsx", CLOUD)]
    assert keys == [f"PROJ-{n}" for n in (123, 124, 125, 126, 127, 128, 130, 200)]  # each once
    assert summary["environments"][CLOUD]["resumed_issues"] == 3


def test_a_checkpoint_of_another_request_is_not_resumed(fake_jira, tmp_path):
    fake_jira.generate("BIG", 120)
    folder = tmp_path / "checkpoint"
    Checkpoint(folder, "a").page_done(ENV1, [{"id": "1", "key": "BIG-1", "fields": {}}], {"startAt": 100})
    assert Checkpoint(folder, "a").resumed
    assert not Checkpoint(folder, "b").resumed  # the task's parameters changed: start over


def test_a_half_written_page_is_cut_off_when_resuming(tmp_path):
    folder = tmp_path / "checkpoint"
    first = Checkpoint(folder, "f")
    first.page_done("e", [{"id": "1"}, {"id": "2"}], {"startAt": 2})
    spool = next(folder.glob("*.jsonl"))
    with spool.open("ab") as handle:
        handle.write(b'{"id": "3"}\n{"id": ')  # a worker killed while writing the next page
    again = Checkpoint(folder, "f")
    assert [issue["id"] for issue in again.spooled_issues("e")] == ["1", "2"]
    assert again.state("e").cursor == {"startAt": 2}


def test_checkpoints_of_runs_that_ended_unfinished_are_pruned_after_a_week(tmp_path):
    task = tmp_path / "task"
    for run in ("1", "2", "3"):
        Checkpoint(task / run, "f").page_done("e", [{"id": run}], {"startAt": 1})
    now = (task / "1" / "state.json").stat().st_mtime + STALE_SECONDS + 60
    prune(task, keep=task / "3", now=now)
    assert sorted(p.name for p in task.iterdir()) == ["3"]
