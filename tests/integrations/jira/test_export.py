"""Extraction by root ticket and by project through the real jira client, read back from the workbook."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook

from integrations.jira.services import ExportRequest, export_issues, jira_time
from tests.integrations.jira.conftest import ENV1, ENV2


def rows(path, sheet):
    """Return a sheet's data rows as dicts by header."""
    ws = load_workbook(path)[sheet]
    values = list(ws.iter_rows(values_only=True))
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


def test_root_ticket_takes_the_tree_and_links_once_each(fake_jira, tmp_path):
    out = tmp_path / "tree.xlsx"
    summary = export_issues(ExportRequest(envs=[ENV1], key_type="root_ticket", key_value="PROJ-123"), out)
    found = {row["Key"]: (row["Depth"], row["Found via"]) for row in rows(out, ENV1)}
    assert found == {
        "PROJ-123": (0, "root"),
        "PROJ-124": (1, "in epic PROJ-123"),  # Epic Link child
        "PROJ-126": (1, "sub-task of PROJ-123"),
        "OTHER-1": (1, "clones PROJ-123"),  # linked, another project
        "PROJ-125": (2, "sub-task of PROJ-124"),
        "PROJ-127": (2, "is blocked by PROJ-124"),
        "PROJ-128": (2, "relates to PROJ-124"),  # 124 -> 127 -> 128 -> 124 is a cycle: each once
        "PROJ-130": (3, "is blocked by PROJ-128"),
    }
    assert "PROJ-200" not in found  # same project, unrelated
    assert summary["environments"][ENV1]["missing"] == ["PROJ-129"]  # linked but not visible to the Jira user
    assert any("PROJ-129" in note for note in summary["notes"])


def test_depth_limit_stops_the_walk(fake_jira, tmp_path):
    out = tmp_path / "tree.xlsx"
    export_issues(ExportRequest(envs=[ENV1], key_type="root_ticket", key_value="PROJ-123", max_depth=1), out)
    assert sorted(row["Key"] for row in rows(out, ENV1)) == ["OTHER-1", "PROJ-123", "PROJ-124", "PROJ-126"]


def test_issue_limit_truncates_and_says_so(fake_jira, tmp_path):
    out = tmp_path / "tree.xlsx"
    summary = export_issues(ExportRequest(envs=[ENV1], key_type="root_ticket", key_value="proj-123", max_issues=3), out)
    assert len(rows(out, ENV1)) == 3
    assert summary["environments"][ENV1]["truncated"] is True
    assert "stopped at 3 issues" in summary["notes"][0]


def test_epic_children_come_through_parent_where_jira_has_no_epic_link_field(jira_servers, monkeypatch, tmp_path):
    from tests.integrations.jira.conftest import configure

    cloud_like = jira_servers(epic_link_field=False)
    cloud_like.add_issue("NEW-1", "Epic", type="Epic")
    cloud_like.add_issue("NEW-2", "Story in the epic", type="Story", parent="NEW-1")
    configure(monkeypatch, ENV1, cloud_like)
    out = tmp_path / "tree.xlsx"
    export_issues(ExportRequest(envs=[ENV1], key_type="root_ticket", key_value="NEW-1"), out)
    story = rows(out, ENV1)[1]
    assert (story["Key"], story["Epic"], story["Parent"], story["Found via"]) == (
        "NEW-2",
        "NEW-1",
        None,
        "in epic NEW-1",
    )
    assert not any("Epic Link" in q["jql"][0] for q in cloud_like.searches())


