"""The workbook read back with openpyxl, cell by cell: header, dates, links, numbers, blanks, summary."""

from __future__ import annotations

from datetime import datetime

import pytest
from openpyxl import load_workbook

from integrations.jira.excel import MAX_CELL_TEXT, Column, ExportWorkbook, sheet_title
from integrations.jira.services import ExportRequest, export_issues
from tests.integrations.jira.conftest import ENV1, ENV2


@pytest.fixture
def book(fake_jira, fake_jira2, tmp_path):
    out = tmp_path / "seed.xlsx"
    request = ExportRequest(envs=[ENV1, ENV2], key_type="root_ticket", key_value="PROJ-123", user="johndoe")
    export_issues(request, out)
    return load_workbook(out)


def test_issue_sheet_header_is_bold_frozen_and_filtered(book):
    ws = book[ENV1]
    headers = [cell.value for cell in ws[1]]
    assert headers == [
        "Key", "Summary", "Type", "Status", "Priority", "Assignee", "Reporter", "Created", "Updated",
        "Resolution", "Parent", "Epic", "Labels", "Components", "Fix Versions", "Story Points", "Links",
        "Description", "Assignee ID", "Reporter ID", "Depth", "Found via",
    ]  # fmt: skip
    assert all(cell.font.bold for cell in ws[1])
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:V9"  # header + 8 issues
    assert ws.column_dimensions["B"].width == 50


def test_root_row_cell_by_cell(book, fake_jira):
    ws = book[ENV1]
    row = {ws.cell(1, col).value: ws.cell(2, col) for col in range(1, ws.max_column + 1)}
    assert row["Key"].value == "PROJ-123"
    assert row["Key"].hyperlink.target == f"{fake_jira.url}/browse/PROJ-123"
    assert row["Summary"].value == "Checkout revamp"
    assert (row["Type"].value, row["Status"].value, row["Priority"].value) == ("Epic", "In Progress", "High")
    assert (row["Assignee"].value, row["Reporter"].value) == ("Alice Archer", "Bob Baker")
    # Real dates (tests show UTC); Jira sent them as Berlin time with an offset.
    assert row["Created"].value == datetime(2024, 3, 1, 8, 30) and row["Created"].is_date
    assert row["Created"].number_format == "yyyy-mm-dd hh:mm"
    assert row["Updated"].value == datetime(2024, 3, 5, 17, 45)
    assert row["Resolution"].value is None and row["Parent"].value is None and row["Epic"].value is None
    assert row["Labels"].value == "checkout, q2"
    assert row["Components"].value == "Web, API"
    assert row["Fix Versions"].value == "2.0"
    assert row["Story Points"].value is None
    assert row["Links"].value == "is cloned by OTHER-1"
    assert (row["Depth"].value, row["Found via"].value) == (0, "root")


def test_story_points_are_numbers_and_epic_and_parent_are_filled(book):
    ws = book[ENV1]
    by_key = {r[0].value: r for r in ws.iter_rows(min_row=2)}
    story = by_key["PROJ-124"]
    assert story[15].value == 5 and story[15].data_type == "n"
    assert story[11].value == "PROJ-123"  # Epic (Epic Link)
    assert by_key["PROJ-125"][10].value == "PROJ-124"  # Parent of a sub-task
    assert by_key["PROJ-126"][9].value == "Done"  # Resolution


def test_missing_optional_fields_leave_empty_cells(book):
    ws = book[ENV1]
    other = next(r for r in ws.iter_rows(min_row=2) if r[0].value == "OTHER-1")
    # No priority, no reporter, no components, fix versions or story points in Jira's answer at all.
    assert [other[i].value for i in (4, 5, 6, 13, 14, 15)] == [None] * 6
    assert other[7].value == datetime(2024, 3, 2, 9, 0)


