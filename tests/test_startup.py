"""Start-up: a bad config.yaml stops manage.py, the worker and beat with one line; logs never carry secrets."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parent.parent
SECRET = "pl4nted-S3CRET-startup-91b2e"
CONCURRENCY_FIVE = "TaskHub configuration error: scheduler.concurrency: expected a positive integer, got 'five'\n"


def clean_env(tmp_path: Path, config_text: str | None = None, **overrides: str) -> dict[str, str]:
    """Return an environment for a TaskHub subprocess that writes only under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKHUB_") and k != "DJANGO_SETTINGS_MODULE"}
    config = tmp_path / "config.yaml"
    config.write_text(config_text if config_text is not None else "")
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "taskhub.settings",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "TASKHUB_CONFIG": str(config),
            "TASKHUB_STORAGE_PATH": str(tmp_path / "storage"),
            "TASKHUB_STORAGE_REPORTS_PATH": str(tmp_path / "reports"),
            "TASKHUB_LOG_FILENAME": str(tmp_path / "logs" / "app.log"),
            "TASKHUB_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
            **overrides,
        }
    )
    return env


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run a TaskHub command (``manage.py ...`` or ``celery ...``) with this interpreter."""
    if args[0] == "manage.py":
        command = [sys.executable, str(ROOT / "manage.py"), *args[1:]]
    elif args[0] == "-c":
        command = [sys.executable, *args]
    else:
        command = [sys.executable, "-m", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


ENTRY_POINTS = [
    pytest.param(["manage.py", "check"], id="manage.py check"),
    pytest.param(["manage.py", "migrate"], id="manage.py migrate"),
    pytest.param(["celery", "-A", "taskhub", "worker", "--loglevel", "INFO"], id="celery worker"),
    pytest.param(["celery", "-A", "taskhub", "beat", "--loglevel", "INFO"], id="celery beat"),
    # gunicorn imports this module in each worker process.
    pytest.param(["-c", "import taskhub.wsgi"], id="wsgi (gunicorn)"),
]


@pytest.mark.parametrize("args", ENTRY_POINTS)
def test_bad_value_stops_entry_point_with_one_line(args: list[str], tmp_path: Path) -> None:
    env = clean_env(tmp_path, "scheduler: {concurrency: five}\n")
    done = run(args, env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == CONCURRENCY_FIVE
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("args", ENTRY_POINTS[:1] + ENTRY_POINTS[2:3])
def test_bad_env_override_stops_start_up_naming_the_variable(args: list[str], tmp_path: Path) -> None:
    env = clean_env(tmp_path, "", TASKHUB_SCHEDULER_CONCURRENCY="five")
    done = run(args, env, tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "TaskHub configuration error: scheduler.concurrency (from TASKHUB_SCHEDULER_CONCURRENCY): "
        "expected a positive integer, got 'five'\n"
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("scheduler:\n  concurency: 3\n", "scheduler.concurency: unknown key (known keys of scheduler: "),
        ("scheduler:\n  concurrency: 5\n    poll_interval: 3\n", "line 3, column 18 is not valid YAML"),
        ("log:\n  level: LOUD\n", "log.level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"),
    ],
)
def test_other_config_errors_stop_manage_py_with_one_line(text: str, line: str, tmp_path: Path) -> None:
    done = run(["manage.py", "check"], clean_env(tmp_path, text), tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("TaskHub configuration error: ")
    assert line in done.stderr
    assert "Traceback" not in done.stderr


def test_secret_in_a_bad_value_is_not_printed_at_start_up(tmp_path: Path) -> None:
    env = clean_env(tmp_path, "", TASKHUB_DATABASE_URL=f"mysql://taskhub:{SECRET}@db/taskhub")
    done = run(["manage.py", "check"], env, tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("TaskHub configuration error: database.url (from TASKHUB_DATABASE_URL): expected")
    assert SECRET not in done.stdout + done.stderr


def test_good_config_passes_check_and_writes_nothing_outside_its_folders(tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    env = clean_env(tmp_path, "scheduler: {concurrency: 3}\n")
    done = run(["manage.py", "check"], env, work)
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout
    assert list(work.iterdir()) == []


def test_check_config_reports_the_file_in_use(tmp_path: Path) -> None:
    env = clean_env(tmp_path, "scheduler: {concurrency: 3}\n", TASKHUB_JIRA_PASSWORD=SECRET)
    done = run(["manage.py", "check_config"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"configuration OK: {tmp_path / 'config.yaml'}" in done.stdout
    assert "jira environments: jira.example.com, default" in done.stdout
    assert SECRET not in done.stdout + done.stderr


def test_logs_on_console_and_in_the_file_hide_secrets(tmp_path: Path) -> None:
    env = clean_env(tmp_path, "log:\n  format: 'LINE %(levelname)s %(name)s %(message)s'\n")
    env["TASKHUB_JIRA_PASSWORD"] = SECRET
    code = (
        "import logging; log = logging.getLogger('taskhub.probe');"
        f"log.warning('jira password is %s', {SECRET!r});"
        "log.debug('debug lines are below the INFO level')"
    )
    done = run(["manage.py", "shell", "-c", code], env, tmp_path)
    assert done.returncode == 0, done.stderr
    log_file = (tmp_path / "logs" / "app.log").read_text()
    for output in (done.stderr, log_file):
        assert "LINE WARNING taskhub.probe jira password is <hidden>" in output
        assert SECRET not in output
        assert "debug lines" not in output


def test_log_file_rotates_at_max_bytes(tmp_path: Path) -> None:
    env = clean_env(tmp_path, "log:\n  max_bytes: 2000\n  backup_count: 2\n  level: INFO\n")
    code = "import logging\nfor i in range(200): logging.getLogger('taskhub.probe').info('line %03d ' + 'x' * 40, i)"
    done = run(["manage.py", "shell", "-c", code], env, tmp_path)
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in (tmp_path / "logs").iterdir() if p.suffix != ".lock")
    assert files == ["app.log", "app.log.1", "app.log.2"]
    assert all((tmp_path / "logs" / name).stat().st_size <= 2000 for name in files)


# --- the first admin account ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ensure_admin_generates_a_password_shown_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    first, second = io.StringIO(), io.StringIO()
    call_command("ensure_admin", stdout=first)
    call_command("ensure_admin", stdout=second)
    user = get_user_model().objects.get(is_superuser=True)
    assert user.username == "admin"
    password = first.getvalue().split("with password: ")[1].split()[0]
    assert len(password) >= 12
    assert user.check_password(password)
    assert second.getvalue() == ""
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_ensure_admin_takes_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "correct-horse-battery")
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    user = get_user_model().objects.get(username="ops")
    assert user.is_superuser and user.is_staff
    assert user.check_password("correct-horse-battery")
    assert "correct-horse-battery" not in out.getvalue()


@pytest.mark.django_db
def test_two_installs_do_not_share_a_generated_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    passwords = []
    for _ in range(2):
        out = io.StringIO()
        get_user_model().objects.all().delete()
        call_command("ensure_admin", stdout=out)
        passwords.append(out.getvalue().split("with password: ")[1].split()[0])
    assert passwords[0] != passwords[1]


def test_worker_keeps_broker_files_under_storage_path(tmp_path: Path) -> None:
    """The filesystem broker's folders (queue, control) live under storage.path, not the working directory."""
    work = tmp_path / "cwd"
    work.mkdir()
    env = clean_env(tmp_path, "")
    command = [sys.executable, "-m", "celery", "-A", "taskhub", "worker", "--pool", "solo", "--without-mingle"]
    command += ["--without-gossip", "--loglevel", "INFO"]
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(command, env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "ready." not in log.read_text() and worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "ready." in log.read_text(), log.read_text()[-3000:]
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
    assert list(work.iterdir()) == []
    assert (tmp_path / "storage" / "broker" / "control").is_dir()


@pytest.mark.parametrize(
    ("key", "variable"),
    [
        ("storage.path", "TASKHUB_STORAGE_PATH"),
        ("storage.reports_path", "TASKHUB_STORAGE_REPORTS_PATH"),
        ("log.filename", "TASKHUB_LOG_FILENAME"),
    ],
)
@pytest.mark.parametrize("args", ENTRY_POINTS)
def test_folder_that_cannot_be_created_stops_start_up_with_one_line(
    key: str, variable: str, args: list[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = clean_env(tmp_path, "", **{variable: str(blocker / "sub" / "x.log")})
    done = run(args, env, tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"TaskHub configuration error: {key}: cannot create the folder {blocker}/sub")
    assert done.stderr.count("\n") == 1


def test_processes_starting_together_share_one_generated_secret_key(tmp_path: Path) -> None:
    """make run starts web, worker and beat at once; on a fresh install they must agree on one key."""
    env = clean_env(tmp_path, "")
    code = "from django.conf import settings; print('KEY', settings.SECRET_KEY)"
    command = [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code]
    processes = [
        subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 3, [err for _, err in outputs]
    keys = {line for out, _ in outputs for line in out.splitlines() if line.startswith("KEY ")}
    assert len(keys) == 1
    assert keys.pop() == "KEY " + (tmp_path / "storage" / ".secret_key").read_text().strip()
    assert sorted(p.name for p in (tmp_path / "storage").glob(".secret_key*")) == [".secret_key"]


def test_secret_key_written_by_another_process_meanwhile_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lose the race on purpose: the key file appears after this process checked for it."""
    from taskhub import config
    from taskhub import settings as taskhub_settings

    monkeypatch.setattr(taskhub_settings, "TASKHUB", config.parse({"web": {"secret_key": ""}}, env={}))
    monkeypatch.setattr(taskhub_settings, "STORAGE_DIR", tmp_path)
    (tmp_path / ".secret_key").write_text("key-of-the-process-that-won\n")
    monkeypatch.setattr(Path, "exists", lambda self: False)
    assert taskhub_settings._secret_key() == "key-of-the-process-that-won"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".secret_key"]


@pytest.mark.django_db
def test_ensure_admin_explains_a_name_taken_by_an_ordinary_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    get_user_model().objects.create_user("admin", password="x")
    with pytest.raises(CommandError, match="user 'admin' exists but is not a superuser"):
        call_command("ensure_admin", stdout=io.StringIO())
    assert not get_user_model().objects.filter(is_superuser=True).exists()


def test_processes_sharing_the_log_file_rotate_it_without_losing_lines(tmp_path: Path) -> None:
    """Web, worker and beat write one log file; rotation by one must not lose or misplace the others' lines."""
    env = clean_env(tmp_path, "log:\n  max_bytes: 20000\n  backup_count: 100\n  format: '%(message)s'\n")
    go = tmp_path / "go"
    code = (
        "import logging, os, time\n"
        "log = logging.getLogger('taskhub.probe')\n"
        f"open(os.path.join({str(tmp_path)!r}, f'ready-{{os.getpid()}}'), 'w').close()\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "for i in range(1000): log.warning('proc %s line %04d %s', os.getpid(), i, 'x' * 30)\n"
    )
    command = [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code]
    processes = [
        subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(3)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # release all three together, so their writes interleave
    assert [process.wait(timeout=120) for process in processes] == [0, 0, 0]
    files = list((tmp_path / "logs").glob("app.log*"))
    lines = [line for file in files for line in file.read_text().splitlines() if line.startswith("proc ")]
    assert len(lines) == 3000
    assert len(set(lines)) == 3000
    assert all(file.stat().st_size <= 20000 for file in files), sorted(file.stat().st_size for file in files)


def test_a_line_break_inside_a_bad_key_still_gives_one_line(tmp_path: Path) -> None:
    done = run(["manage.py", "check"], clean_env(tmp_path, '"sched\\nuler":\n  concurrency: 1\n'), tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("TaskHub configuration error: sched uler: unknown key")


def test_misspelt_override_variable_stops_start_up(tmp_path: Path) -> None:
    done = run(["manage.py", "check"], clean_env(tmp_path, "", TASKHUB_SCHEDULER_CONCURENCY="3"), tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "TaskHub configuration error: TASKHUB_SCHEDULER_CONCURENCY: unknown setting, it overrides no key of "
        "config.yaml; did you mean TASKHUB_SCHEDULER_CONCURRENCY?\n"
    )
