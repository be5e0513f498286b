"""Tasks created through the REST API (POST /tasks) against the real web server, as ``make run`` starts it.

The server is gunicorn with TaskHub's own settings (``--config python:taskhub.gunicorn_conf``: 2 gthread
workers x 8 threads; the Procfile's command line, access log included, written to a file) on a free port
of 127.0.0.1, with bench.settings (the NOOP handler). The client is this process, authenticating with a
DRF token of a user who holds scheduling.add_task and scheduling.view_task (not a superuser).
Measured, after a warm-up of 20 requests:
- one task per request: ``--requests`` POSTs of ``{"name": ..., "tags": ["NOOP"]}`` from 8 client
  threads, each on its own keep-alive connection; tasks/s = 201 answers / wall-clock seconds;
- a list of 500 per request (the bulk body, a JSON list): ``--lists`` POSTs one at a time; tasks/s =
  tasks created / seconds. A server that answers 400 to a list (no bulk body yet) is reported
  "not supported", not as a failure.
Beside it, the SQL statements of one such request, counted in this process with Django's test
client (CaptureQueriesContext; the wake's dispatch after the commit included). Every answer but 201
(200 or 201 to a list) counts as an error (shown as a metric, the first three
kept in the JSON); a list's tasks created are counted in the database.

Honest limits: no worker runs, so the first ``scheduler.concurrency`` tasks are dispatched and the later
wakes after each commit find the cap full (one count); the write throttle
(``security.write_rate``, 600/minute by default) is raised for the server (TASKHUB_SECURITY_WRITE_RATE),
since one client here stands for many users. The client shares the machine's cores with the server.

Usage (from the repository root):
    .venv/bin/python -m bench.api [--quick]
    TASKHUB_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/taskhub_bench_api \\
    TASKHUB_BROKER_URL=redis://127.0.0.1:6379/12 .venv/bin/python -m bench.api
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.common import ROOT, metric, wait_for, write_result

CLIENT_THREADS = 8
BULK_SIZE = 500
# tasks/s per database vendor (issue "Throughput"): one per request, a list of 500 per request.
SINGLE_BARS = {"postgresql": 150.0, "sqlite": 100.0}
BULK_BARS = {"postgresql": 2000.0, "sqlite": 1000.0}
USERNAME = "bench-api"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, log: Path) -> subprocess.Popen:
    """gunicorn as the Procfile's ``web`` line starts it, in its own session (stopped with its group)."""
    env = {**os.environ, "TASKHUB_SECURITY_WRITE_RATE": "1000000/minute"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "taskhub.wsgi:application",
            "--config",
            "python:taskhub.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--access-logfile",
            "-",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_server(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def make_token() -> str:
    """A user with the add and view permissions on Task, and its DRF token."""
    from django.contrib.auth.models import Permission, User
    from rest_framework.authtoken.models import Token

    User.objects.filter(username=USERNAME).delete()
    user = User.objects.create_user(USERNAME, password=None)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="scheduling", codename__in=["add_task", "view_task"])
    )
    return Token.objects.create(user=user).key


class Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def post(self, body: Any) -> tuple[int, bytes]:
        self.conn.request("POST", "/tasks", body=json.dumps(body), headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def wait_ready(port: int, server: subprocess.Popen, log: Path) -> None:
    def ready() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {server.returncode}:\n{log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            ok = conn.getresponse().status < 500
            conn.close()
            return ok
        except OSError:
            return False

    wait_for(ready, 60, "gunicorn start")


def one_per_request(port: int, token: str, requests: int, prefix: str) -> dict[str, Any]:
    """``requests`` POSTs of one task from CLIENT_THREADS threads; return seconds, 201s and other answers."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    counter = iter(range(requests))
    samples: list[str] = []

    def client() -> None:
        c = Client(port, token)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                code, body = c.post({"name": f"{prefix}-{i}", "tags": ["NOOP"]})
                with lock:
                    statuses[code] = statuses.get(code, 0) + 1
                    if code != 201 and len(samples) < 3:
                        samples.append(f"{code}: {body[:300]!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "created": statuses.get(201, 0), "statuses": statuses, "errors": samples}


def lists(port: int, token: str, count: int, prefix: str) -> dict[str, Any]:
    """``count`` POSTs of a list of BULK_SIZE tasks, one at a time; "supported": False on a 400 to the first."""
    from scheduling.models import Task

    c = Client(port, token)
    statuses: dict[int, int] = {}
    samples: list[str] = []
    before = Task.objects.count()
    started = time.perf_counter()
    try:
        for n in range(count):
            body = [{"name": f"{prefix}-{n}-{i}", "tags": ["NOOP"]} for i in range(BULK_SIZE)]
            code, answer = c.post(body)
            statuses[code] = statuses.get(code, 0) + 1
            if code not in (200, 201) and len(samples) < 3:
                samples.append(f"{code}: {answer[:300]!r}")
            if n == 0 and code == 400:
                return {"supported": False, "statuses": statuses, "errors": samples}
    finally:
        c.close()
    seconds = time.perf_counter() - started
    created = Task.objects.count() - before
    return {"supported": True, "seconds": seconds, "created": created, "statuses": statuses, "errors": samples}


def statements_per_request(token: str, count: int = 20) -> float:
    """SQL statements of one ``POST /tasks`` (one task), in this process through Django's test client."""
    from django.db import connection
    from django.test import Client as DjangoClient
    from django.test.utils import CaptureQueriesContext

    client = DjangoClient(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="127.0.0.1")  # web.allowed_hosts
    client.post("/tasks", {"name": "sql-warm", "tags": ["NOOP"]}, content_type="application/json")
    with CaptureQueriesContext(connection) as queries:
        for i in range(count):
            response = client.post("/tasks", {"name": f"sql-{i}", "tags": ["NOOP"]}, content_type="application/json")
            if response.status_code != 201:
                raise RuntimeError(f"POST /tasks in process: {response.status_code} {response.content[:300]!r}")
    return round(len(queries) / count, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: 400 requests, 4 lists")
    parser.add_argument("--requests", type=int, help="one-task POSTs (default 2000; quick 400)")
    parser.add_argument("--lists", type=int, help="POSTs of a list of 500 (default 10; quick 4)")
    args = parser.parse_args()
    requests = args.requests or (400 if args.quick else 2000)
    list_count = args.lists or (4 if args.quick else 10)

    harness.setup_django()
    from django.conf import settings
    from django.db import connection

    token = make_token()
    statements = statements_per_request(token)  # before the server starts (the wake's dispatch included)
    harness.clear_tasks()
    harness.purge_broker()
    log = Path(settings.STORAGE_DIR) / "bench-api-gunicorn.log"
    port = free_port()
    server = start_server(port, log)
    try:
        wait_ready(port, server, log)
        warm = one_per_request(port, token, 20, "warm")
        if warm["created"] != 20:
            raise RuntimeError(f"warm-up: {warm['statuses']} {warm['errors']}")
        single = one_per_request(port, token, requests, "api")
        bulk = lists(port, token, list_count, "bulk")
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {server.returncode}:\n{log.read_text()[-2000:]}")
    finally:
        stop_server(server)
    harness.clear_tasks()
    harness.purge_broker()

    vendor = connection.vendor
    single_bar = SINGLE_BARS.get(vendor, SINGLE_BARS["sqlite"])
    bulk_bar = BULK_BARS.get(vendor, BULK_BARS["sqlite"])
    single_rate = round(single["created"] / single["seconds"], 1)
    single_errors = requests - single["created"]
    metrics = [
        metric(
            f"POST /tasks, one task per request, {CLIENT_THREADS} client threads",
            single_rate,
            "tasks/s",
            bar=f">= {single_bar:g}/s",
            ok=single_rate >= single_bar and not single_errors,
        ),
        metric("POST /tasks, one task: SQL statements per request (in process)", statements, "statements"),
        metric(
            "POST /tasks, one per request: answers other than 201",
            single_errors,
            "requests",
            bar="0",
            ok=not single_errors,
        ),
    ]
    if bulk["supported"]:
        bulk_rate = round(bulk["created"] / bulk["seconds"], 1)
        bulk_errors = list_count - bulk["statuses"].get(201, 0) - bulk["statuses"].get(200, 0)
        metrics += [
            metric(
                f"POST /tasks, a list of {BULK_SIZE} per request",
                bulk_rate,
                "tasks/s",
                bar=f">= {bulk_bar:g}/s",
                ok=bulk_rate >= bulk_bar and not bulk_errors,
            ),
            metric(
                f"POST /tasks, list of {BULK_SIZE}: answers other than 200/201",
                bulk_errors,
                "requests",
                bar="0",
                ok=not bulk_errors,
            ),
        ]
    else:
        metrics.append(
            metric(
                f"POST /tasks, a list of {BULK_SIZE} per request",
                "not supported",
                "(400 to a list)",
                bar=f">= {bulk_bar:g}/s",
            )
        )
    write_result(
        "api",
        quick=args.quick,
        params={
            "requests": requests,
            "client_threads": CLIENT_THREADS,
            "lists": list_count,
            "list_size": BULK_SIZE,
            "server": "gunicorn --config python:taskhub.gunicorn_conf (2 gthread workers x 8 threads)",
            "worker": "none (the API's side only)",
        },
        metrics=metrics,
        series={"one_per_request": single, "lists": bulk},
    )
    harness.cleanup()


if __name__ == "__main__":
    main()
