"""``make demo`` (``python -m demo``): the whole loop Jira -> Excel -> Confluence -> Mattermost on one machine.

Steps:
1. Start fake Jira (two environments), Confluence and Mattermost servers on 127.0.0.1.
2. Write a demo configuration pointing at them, under ``.demo/`` (its own database and storage).
3. Migrate, create the admin account ``admin`` / ``admin``, seed the seed's example tasks (and run
   the daily project export now), plus a Mattermost notification and a task that fails on purpose.
4. Start TaskHub's web server, worker and beat; report each step of the loop as it happens.

``--check`` stops once a workbook, a Confluence page update and a Mattermost message have been seen
(exit status 1 if that takes longer than ``--timeout`` seconds); without it, Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taskhub.supervise import STOP_SIGNALS, Service, Supervisor  # noqa: E402
from tests.fakes.confluence_server import FakeConfluence  # noqa: E402
from tests.fakes.jira_server import FakeJira  # noqa: E402
from tests.fakes.mattermost_server import FakeMattermost  # noqa: E402

DEMO = Path(os.environ.get("TASKHUB_DEMO_DIR") or ROOT / ".demo").resolve()
BIN = Path(sys.executable).parent
REPORT_PAGE_ID = "789012"
MAIN_PAGE_ID = "123456"


def say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port(preferred: int) -> int:
    """Return ``preferred`` when nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port")


def start_fakes() -> tuple[FakeJira, FakeJira, FakeConfluence, FakeMattermost]:
    """Start the fake servers with the data the seed's examples ask for."""
    jiras = []
    for seed in (7, 8):
        jira = FakeJira(username="taskhub", password="demo")
        jira.generate("PROJ", 180, seed=seed)
        for n, summary in enumerate(["Write the export", "Check the totals", "Publish the report"], start=1):
            jira.add_issue(f"PROJ-{900 + n}", summary, type="Sub-task", parent="PROJ-123", assignee="bob")
        jira.link("PROJ-123", "PROJ-42", "Blocks")
        jira.link("PROJ-42", "PROJ-123", "Relates")  # a link cycle: each issue still appears once
        jiras.append(jira.start())
    confluence = FakeConfluence(username="taskhub", password="demo").start()
    confluence.add_page(MAIN_PAGE_ID, "Operations", space="OPS")
    confluence.add_page(REPORT_PAGE_ID, "TaskHub task results", space="OPS", parent=MAIN_PAGE_ID)
    mattermost = FakeMattermost().start()
    return jiras[0], jiras[1], confluence, mattermost


def write_config(
    jira1: FakeJira, jira2: FakeJira, confluence: FakeConfluence, mattermost: FakeMattermost, port: int
) -> Path:
    """Write .demo/config.yaml: every external system is one of the fakes."""
    env = {"username": "taskhub", "password": "demo", "timeout": 10}
    config: dict[str, Any] = {
        "jira": {
            "url": "",
            "environments": {"env1.jira.com": {"url": jira1.url, **env}, "env2.jira.com": {"url": jira2.url, **env}},
        },
        "confluence": {
            "url": confluence.url,
            "username": "taskhub",
            "password": "demo",
            "main_page_id": MAIN_PAGE_ID,
            "timeout": 10,
        },
        "reporting": {
            "interval": 10,
            "report_types": ["confluence", "mattermost", "email"],
            "base_url": f"http://127.0.0.1:{port}",
            "confluence": {"page_id": REPORT_PAGE_ID},
        },
        "mattermost": {"webhook_url": mattermost.webhook_url, "channel": "taskhub-demo", "username": "TaskHub"},
        "email": {"to": ["ops@example.com"]},
        "scheduler": {"poll_interval": 5},
        "storage": {"path": str(DEMO / "storage"), "reports_path": str(DEMO / "jira_reports")},
        "log": {"filename": str(DEMO / "logs" / "app.log")},
        "database": {"url": f"sqlite:///{DEMO / 'taskhub.sqlite3'}"},
        "broker": {"url": "filesystem://"},
        "web": {"debug": False, "allowed_hosts": ["127.0.0.1", "localhost"]},
    }
    path = DEMO / "config.yaml"
    path.write_text("# Written by `make demo`: every URL is a fake server on 127.0.0.1.\n" + yaml.safe_dump(config))
    return path


def seed() -> None:
    """Migrate, create admin/admin, and create the demo tasks (the seed's examples first)."""
    from django.core.management import call_command

    from scheduling import services
    from scheduling.models import Task

    call_command("migrate", verbosity=0)
    call_command("ensure_admin")
    call_command("seed_examples")
    project = Task.objects.get(name="JIRA Extraction - Project")
    services.task_run_now(task=project)  # it is daily at 00:00; the demo runs it now too
    if not Task.objects.filter(name="Demo: hello from TaskHub").exists():
        services.task_create(
            data={
                "name": "Demo: hello from TaskHub",
                "task_type": "SCHEDULED",
                "cron_expr": "* * * * *",
                "tags": ["NOTIFY_MATTERMOST", "demo"],
                "parameters": {"text": "Hello from a scheduled NOTIFY_MATTERMOST task (every minute)."},
            }
        )
        services.task_create(
            data={
                "name": "Demo: export a ticket that does not exist",
                "tags": ["JIRA_TASK_EXP", "demo"],
                "parameters": {
                    "jira_envs": ["env1.jira.com"],
                    "key_type": "root_ticket",
                    "key_value": "PROJ-99999",
                    "user": "johndoe",
                },
            }
        )


