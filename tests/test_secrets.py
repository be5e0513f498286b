"""Secrets never leak: plant known values the way production does (environment variables), use them for real,
then grep every output TaskHub produces for every one of them.

One TaskHub process (``manage.py shell``) is configured with planted Jira, Confluence, Mattermost, SMTP,
database, SECRET_KEY and encryption-key secrets, plus a task's own secret Authorization header. It runs tasks
against fake servers on 127.0.0.1 that succeed (the secret was really used) or fail (401, 500, an invalid
webhook, a server echoing the credentials back), then fetches API responses, error responses, the schema and
docs, the admin pages and the dashboard. The test also runs check_config, check --deploy and dumpdata, and
reads the log file (at DEBUG) and the artifacts. No output may contain any planted value.
"""

from __future__ import annotations

import base64
import json
import os
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet
from django.conf import settings

from tests.fakes import serving_thread
from tests.fakes.jira_server import FakeJira
from tests.fakes.mattermost_server import FakeMattermost
from tests.integrations.jira.conftest import build_env1
from tests.test_startup import clean_env, run

TASK_BEARER = "PLNT-task-bearer-4d2c9e71f0"
PLANTED: dict[str, str] = {
    "jira.password": "PLNT-jira-pass-8c1f0a7e",
    "jira.token": "PLNT-jira-token-2b9d44c1",
    "jira.environments.env1.password": "PLNT-env1-pass-5e6f7a8b",
    "jira.environments.env2.token": "PLNT-env2-token-9a0b1c2d",
    "confluence.password": "PLNT-conf-pass-31e7b6aa",
    "confluence.token": "PLNT-conf-token-77c0d2f5",
    "email.smtp_password": "PLNT-smtp-pass-60a9be13",
    "web.secret_key": "PLNT-secret-key-" + "k9" * 30,
    "database.url password": "PLNT-dbpass-0f4e2a19",
    "mattermost.webhooks.ops key": "PLNTopshook5b8e0d7c",
    "security.encryption_keys": Fernet.generate_key().decode(),
    "task secret_parameters": TASK_BEARER,
}

