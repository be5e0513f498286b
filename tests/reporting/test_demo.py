"""`make demo --check`: the whole loop Jira -> Excel -> Confluence -> Mattermost runs within two minutes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]  # the demo keeps its own SQLite under .demo/


def test_demo_runs_the_whole_loop(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKHUB_", "DJANGO_"))}
    env["TASKHUB_DEMO_DIR"] = str(tmp_path / "demo")
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--check", "--timeout", "120", "--port", "8799"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "the whole loop ran in" in out
    assert "workbook:" in out and ".xlsx" in out
    assert "Confluence page updated" in out and "Mattermost has" in out
    assert list((tmp_path / "demo" / "storage" / "artifacts").rglob("*.xlsx"))
