"""The Confluence report page: storage format the real parser accepts, every value escaped, bounded size."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from reporting.services import report_run
from scheduling.models import AttemptStatus
from tests.fakes.confluence_server import NAMESPACES
from tests.fakes.fixtures import REPORT_PAGE_ID, fake_confluence_cloud  # noqa: F401 - a fixture
from tests.reporting.factories import finish

A = AttemptStatus
S = timedelta(seconds=1)
AC = "{http://atlassian.com/content}"


@pytest.fixture
def confluence_only(monkeypatch, fake_confluence):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", ["confluence"])
    return fake_confluence


def _tree(body: str) -> ET.Element:
    return ET.fromstring(f"<root {NAMESPACES}>{body}</root>")


def _table_rows(root: ET.Element) -> list[list[str]]:
    """Return the text of each row of the 'Latest attempts' table (the last table on the page)."""
    table = root.findall(".//table")[-1]
    rows = []
    for tr in table.iter("tr"):
        cells = tr.findall("td")
        if cells:
            rows.append(["".join(cell.itertext()) for cell in cells])
    return rows


def test_hostile_names_and_errors_show_as_text(confluence_only, make_task):
    t0 = timezone.now()
    names = ["<script>alert(1)</script>", "]]> <![CDATA[", "R&D \"quotes\" 'single'", "@channel *bold* |pipe|"]
    for offset, name in enumerate(names):
        finish(make_task(name), A.FAILED, at=t0 + offset * S, error=f"bad <b>{name}</b> \x1b[31mred\x07 & more")

    [report] = report_run(now=t0 + 10 * S)

    assert report.outcome == "SENT", report.error  # the fake refuses malformed storage format with 400
    body = confluence_only.pages[REPORT_PAGE_ID].body
    rows = _table_rows(_tree(body))
    assert sorted(row[0] for row in rows) == sorted(names)
    assert "<script>" not in body and "<b>" not in body
    errors = {row[0]: row[6] for row in rows}
    assert errors[names[0]] == f"bad <b>{names[0]}</b> [31mred & more"  # control characters dropped


def test_page_has_summary_status_macros_links_and_durations(confluence_only, make_task):
    t0 = timezone.now()
    fast, slow = make_task("fast", priority="HIGH"), make_task("slow")
    finish(fast, at=t0 + 1 * S, duration=0.5)
    finish(slow, A.TIMEOUT, at=t0 + 2 * S, duration=120.0, error="timed out after 120 s")
    finish(fast, at=t0 + 3 * S, duration=0.25)

    report_run(now=t0 + 4 * S)

    root = _tree(confluence_only.pages[REPORT_PAGE_ID].body)
    macros = {tuple(p.text for p in macro.findall(f"{AC}parameter")) for macro in root.iter(f"{AC}structured-macro")}
    assert {("Green", "DONE"), ("Red", "TIMEOUT")} <= macros
    text = "".join(root.itertext())
    assert "Failure rate33.3 %" in text.replace("\n", "")
    rows = _table_rows(root)
    assert rows[0][0] == "fast" and rows[0][2] == "HIGH" and rows[0][4] == "0.25 s" and rows[0][5] == "1"
    assert rows[1][6] == "timed out after 120 s"
    links = {a.get("href") for a in root.iter("a")}
    assert f"http://127.0.0.1:8000/admin/scheduling/task/{slow.pk}/change/" in links
    slowest = root.findall(".//table")[1]
    assert "".join(slowest.find(".//td").itertext()) == "slow"


def test_page_stays_bounded_however_many_attempts_finish(confluence_only, make_task, monkeypatch):
    monkeypatch.setitem(settings.TASKHUB["reporting"], "max_rows", 20)
    t0 = timezone.now()
    task = make_task("x" * 200)
    for i in range(300):
        finish(task, A.FAILED, at=t0 + i * S, error="E" * 5000 + "\n" + "traceback line\n" * 200)

    [report] = report_run(now=t0 + 400 * S)

    body = confluence_only.pages[REPORT_PAGE_ID].body
    assert report.count == 300
    assert len(_table_rows(_tree(body))) == 20
    assert len(body) < 20 * 1500 + 5000  # rows of at most ~1.5 kB plus the summary
    assert "280 older attempts" in body


def test_missing_page_is_created_by_the_report_and_reused(confluence_only, make_task, monkeypatch):
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "page_id", "")
    monkeypatch.setitem(settings.TASKHUB["confluence"], "task_result_page_id", "")
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "title", "Fresh results")
    t0 = timezone.now()
    finish(make_task("first"), at=t0)
    report_run(now=t0 + 1 * S)
    finish(make_task("second"), at=t0 + 2 * S)
    report_run(now=t0 + 3 * S)

    created = [p for p in confluence_only.pages.values() if p.title == "Fresh results"]
    assert len(created) == 1 and created[0].version == 2
    assert [row[0] for row in _table_rows(_tree(created[0].body))] == ["second", "first"]


def test_confluence_down_then_back_updates_the_page_with_everything(confluence_only, make_task):
    t0 = timezone.now()
    confluence_only.down = True
    finish(make_task("during outage"), at=t0)
    [failed] = report_run(channel="confluence", now=t0 + 1 * S)
    confluence_only.down = False
    finish(make_task("after outage"), at=t0 + 2 * S)
    [sent] = report_run(channel="confluence", now=t0 + 3 * S)

    assert (failed.outcome, sent.outcome, sent.count) == ("FAILED", "SENT", 2)
    names = [row[0] for row in _table_rows(_tree(confluence_only.pages[REPORT_PAGE_ID].body))]
    assert names == ["after outage", "during outage"]


def test_report_on_confluence_cloud_goes_through_the_v2_pages_api(monkeypatch, fake_confluence_cloud, make_task):  # noqa: F811
    monkeypatch.setitem(settings.TASKHUB["reporting"], "report_types", ["confluence"])
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "page_id", "")
    monkeypatch.setitem(settings.TASKHUB["confluence"], "task_result_page_id", "")
    monkeypatch.setitem(settings.TASKHUB["confluence"], "space_key", "REPORTS")
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "title", "Cloud results")
    t0 = timezone.now()
    finish(make_task("first"), at=t0)
    report_run(now=t0 + 1 * S)
    finish(make_task("second"), at=t0 + 2 * S)
    report_run(now=t0 + 3 * S)

    [page] = [p for p in fake_confluence_cloud.pages.values() if p.title == "Cloud results"]
    assert (page.space, page.parent_id, page.version) == ("REPORTS", "123456", 2)
    assert [row[0] for row in _table_rows(_tree(page.body))] == ["second", "first"]
    writes = [(m, p) for m, p in fake_confluence_cloud.requests if m in ("POST", "PUT")]
    assert writes == [("POST", "/wiki/api/v2/pages"), ("PUT", f"/wiki/api/v2/pages/{page.id}")]
