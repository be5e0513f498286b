"""Migrations are up to date: a model change without its migration fails the suite."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.test_startup import ROOT, clean_env


@pytest.mark.django_db
def test_every_model_change_has_a_migration() -> None:
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit:
        pytest.fail(f"models have changes without a migration; run `manage.py makemigrations`:\n{out.getvalue()}")


def test_the_check_catches_a_model_change_without_a_migration(tmp_path: Path) -> None:
    """Add a field to Task in a separate process: the same command must then fail and name the change."""
    code = (
        "import django; django.setup()\n"
        "from django.db import models\n"
        "from scheduling.models import Task\n"
        "models.CharField('probe', max_length=5, default='').contribute_to_class(Task, 'probe')\n"
        "from django.core.management import call_command\n"
        "call_command('makemigrations', '--check', '--dry-run')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Add field probe to task" in done.stdout


def test_migrations_apply_to_an_empty_database(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"],
        env=clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "Applying scheduling.0001_initial... OK" in done.stdout
    assert (tmp_path / "db.sqlite3").exists()