def services(port: int) -> list[Service]:
    """Web, worker and beat, supervised as `make run` does (they die with the demo, a crashed one restarts)."""
    commands = {
        "web": [
            str(BIN / "gunicorn"),
            "taskhub.wsgi:application",
            "--config",
            "python:taskhub.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        "worker": [str(BIN / "celery"), "-A", "taskhub", "worker", "-l", "INFO", "-c", "2"],
        "beat": [str(BIN / "celery"), "-A", "taskhub", "beat", "-l", "INFO", "-s", str(DEMO / "beat")],
    }
    return [Service(name, argv, log=DEMO / "logs" / f"{name}.log") for name, argv in commands.items()]


def admin_up(port: int) -> bool:
    """Whether TaskHub's web server answers the admin login page."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def watch(
    confluence: FakeConfluence,
    mattermost: FakeMattermost,
    port: int,
    check: bool,
    timeout: float,
    started: float,
    supervisor: Supervisor,
) -> bool:
    """Print each step of the loop as it happens; in --check mode return once all were seen.

    Returns early (True) when a stop signal arrived (Ctrl-C, SIGTERM, SIGHUP).
    """
    from django.conf import settings
    from django.db import close_old_connections

    from scheduling.models import FINISHED, TaskResult

    seen_results: set[int] = set()
    page_version = confluence.pages[REPORT_PAGE_ID].version
    messages = 0
    goals = {"admin": False, "workbook": False, "confluence": False, "mattermost": False}
    while not supervisor.stopping:
        supervisor.check()
        close_old_connections()
        if not goals["admin"] and admin_up(port):
            goals["admin"] = True
            say(f"admin is up: http://127.0.0.1:{port}/admin/")
        finished = TaskResult.objects.filter(status__in=FINISHED).exclude(pk__in=seen_results).select_related("task")
        for result in finished:
            seen_results.add(result.pk)
            line = f"task {result.task.name!r} attempt {result.attempt}: {result.status}"
            if result.error_message:
                line += f" ({result.error_message.splitlines()[0][:120]})"
            say(line)
            for artifact in result.artifacts or []:
                say(f"  workbook: {Path(settings.STORAGE_DIR) / artifact}")
                goals["workbook"] |= artifact.endswith(".xlsx")
        version = confluence.pages[REPORT_PAGE_ID].version
        if version != page_version:
            page_version = version
            goals["confluence"] = True
            say(f"Confluence page updated to version {version}: {confluence.url}/pages/{REPORT_PAGE_ID}")
        if len(mattermost.messages) != messages:
            messages = len(mattermost.messages)
            goals["mattermost"] = True
            say(f"Mattermost has {messages} message(s): {mattermost.url}/")
        if check and all(goals.values()):
            say(f"the whole loop ran in {time.monotonic() - started:.0f} s")
            return True
        if check and time.monotonic() - started > timeout:
            say(f"timed out after {timeout:.0f} s; still waiting for: {[k for k, v in goals.items() if not v]}")
            return False
        time.sleep(0.5)
    return True


class _Interrupted(Exception):
    """A stop signal arrived before the services were started."""


def _interrupted(signum: int, frame: object) -> None:
    raise _Interrupted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="stop once the whole loop has been seen")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds --check waits (default 120)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    parser.add_argument("--keep", action="store_true", help="keep the previous demo's database and files")
    options = parser.parse_args()

    started = time.monotonic()
    # Ctrl-C, SIGTERM and SIGHUP end the demo quietly: during set-up at once, later through the watch loop.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupted)
    if DEMO.exists() and not options.keep:
        shutil.rmtree(DEMO)
    (DEMO / "logs").mkdir(parents=True, exist_ok=True)
    port = free_port(options.port)
    jira1, jira2, confluence, mattermost = start_fakes()
    config = write_config(jira1, jira2, confluence, mattermost, port)
    env = {
        **os.environ,
        "TASKHUB_CONFIG": str(config),
        "DJANGO_SETTINGS_MODULE": "taskhub.settings",
        "DJANGO_SUPERUSER_USERNAME": "admin",
        "DJANGO_SUPERUSER_PASSWORD": "admin",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    import django

    django.setup()
    seed()
    supervisor = Supervisor(services(port), env=env, cwd=ROOT)
    supervisor.install_signal_handlers()
    supervisor.start()
    print(
        f"""
TaskHub demo: nothing here talks to a real system.

  Admin            http://127.0.0.1:{port}/admin/   (user admin, password admin)
  Excel workbooks  {DEMO / "storage" / "artifacts"} (and downloadable from each task result in the admin)
  Confluence page  {confluence.url}/pages/{REPORT_PAGE_ID}   (all pages: {confluence.url}/pages)
  Mattermost       {mattermost.url}/   (the messages the webhook received)
  Emails           printed in {DEMO / "logs" / "worker.log"} (console backend)
  Fake Jira        env1.jira.com = {jira1.url}, env2.jira.com = {jira2.url}
  Configuration    {config}
  Logs             {DEMO / "logs"}

Watch the loop below: Jira -> Excel -> Confluence -> Mattermost. {"" if options.check else "Ctrl-C stops everything."}
""",
        flush=True,
    )
    ok = True
    try:
        ok = watch(confluence, mattermost, port, options.check, options.timeout, started, supervisor)
    finally:
        say("stopping web, worker, beat and the fake servers")
        supervisor.stop()
        for server in (jira1, jira2, confluence, mattermost):
            server.stop()
    return 0 if ok else 1


def run() -> int:
    """Run the demo; a stop signal during set-up ends it with status 0 and no traceback."""
    try:
        return main()
    except _Interrupted:
        say("stopped during set-up")
        return 0


if __name__ == "__main__":
    sys.exit(run())
