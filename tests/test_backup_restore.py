"""Backup and restore as the README documents it: dumpdata from one database, migrate + loaddata into a
fresh one, and everything a user relies on comes back (tasks, tags, dependencies, retry policies,
schedules with their django-celery-beat crontab, results, the audit trail, users and API tokens).

The commands run as real ``manage.py`` subprocesses against real databases (SQLite files, or
PostgreSQL databases when the suite runs on PostgreSQL).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from scheduling import services
from scheduling.models import AttemptStatus, Task, TaskResult
from tests.conftest import ROOT, _database_url

pytestmark = pytest.mark.django_db(transaction=True)

# The README's commands (Backup and restore).
DUMP = [
    "dumpdata",
    "--natural-foreign",
    "--natural-primary",
    "--exclude=contenttypes",
    "--exclude=auth.permission",
    "--exclude=sessions",
    "--exclude=admin.logentry",
    "--indent=1",
]


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def fresh_database(tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database on the same engine as the test database."""
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored.sqlite3'}"
        return
    name = f"{connection.settings_dict['NAME']}_restore"[:63]
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    base = _database_url().rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env_for(url: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "TASKHUB_DATABASE_URL": url}


def populate() -> dict[str, Any]:
    """A small but complete installation: every kind of row the backup must keep."""
    alice = get_user_model().objects.create_user("alice", password="alice-pw-1")
    token = Token.objects.create(user=alice)
    extract = services.task_create(
        data={
            "name": "extract ✓ עברית",
            "tags": ["TEST_RECORD", "nightly"],
            "parameters": {"label": "extract", "nested": {"list": [1, 2.5, None, "x"]}},
            "task_type": "SCHEDULED",
            "cron_expr": "15 2 * * 1-5",
            "timezone": "Europe/Paris",
            "retry_policy": {"max_retries": 3, "retry_delay": 30, "backoff_factor": 2},
        },
        owner=alice,
    )
    load = services.task_create(
        data={"name": "load", "tags": ["TEST_RECORD"], "parameters": {}, "dependencies": [extract.pk]}, owner=alice
    )
    services.task_update(task=load, data={"priority": "HIGH"}, actor=alice)
    now = timezone.now()
    TaskResult.objects.create(
        task=extract,
        status=AttemptStatus.DONE,
        created_at=now,
        started_at=now,
        finished_at=now,
        duration=1.5,
        result={"issues": 42},
        artifacts=["artifacts/x/1/report.xlsx"],
    )
    gone = services.task_create(data={"name": "gone", "tags": ["TEST_RECORD"], "parameters": {}}, owner=alice)
    gone_id = gone.pk  # delete() clears pk
    services.task_delete(task=gone, actor=alice)
    return {"extract": extract.pk, "load": load.pk, "gone": gone_id, "token": token.key}


def by_model(dump: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    models: dict[str, list[dict[str, Any]]] = {}
    for row in dump:
        models.setdefault(row["model"], []).append(row)
    return models


# Django's JSON serializer writes a datetime to the millisecond, and only when it
# has microseconds: 13:14:20.000123 is written "13:14:20.000Z", but once restored
# it is 13:14:20 exactly and written "13:14:20Z". Both name the same instant.
_WHOLE_SECOND = re.compile(r'("\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(Z|[+-]\d{2}:\d{2})"')


def canonical(dump: list[dict[str, Any]]) -> list[str]:
    return sorted(_WHOLE_SECOND.sub(r'\1.000\2"', json.dumps(row, sort_keys=True)) for row in dump)


def test_dumpdata_loaddata_round_trip_into_a_fresh_database(tmp_path: Path, fresh_database: str) -> None:
    ids = populate()
    source = env_for(_database_url())
    backup = tmp_path / "backup.json"
    manage(source, *DUMP, f"--output={backup}")
    original = json.loads(backup.read_text(encoding="utf-8"))

    target = env_for(fresh_database)
    manage(target, "migrate", "--noinput", "-v0")
    out = manage(target, "loaddata", str(backup))
    assert f"Installed {len(original)} object(s)" in out
    restored = json.loads(manage(target, *DUMP))

    # Everything comes back, field for field.
    assert canonical(restored) == canonical(original)

    # ... and that everything is what a user relies on:
    models = by_model(restored)
    tasks = {row["pk"]: row["fields"] for row in models["scheduling.task"]}
    extract, load = tasks[str(ids["extract"])], tasks[str(ids["load"])]
    assert extract["name"] == "extract ✓ עברית" and extract["owner"] == ["alice"]
    assert load["dependencies"] == [str(ids["extract"])]
    assert extract["parameters"]["nested"] == {"list": [1, 2.5, None, "x"]}
    crontabs = {row["pk"]: row["fields"] for row in models["django_celery_beat.crontabschedule"]}
    assert crontabs[extract["crontab"]]["hour"] == "2" and crontabs[extract["crontab"]]["timezone"] == "Europe/Paris"
    assert extract["next_fire_at"] is not None
    policies = {row["pk"]: row["fields"] for row in models["scheduling.retrypolicy"]}
    assert policies[extract["retry_policy"]]["max_retries"] == 3
    tags = {row["pk"]: row["fields"]["name"] for row in models["scheduling.tag"]}
    assert sorted(tags[pk] for pk in extract["tags"]) == ["TEST_RECORD", "nightly"]
    results = [row["fields"] for row in models["scheduling.taskresult"] if row["fields"]["task"] == str(ids["extract"])]
    assert [(r["status"], r["result"]) for r in results] == [("DONE", {"issues": 42})]
    audit = [(row["fields"]["task"], row["fields"]["action"]) for row in models["scheduling.taskaudit"]]
    assert (str(ids["gone"]), "deleted") in audit and (str(ids["load"]), "changed") in audit
    assert [row["pk"] for row in models["authtoken.token"]] == [ids["token"]]


def test_restored_database_still_works(tmp_path: Path, fresh_database: str) -> None:
    """A restored installation answers the CLI: tasks listed, schedules intact, a new action audited."""
    ids = populate()
    backup = tmp_path / "backup.json"
    manage(env_for(_database_url()), *DUMP, f"--output={backup}")
    target = env_for(fresh_database)
    manage(target, "migrate", "--noinput", "-v0")
    manage(target, "loaddata", str(backup))
    listing = manage(target, "list_tasks")
    assert "extract ✓ עברית" in listing and "load" in listing
    manage(target, "task_action", "pause", str(ids["extract"]), "--user", "alice")
    restored = by_model(json.loads(manage(target, *DUMP)))
    paused = [row["fields"] for row in restored["scheduling.taskaudit"] if row["fields"]["action"] == "paused"]
    assert [(p["task"], p["actor"]) for p in paused] == [(str(ids["extract"]), ["alice"])]
    # The source database is untouched by what happened in the restored one.
    assert Task.objects.get(pk=ids["extract"]).enabled