def test_summary_sheet_counts_by_status_type_and_assignee(book):
    assert book.sheetnames == ["Summary", ENV1, ENV2]
    ws = book["Summary"]
    values = [tuple(cell.value for cell in row) for row in ws.iter_rows()]
    info = {row[0]: row[1] for row in values if row[0] and row[1] is not None and row[2] is None}
    assert info["Key type"] == "root_ticket" and info["Key value"] == "PROJ-123"
    assert info["Requested by"] == "johndoe" and info["Environments"] == f"{ENV1}, {ENV2}"
    assert isinstance(info["Generated"], datetime)

    def table(title):
        start = values.index((title, ENV1, ENV2, "Total"))
        result = {}
        for row in values[start + 1 :]:
            if row[0] is None:
                break
            result[row[0]] = row[1:]
        return result

    assert table("Issues") == {"All issues": (8, 2, 10)}
    assert table("Status") == {"To Do": (6, 2, 8), "Done": (1, 0, 1), "In Progress": (1, 0, 1)}
    assert table("Type") == {
        "Sub-task": (2, 1, 3), "Task": (3, 0, 3), "Story": (1, 1, 2), "Bug": (1, 0, 1), "Epic": (1, 0, 1),
    }  # fmt: skip
    assert table("Assignee") == {
        "(unassigned)": (4, 1, 5), "Bob Baker": (2, 0, 2), "Carol Chen": (1, 1, 2), "Alice Archer": (1, 0, 1),
    }  # fmt: skip
    notes = [row[1] for row in values if row[0] == "Note"]
    assert notes == [f"{ENV1}: linked issues not found or not visible to the Jira user: PROJ-129"]
    header = next(row for row in ws.iter_rows() if row[0].value == "Status")
    assert all(cell.font.bold for cell in header)


def test_text_from_jira_is_never_a_formula_and_bad_characters_are_dropped(tmp_path):
    out = tmp_path / "text.xlsx"
    book = ExportWorkbook(out)
    sheet = book.add_sheet("env", [Column("Key", kind="link"), Column("Summary"), Column("Long")])
    sheet.append(["X-1", '=HYPERLINK("http://evil","click")', "a" * 40_000], link="http://jira/browse/X-1")
    sheet.append(["X-2", "bell\x07 and\x00 null", "ok"], link="http://jira/browse/X-2")
    book.save([("Key type", "project")])
    ws = load_workbook(out)["env"]
    assert ws["B2"].value == '=HYPERLINK("http://evil","click")' and ws["B2"].data_type == "s"
    assert len(ws["C2"].value) == MAX_CELL_TEXT
    assert ws["B3"].value == "bell and null"


def test_keys_past_excels_hyperlink_limit_become_hyperlink_formulas(tmp_path, monkeypatch):
    monkeypatch.setattr("integrations.jira.excel.MAX_SHEET_LINKS", 2)
    out = tmp_path / "links.xlsx"
    book = ExportWorkbook(out)
    sheet = book.add_sheet("env", [Column("Key", kind="link")])
    for n in range(1, 4):
        sheet.append([f"X-{n}"], link=f"http://jira/browse/X-{n}")
    book.save([])
    ws = load_workbook(out)["env"]
    assert ws["A3"].hyperlink.target == "http://jira/browse/X-2"
    assert ws["A4"].value == '=HYPERLINK("http://jira/browse/X-3","X-3")'


def test_sheet_titles_are_valid_and_unique():
    taken = {"Summary"}
    assert sheet_title("jira:prod/eu", taken) == "jira_prod_eu"
    long = "a-very-long-environment-name.example.com"
    first = sheet_title(long, taken)
    taken.add(first)
    second = sheet_title(long, taken)
    assert len(first) == 31 and len(second) == 31 and first != second
    assert sheet_title("summary", taken) == "summary (2)"


def test_a_failed_export_leaves_no_file_and_no_temporary_files(fake_jira, tmp_path):
    import openpyxl.worksheet._writer as writer

    before = set(writer.ALL_TEMP_FILES)
    fake_jira.fail_next(500, path="/search")
    out = tmp_path / "failed.xlsx"
    with pytest.raises(Exception, match="HTTP 500"):
        export_issues(ExportRequest(envs=[ENV1], key_type="project", key_value="PROJ"), out)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert set(writer.ALL_TEMP_FILES) == before