def test_project_export_reads_every_page_even_when_jira_caps_the_page_size(jira_servers, monkeypatch, tmp_path):
    from tests.integrations.jira.conftest import configure

    big = jira_servers(max_results_cap=70)  # Jira returns at most 70 per page whatever we ask
    big.generate("BIG", 2000)
    configure(monkeypatch, ENV1, big)
    out = tmp_path / "big.xlsx"
    progress = []
    summary = export_issues(
        ExportRequest(envs=[ENV1], key_type="project", key_value="BIG", page_size=100),
        out,
        progress=lambda percent, message="": progress.append((percent, message)),
    )
    keys = [row["Key"] for row in rows(out, ENV1)]
    assert keys == [f"BIG-{n}" for n in range(1, 2001)]  # all, once, in key order
    assert summary["total"] == 2000
    starts = [int(q["startAt"][0]) for q in big.searches()]
    assert starts == list(range(0, 2000, 70))  # advanced by what came back, not by what was asked
    page_messages = [m for _, m in progress if "of 2000 issues" in m]
    assert len(page_messages) == len(starts)  # progress reported page by page
    percents = [p for p, _ in progress if p is not None]
    assert percents == sorted(percents) and percents[-1] >= 95


def test_incremental_project_export_asks_for_issues_updated_since_in_the_jira_users_zone(fake_jira, tmp_path):
    since = datetime(2024, 3, 5, 16, 0, tzinfo=UTC)  # 17:00 in Berlin, the fake user's zone
    out = tmp_path / "inc.xlsx"
    summary = export_issues(ExportRequest(envs=[ENV1], key_type="project", key_value="PROJ", since=since), out)
    jql = fake_jira.searches()[0]["jql"][0]
    assert jql == 'project = "PROJ" AND updated >= "2024/03/05 17:00" ORDER BY key ASC'
    assert [row["Key"] for row in rows(out, ENV1)] == ["PROJ-123", "PROJ-124"]  # updated 5 Mar 17:45, 6 Mar
    assert summary["since"] == since.isoformat()


def test_jira_time_converts_to_the_users_zone():
    moment = datetime(2024, 7, 1, 22, 30, tzinfo=UTC)
    assert jira_time(moment, "Asia/Tokyo") == "2024/07/02 07:30"
    assert jira_time(moment, "Not/AZone") == "2024/07/01 22:30"


def test_two_environments_give_two_sheets_and_one_summary(fake_jira, fake_jira2, tmp_path):
    out = tmp_path / "two.xlsx"
    summary = export_issues(ExportRequest(envs=[ENV1, ENV2], key_type="root_ticket", key_value="PROJ-123"), out)
    book = load_workbook(out)
    assert book.sheetnames == ["Summary", ENV1, ENV2]
    assert [row["Key"] for row in rows(out, ENV2)] == ["PROJ-123", "PROJ-140"]
    assert summary["environments"][ENV2]["issues"] == 2 and summary["total"] == 10
    # env2 is reached with its personal access token, env1 with basic auth.
    assert fake_jira2.count("GET", "/issue/PROJ-123") == 1


@pytest.mark.parametrize("key_type", ["project", "root_ticket"])
def test_an_empty_result_still_gives_a_valid_workbook(jira_servers, monkeypatch, tmp_path, key_type):
    from tests.integrations.jira.conftest import configure

    empty = jira_servers()
    empty.add_project("EMPTY")
    empty.add_issue("SOLO-1", "Alone")
    configure(monkeypatch, ENV1, empty)
    out = tmp_path / "empty.xlsx"
    value = "EMPTY" if key_type == "project" else "SOLO-1"
    export_issues(ExportRequest(envs=[ENV1], key_type=key_type, key_value=value), out)
    assert len(rows(out, ENV1)) == (0 if key_type == "project" else 1)
    assert load_workbook(out)[ENV1].auto_filter.ref.startswith("A1:")


def test_created_and_updated_are_real_dates_in_the_configured_zone(fake_jira, tmp_path, settings):
    settings.TIME_ZONE = "America/New_York"
    out = tmp_path / "tz.xlsx"
    export_issues(ExportRequest(envs=[ENV1], key_type="root_ticket", key_value="PROJ-123", max_depth=0), out)
    root = rows(out, ENV1)[0]
    assert root["Created"] == datetime(2024, 3, 1, 3, 30)  # 08:30 UTC, sent by Jira as 09:30+0100