SCRIPT = r"""
import base64, json, os
from pathlib import Path
from django.contrib.auth import get_user_model
from django.test import Client
from scheduling.engine import dispatcher, executor
from scheduling import services
from scheduling.models import Task, TaskResult, TaskAudit

out = Path(os.environ["LEAK_OUT"])
out.mkdir(parents=True, exist_ok=True)
root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-1")
specs = json.loads(os.environ["LEAK_TASKS"])
tasks = [services.task_create(data=spec, owner=root) for spec in specs]


def run_all():
    for _ in range(20):  # creating a task already dispatched it (on commit); run what is queued, as a worker would
        dispatcher.dispatch()
        queued = list(TaskResult.objects.filter(status="QUEUED").values_list("pk", flat=True))
        if not queued:
            return
        for pk in queued:
            executor.run_attempt(pk)


host = {"HTTP_HOST": "127.0.0.1"}  # web.allowed_hosts
client = Client(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"root:pw-root-1").decode(), **host)
admin = Client(**host)
admin.force_login(root)
pages = {}

def keep(name, response):
    pages[name] = f"{response.status_code}\n{response.headers}\n" + response.content.decode("utf-8", "replace")

created = client.post(
    "/tasks",
    {"name": "api-secret", "tags": ["HTTP_REQUEST"], "parameters": {"url": os.environ["LEAK_ECHO"] + "/ok"},
     "secret_parameters": {"headers": {"Authorization": os.environ["LEAK_BEARER"]}}},
    content_type="application/json",
)
keep("api POST /tasks (with secret_parameters)", created)
new_id = created.json()["id"]
keep("api PATCH secret_parameters", client.patch(
    f"/tasks/{new_id}", {"secret_parameters": {"headers": {"Authorization": os.environ["LEAK_BEARER"] + "-v2"}}},
    content_type="application/json"))
run_all()
keep("api POST /tasks 400", client.post("/tasks", {"name": "", "tags": ["HTTP_REQUEST"],
     "parameters": {"url": "http://evil.example/"}, "secret_parameters": [os.environ["LEAK_BEARER"]]},
     content_type="application/json"))
keep("api 404", client.get("/tasks/00000000-0000-0000-0000-000000000000"))
keep("api 401", Client(**host).get("/tasks"))
for path in ("/tasks", "/tasks?page_size=500", "/task_history", "/handlers", "/schema", "/docs", "/redoc",
             "/health", "/tasks/status/FAILED", "/tasks/status/DONE"):
    keep("api " + path, client.get(path))
for task in Task.objects.all():
    keep(f"api task {task.name}", client.get(f"/tasks/{task.pk}"))
    keep(f"api results {task.name}", client.get(f"/tasks/{task.pk}/results"))
    keep(f"api audit {task.name}", client.get(f"/tasks/{task.pk}/audit"))
    keep(f"admin change {task.name}", admin.get(f"/admin/scheduling/task/{task.pk}/change/"))
    keep(f"admin live {task.name}", admin.get(f"/admin/scheduling/task/{task.pk}/live/"))
    keep(f"admin graph {task.name}", admin.get(f"/admin/scheduling/task/{task.pk}/graph/"))
    keep(f"admin history {task.name}", admin.get(f"/admin/scheduling/task/{task.pk}/history/"))
for result in TaskResult.objects.all():
    keep(f"admin result {result.pk}", admin.get(f"/admin/scheduling/taskresult/{result.pk}/change/"))
for entry in TaskAudit.objects.all():
    keep(f"admin audit {entry.pk}", admin.get(f"/admin/scheduling/taskaudit/{entry.pk}/change/"))
for path in ("/admin/", "/admin/scheduling/task/", "/admin/scheduling/task/dashboard/",
             "/admin/scheduling/taskresult/", "/admin/scheduling/taskaudit/", "/admin/scheduling/task/add/",
             "/admin/scheduling/task/?q=secret", "/admin/auth/user/", "/admin/login/", "/admin/nothing-here/"):
    keep("admin " + path, admin.get(path))
(out / "pages.json").write_text(json.dumps(pages))
(out / "state.json").write_text(json.dumps({
    t.name: {"status": t.status, "errors": [r.error_message for r in t.results.all()]} for t in Task.objects.all()
}))
print("script done", len(pages))
"""


class Echo(BaseHTTPRequestHandler):
    """A careless server: it echoes the credentials it received, in errors and in answers."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        received = self.headers.get("Authorization", "")
        self.server.received.append(received)  # type: ignore[attr-defined]
        status = 500 if self.path.startswith("/fail") else 401 if self.path.startswith("/deny") else 200
        token = received.removeprefix("Bearer ")
        if status == 401:  # "401 invalid token T", the token alone, just across the 200-character error excerpt
            body = ("x" * (200 - len("invalid token ") - len(token) // 2) + f"invalid token {token}").encode()
        else:
            body = json.dumps({"you sent": received, "token": token, "path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    echo = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    echo.received = []  # type: ignore[attr-defined]
    serving_thread(echo).start()
    env1 = FakeJira(username="taskhub-bot", password=PLANTED["jira.environments.env1.password"]).start()
    build_env1(env1)
    env2 = FakeJira(token=PLANTED["jira.environments.env2.token"]).start()
    env2.fail_next(500, times=50)
    default = FakeJira(username="taskhub-bot", password="not-what-taskhub-sends").start()  # 401
    mattermost = FakeMattermost().start()
    yield {"echo": echo, "env1": env1, "env2": env2, "default": default, "mattermost": mattermost}
    for server in (env1, env2, default, mattermost):
        server.stop()
    echo.shutdown()
    echo.server_close()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A database URL carrying the planted password: PostgreSQL (trust auth ignores it) when the suite runs there."""
    password = PLANTED["database.url password"]
    db = settings.DATABASES["default"]
    if "postgresql" not in db["ENGINE"]:
        yield f"sqlite://taskhub:{password}@/{tmp_path}/db.sqlite3"  # the password is parsed, then unused
        return
    import psycopg

    name = f"{db['NAME']}_leak_{os.getpid()}"
    server = {"user": db["USER"], "host": db["HOST"] or "127.0.0.1", "port": db["PORT"] or 5432}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://{db['USER']}:{password}@{server['host']}:{server['port']}/{name}"
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _readable(path: Path) -> str:
    """Return a file's text; an .xlsx workbook is a zip, so read the XML inside."""
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as book:
            return "\n".join(book.read(name).decode("utf-8", "replace") for name in book.namelist())
    return path.read_bytes().decode("utf-8", "replace")


