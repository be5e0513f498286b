"""Shared fixtures: task factory, and real Celery worker / beat processes for end-to-end tests.

A test that needs "now" takes it from the controlled clock (time_machine), never from the day it runs:
the suite passes on any date, time of day and time zone (tests/README.md says how, and how it is checked).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from scheduling import services
from scheduling.models import Task, TaskResult

ROOT = Path(__file__).resolve().parent.parent


#: Fixtures that start Celery worker or beat processes: such tests run one at a time in a parallel run.
PROCESS_FIXTURES = {"celery_env", "start_worker", "start_beat"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests that start processes; skip ``embedded_only`` tests on a server backend.

    In a parallel run (``make test``: pytest-xdist with ``--dist loadgroup``) the end-to-end, supervision
    and demo tests, and any test starting a worker or beat, share one group, which runs on one xdist
    worker, one test at a time, while the other workers take the in-process tests: two machines' worth of
    Celery processes never compete for the CPU that their timing tests measure.
    ``embedded_only`` tests are skipped on a server backend: .ci/run already ran them in its embedded pass.
    """
    skip = pytest.mark.skip(reason="embedded_only: runs in the embedded-default pass (no server backend involved)")
    for item in items:
        starts_processes = PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if starts_processes or item.get_closest_marker("e2e") or item.get_closest_marker("embedded_only"):
            item.add_marker(pytest.mark.xdist_group("processes"))
        if item.get_closest_marker("embedded_only") and connection.vendor != "sqlite":
            item.add_marker(skip)


@pytest.fixture
def make_task(db: None) -> Callable[..., Task]:
    """Create a task through the service layer with sensible defaults."""

    def make(name: str = "task", **fields: Any) -> Task:
        data: dict[str, Any] = {"name": name, "tags": ["TEST_RECORD"], "parameters": {"label": name}}
        data.update(fields)
        return services.task_create(data=data, owner=fields.pop("owner", None))

    return make


@pytest.fixture
def operator(db: None) -> Any:
    """A superuser, as the person working in the admin."""
    return get_user_model().objects.create_superuser("operator", "op@example.com", "operator-pw-1")


@pytest.fixture
def client_op(operator: Any) -> Client:
    """A browser session logged in as the operator."""
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def journal() -> Callable[[], list[str]]:
    """Read the lines test handlers wrote (label, attempt, pid)."""
    path = Path(settings.STORAGE_DIR) / "journal.log"
    path.unlink(missing_ok=True)

    def read() -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    return read


def _database_url() -> str:
    """The URL of the database this test run uses (the test database, not the configured one)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgresql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _clear_broker() -> None:
    url = settings.TASKHUB["broker"]["url"]
    if url.startswith("filesystem://"):
        queue = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        for item in queue.glob("*"):
            item.unlink(missing_ok=True)
    elif url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushdb()


class Process:
    """A Celery worker or beat started as a real subprocess, with its output in a file."""

    def __init__(self, kind: str, args: list[str], env: dict[str, str], log: Path, prefix: list[str] = ()) -> None:
        """``prefix``: a command to start it behind, e.g. ``unshare`` for a host of its own."""
        self.kind, self.log = kind, log
        self.handle = log.open("wb")
        self.popen = subprocess.Popen(
            [*prefix, sys.executable, "-m", "celery", "-A", "taskhub", kind, *args],
            cwd=ROOT,
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early:\n{self.output()[-4000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.kind} did not print {text!r} within {timeout}s:\n{self.output()[-4000:]}")

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.popen.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        if self.popen.poll() is None:
            # Kill the whole process group: a test has nothing left to drain, and a
            # warm shutdown of a prefork worker takes seconds.
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        self.handle.close()


@pytest.fixture
def celery_env(transactional_db: None) -> dict[str, str]:
    """Environment for worker and beat processes: the test database, the same broker and storage."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["TASKHUB_DATABASE_URL"] = _database_url()
    env["PYTHONUNBUFFERED"] = "1"
    env["TASKHUB_TEST_CLOCK"] = "database"  # as in production: see scheduling/engine/clock.py
    _clear_broker()
    return env


@pytest.fixture
def start_worker(celery_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start real Celery worker processes (prefork) on the configured broker."""
    started: list[Process] = []

    def start(
        name: str = "w1",
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        host: str = "%h",
        prefix: list[str] = (),
    ) -> Process:
        """``host`` names its Celery node's host; ``prefix`` starts it behind a command (namespaces)."""
        process = Process(
            "worker",
            [
                "--loglevel",
                "INFO",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}@{host}",
                "--without-mingle",
                "--without-gossip",
                "--prefetch-multiplier",
                "1",
            ],
            {**celery_env, **(env or {})},
            tmp_path / f"{name}.log",
            prefix,
        )
        started.append(process)
        process.wait_for("ready.")
        return process

    yield start
    for process in started:
        process.stop()
    _copy_logs(started, tmp_path)


@pytest.fixture
def start_beat(celery_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start real beat processes running TaskHub's scheduler."""
    started: list[Process] = []

    def start(name: str = "beat", env: dict[str, str] | None = None) -> Process:
        process = Process(
            "beat",
            ["--loglevel", "INFO", "--schedule", str(tmp_path / f"{name}-schedule"), "--pidfile", ""],
            {**celery_env, **(env or {})},
            tmp_path / f"{name}.log",
        )
        started.append(process)
        process.wait_for("beat: Starting")
        return process

    yield start
    for process in started:
        process.stop()
    _copy_logs(started, tmp_path)


def _copy_logs(processes: list[Process], tmp_path: Path) -> None:
    target = os.environ.get("TASKHUB_TEST_ARTIFACTS")
    if target:
        for process in processes:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copy(process.log, Path(target) / f"{tmp_path.name}-{process.log.name}")


def wait_until(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")


def statuses(*tasks: Task) -> list[str]:
    return [Task.objects.get(pk=t.pk).status for t in tasks]


def attempts(task: Task) -> list[tuple[int, str]]:
    return list(TaskResult.objects.filter(task=task).order_by("attempt", "created_at").values_list("attempt", "status"))
