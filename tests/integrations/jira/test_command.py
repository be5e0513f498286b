"""``manage.py jira_export``: the export service from the command line, with progress on stderr."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from openpyxl import load_workbook

from tests.integrations.jira.conftest import ENV1, ENV2


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("jira_export", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_project_export_writes_the_workbook_with_a_progress_bar(fake_jira, tmp_path):
    path = tmp_path / "proj.xlsx"
    out, err = run("--env", ENV1, "--project", "proj", "--out", str(path), "--page-size", "3")
    assert f"{ENV1}: 8 issues" in out and f"8 issues written to {path}" in out
    lines = err.splitlines()
    assert lines[0].startswith("[") and "%" in lines[0]
    assert any("3 of 8 issues" in line for line in lines)  # page by page
    assert lines[-1].startswith("[" + "#" * 30 + "] 100.0% done")
    assert load_workbook(path)[ENV1].max_row == 9


def test_root_export_to_the_reports_folder_by_default(fake_jira, fake_jira2):
    out, _ = run("--env", ENV1, "--env", ENV2, "--root", "PROJ-123")
    written = list(settings.REPORTS_DIR.glob("jira-root-ticket-proj-123-*.xlsx"))
    assert written and str(written[-1]) in out
    assert "note: env1.jira.com: linked issues not found or not visible to the Jira user: PROJ-129" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "nope", "--project", "PROJ"], "--env: unknown Jira environment 'nope'; configured:"),
        (["--env", ENV1, "--root", "PROJ"], "--root: expected a key such as PROJ-123, got 'PROJ'"),
        (["--env", ENV1, "--project", "PROJ", "--out", "x.csv"], "--out: expected a file name ending in .xlsx"),
        (["--env", ENV1, "--project", "NOPE"], "The value 'NOPE' does not exist for the field 'project'."),
        (["--env", ENV1, "--project", "PROJ", "--page-size", "0"], "--page-size: expected a positive number"),
    ],
)
def test_bad_arguments_and_jira_errors_are_one_line_command_errors(fake_jira, tmp_path, args, message):
    with pytest.raises(CommandError, match=None) as caught:
        run(*args)
    assert message in str(caught.value)


def test_project_and_root_are_exclusive(fake_jira):
    with pytest.raises(CommandError, match="not allowed with argument"):
        run("--env", ENV1, "--project", "PROJ", "--root", "PROJ-1")