def test_planted_secrets_appear_in_no_output(tmp_path: Path, servers: dict[str, Any], database_url: str) -> None:
    echo_url = f"http://127.0.0.1:{servers['echo'].server_address[1]}"
    mattermost: FakeMattermost = servers["mattermost"]
    secrets = dict(PLANTED)
    secrets["mattermost.webhook_url key"] = mattermost.key
    secrets["mattermost.webhook_url"] = mattermost.webhook_url
    ops_hook = f"{mattermost.url}/hooks/{PLANTED['mattermost.webhooks.ops key']}"  # an invalid webhook: 400
    secrets["mattermost.webhooks.ops"] = ops_hook

    config = (
        f"jira:\n  url: {servers['default'].url!r}\n  username: taskhub-bot\n  environments:\n"
        f"    env1.jira.com:\n      url: {servers['env1'].url!r}\n      username: taskhub-bot\n"
        f"    env2.jira.com:\n      url: {servers['env2'].url!r}\n"
        f"confluence:\n  url: 'http://127.0.0.1:9'\n  username: bot\n"
        f"http:\n  allowed_hosts: ['127.0.0.1:*']\n"
        f"log:\n  level: DEBUG\n"
    )
    env = clean_env(
        tmp_path,
        config,
        TASKHUB_JIRA_PASSWORD=PLANTED["jira.password"],
        TASKHUB_JIRA_TOKEN=PLANTED["jira.token"],
        TASKHUB_JIRA_ENVIRONMENTS_ENV1_JIRA_COM_PASSWORD=PLANTED["jira.environments.env1.password"],
        TASKHUB_JIRA_ENVIRONMENTS_ENV2_JIRA_COM_TOKEN=PLANTED["jira.environments.env2.token"],
        TASKHUB_CONFLUENCE_PASSWORD=PLANTED["confluence.password"],
        TASKHUB_CONFLUENCE_TOKEN=PLANTED["confluence.token"],
        TASKHUB_EMAIL_SMTP_PASSWORD=PLANTED["email.smtp_password"],
        TASKHUB_WEB_SECRET_KEY=PLANTED["web.secret_key"],
        TASKHUB_DATABASE_URL=database_url,
        TASKHUB_MATTERMOST_WEBHOOK_URL=mattermost.webhook_url,
        TASKHUB_MATTERMOST_WEBHOOKS=f"ops={ops_hook}",
        TASKHUB_SECURITY_ENCRYPTION_KEYS=PLANTED["security.encryption_keys"],
        LEAK_OUT=str(tmp_path / "out"),
        LEAK_ECHO=echo_url,
        LEAK_BEARER=f"Bearer {TASK_BEARER}",
    )
    bearer = {"headers": {"Authorization": f"Bearer {TASK_BEARER}"}}  # the token alone must not come back out
    http = {"tags": ["HTTP_REQUEST"], "secret_parameters": bearer}
    export = {"tags": ["JIRA_TASK_EXP"]}
    env["LEAK_TASKS"] = json.dumps(
        [
            {"name": "http ok echoes the header", **http, "parameters": {"url": f"{echo_url}/ok"}},
            {"name": "http 500 echoes the header", **http, "parameters": {"url": f"{echo_url}/fail"}},
            {"name": "http 401 echoes the token", **http, "parameters": {"url": f"{echo_url}/deny"}},
            {"name": "http connection refused", **http, "parameters": {"url": "http://127.0.0.1:9/closed"}},
            {
                "name": "jira env1 export ok",
                **export,
                "parameters": {"jira_envs": ["env1.jira.com"], "key_type": "root_ticket", "key_value": "PROJ-123"},
            },
            {
                "name": "jira env2 500",
                **export,
                "parameters": {"jira_envs": ["env2.jira.com"], "key_type": "project", "key_value": "PROJ"},
            },
            {
                "name": "jira default 401",
                **export,
                "parameters": {"jira_envs": ["default"], "key_type": "project", "key_value": "PROJ"},
            },
            {"name": "mattermost ok", "tags": ["NOTIFY_MATTERMOST"], "parameters": {"text": "hello"}},
            {
                "name": "mattermost bad hook",
                "tags": ["NOTIFY_MATTERMOST"],
                "parameters": {"text": "x", "channel": "ops"},
            },
        ]
    )

    outputs: dict[str, str] = {}
    for args in (
        ["manage.py", "migrate", "--noinput"],
        ["manage.py", "shell", "-c", SCRIPT],
        ["manage.py", "check_config"],
        ["manage.py", "check", "--deploy"],
        ["manage.py", "encryption_keys", "--check"],
        ["manage.py", "list_tasks"],
        ["manage.py", "dumpdata", "scheduling", "auth.user", "--indent", "1"],
    ):
        done = run(args, env, tmp_path, timeout=180)
        assert done.returncode == 0 or args[1] == "list_tasks", (args[:2], done.stderr[-6000:])
        outputs[" ".join(args[:2]) + " stdout"] = done.stdout
        outputs[" ".join(args[:2]) + " stderr"] = done.stderr
    pages = json.loads((tmp_path / "out" / "pages.json").read_text())
    outputs.update(pages)
    for log in sorted((tmp_path / "logs").glob("app.log*")):
        outputs[f"log {log.name}"] = log.read_text(errors="replace")
    for folder in ("storage", "reports"):
        for file in sorted((tmp_path / folder).rglob("*")):
            if file.is_file() and "broker" not in file.parts and file.name != ".secret_key":
                outputs[f"file {file.relative_to(tmp_path)}"] = _readable(file)

    # The secrets were live: the fakes received them and the tasks ran as expected.
    state = json.loads((tmp_path / "out" / "state.json").read_text())
    assert state["http ok echoes the header"]["status"] == "DONE", state
    assert state["jira env1 export ok"]["status"] == "DONE", state
    assert state["mattermost ok"]["status"] == "DONE", state
    assert f"Bearer {TASK_BEARER}" in servers["echo"].received and mattermost.texts() == ["hello"]
    assert any("401" in e for e in state["jira default 401"]["errors"]), state
    assert any("500" in e for e in state["jira env2 500"]["errors"]), state
    assert state["http 500 echoes the header"]["status"] == "FAILED"
    assert "<hidden>" in " ".join(state["http 500 echoes the header"]["errors"])  # the echo was scrubbed
    assert any(name.startswith("file storage/artifacts") for name in outputs), list(outputs)
    assert "api POST /tasks (with secret_parameters)" in outputs and len(outputs) > 60

    # Each secret, its URL-encoded and base64 forms, and any 8-character piece of it (a cut that left part).
    # (A webhook URL is checked whole: its secret part, the key, is planted and checked on its own.)
    def forms(secret: str) -> list[str]:
        encoded = [secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()]
        if "://" in secret:
            return encoded
        return [form[i : i + 8] for form in encoded for i in range(len(form) - 7)]

    leaks = [
        f"{label} in {where}"
        for where, text in outputs.items()
        for label, secret in secrets.items()
        if any(piece in text for piece in forms(secret))
    ]
    assert leaks == [], leaks
    print(f"\n{len(secrets)} planted secrets x {len(outputs)} outputs grepped: no leak")
