"""Fault tests: the engine loses nothing and runs nothing twice when its parts fail.

Real worker and beat processes (tests/conftest.py), a private redis-server that
a test may kill, PostgreSQL backends terminated under a worker, the leader beat
killed, the dispatcher raced from four processes, and a worker on a second host
(its own UTS namespace, so its own socket.gethostname(); on PostgreSQL + Redis
also its own network namespace behind a veth link) killed or cut off mid-work.
Covered elsewhere and not
repeated here (tests/scheduling/test_e2e.py, test_executor.py): a worker process
SIGKILLed mid-task, a message delivered twice, two beats on SQLite, a late
completion from a worker that lost its claim.

Each test prints one line for the reliability table (run with ``-rP`` to see
them): faults injected, tasks affected, tasks lost, duplicates.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import InterfaceError, OperationalError, ProgrammingError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from scheduling.engine import executor, lifecycle
from scheduling.models import IN_FLIGHT, AttemptStatus, RetryPolicy, Task, TaskResult, TaskStatus
from tests.conftest import ROOT, _clear_broker, attempts, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL only: SQLite has no server connections to drop"
)
LEADER_LINE = "this beat holds the leader lock"


def report(test: str, *, faults: int, affected: int, lost: int, duplicates: int, note: str = "") -> None:
    """One line of the reliability table (faults injected, tasks affected, tasks lost, duplicates)."""
    print(
        f"FAULTS {test}: backend={connection.vendor} faults={faults} affected={affected} "
        f"lost={lost} duplicates={duplicates}" + (f" ({note})" if note else "")
    )


def done(*tasks: Task) -> bool:
    return all(Task.objects.get(pk=t.pk).status == TaskStatus.DONE for t in tasks)


def runs_per_label(lines: list[str]) -> Counter[str]:
    return Counter(line.split()[0] for line in lines)


def lost_and_duplicates(tasks: list[Task], journal_lines: list[str]) -> tuple[int, int]:
    """Tasks without a DONE attempt, and DONE attempts or handler runs beyond one per task."""
    done_counts = Counter(
        TaskResult.objects.filter(task__in=tasks, status=AttemptStatus.DONE).values_list("task_id", flat=True)
    )
    runs = runs_per_label(journal_lines)
    lost = sum(1 for t in tasks if done_counts[t.pk] == 0)
    duplicates = sum(max(done_counts[t.pk] - 1, 0) for t in tasks)
    return lost, duplicates + sum(max(n - 1, 0) for n in runs.values())


# --- a private redis-server a test may kill ------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own (nothing kept on disk), on a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        # Like the shared Redis and PostgreSQL, the server runs on the machine's own clock: a test run under
        # libfaketime (a moved clock, tests/README.md) must not preload it into redis-server, which cannot start
        # with it (jemalloc's first clock_gettime recurses into libfaketime).
        env = {name: value for name, value in os.environ.items() if name != "LD_PRELOAD"}
        with (self.folder / "redis-server.log").open("ab") as log:
            self.popen = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                + ["--dir", str(self.folder)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def answers() -> bool:
            assert self.popen is not None and self.popen.poll() is None, "redis-server exited"
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, timeout=30)

    def kill(self) -> None:
        """SIGKILL: every queued message goes with it (no persistence)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the Redis restart test needs a server of its own to kill")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


REDIS_TRANSPORT = {"visibility_timeout": 7200, "queue_order_strategy": "priority", "priority_steps": [0, 3, 6, 9]}


@pytest.fixture
def test_process_broker() -> Iterator[Callable[..., object]]:
    """Point this process's Celery app (which sends after dispatch) at another broker; restored afterwards."""
    from kombu import pools as kombu_pools

    from taskhub.celery import app

    saved = {key: app.conf[key] for key in ("broker_url", "broker_transport_options")}

    def reset_pools() -> None:
        # Close and forget kombu's shared pools too: a closed pool left in its registry would be
        # handed to the next test that sends ("Acquire on closed pool").
        kombu_pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    def use(url: str) -> None:
        reset_pools()
        app.conf.update(broker_url=url, broker_transport_options=REDIS_TRANSPORT)

    yield use
    reset_pools()
    app.conf.update(saved)


# --- 1. Redis restarted while tasks are queued and running ----------------------------------


def test_redis_restart_loses_no_queued_or_running_task(
    private_redis, test_process_broker, start_worker, start_beat, make_task, journal, scheduler_conf
):
    env = {
        **scheduler_conf(concurrency=6, poll_interval=1, requeue_after_seconds=2),
        "TASKHUB_BROKER_URL": private_redis.url,
    }
    test_process_broker(private_redis.url)
    worker = start_worker("w1", concurrency=3, env=env)
    start_beat(env=env)  # its sweep (every second) re-sends QUEUED work whose message was lost
    tasks = [
        make_task(f"r{i}", tags=["TEST_SLEEP"], parameters={"label": f"r{i}", "seconds": 1.5})
        if i % 3 == 0
        else make_task(f"r{i}", parameters={"label": f"r{i}"})
        for i in range(30)
    ]

    def in_flight() -> Counter[str]:
        return Counter(TaskResult.objects.filter(status__in=IN_FLIGHT).values_list("status", flat=True))

    wait_until(lambda: {AttemptStatus.RUNNING, AttemptStatus.QUEUED} <= set(in_flight()))
    private_redis.kill()
    at_kill = in_flight()
    unfinished = Task.objects.filter(pk__in=[t.pk for t in tasks]).exclude(status=TaskStatus.DONE).count()
    time.sleep(1)  # the broker stays down while workers finish and try to publish
    private_redis.start()  # same port, empty
    wait_until(lambda: done(*tasks), timeout=180, interval=0.2)

    lost, duplicates = lost_and_duplicates(tasks, journal())
    report(
        "redis_restart",
        faults=1,
        affected=unfinished,
        lost=lost,
        duplicates=duplicates,
        note=f"{at_kill[AttemptStatus.QUEUED]} queued, {at_kill[AttemptStatus.RUNNING]} running at the kill",
    )
    assert all(attempts(t) == [(1, "DONE")] for t in tasks)
    assert runs_per_label(journal()) == Counter({f"r{i}": 1 for i in range(30)})
    assert (lost, duplicates) == (0, 0)
    assert worker.popen.poll() is None  # the worker reconnected instead of exiting


# --- 2. PostgreSQL connections dropped while a worker records a result ----------------------


def terminate_other_backends() -> int:
    """pg_terminate_backend every other connection to the test database; return how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@on_postgresql
def test_worker_reconnects_and_records_the_result_after_its_connections_are_dropped(start_worker, make_task, journal):
    worker = start_worker("w1", concurrency=1)
    task = make_task("dropped", tags=["TEST_SLEEP"], parameters={"label": "dropped", "seconds": 3})
    wait_until(lambda: len(journal()) == 1)  # claimed and running: the handler sleeps
    killed = terminate_other_backends()
    assert killed >= 1
    wait_until(lambda: done(task), timeout=60)  # nothing else (no beat) would ever finish it
    assert attempts(task) == [(1, "DONE")]
    assert TaskResult.objects.get(task=task).result == {"slept": 3}
    assert "database connection lost" in worker.output()
    lost, duplicates = lost_and_duplicates([task], journal())
    report("pg_connections_dropped", faults=killed, affected=1, lost=lost, duplicates=duplicates)
    assert (lost, duplicates) == (0, 0)


@on_postgresql
def test_run_attempt_survives_its_own_connection_being_terminated(make_task):
    import psycopg

    task = make_task("cut", tags=["TEST_SLEEP"], parameters={"label": "cut", "seconds": 0})
    queued = TaskResult.objects.get(task=task, status=AttemptStatus.QUEUED)  # dispatched when created
    _clear_broker()  # no worker here: this test runs the attempt itself
    db = connection.settings_dict
    cuts = []

    def cut_connection(percent, message) -> None:
        if cuts:
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with psycopg.connect(
            dbname=db["NAME"], user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432
        ) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        cuts.append(pid)

    # The listener runs after the first progress report, so the second report and
    # the completion meet a dead connection.
    assert executor.run_attempt(queued.pk, progress_listener=cut_connection) == AttemptStatus.DONE
    assert cuts
    assert attempts(task) == [(1, "DONE")]


def test_reconnecting_retries_a_step_only_outside_a_transaction(monkeypatch):
    monkeypatch.setattr(executor.time, "sleep", lambda seconds: None)  # no backoff pauses here
    calls = []

    def flaky_step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("server closed the connection unexpectedly")
        return "ok"

    assert executor.reconnecting(flaky_step, "test step") == "ok"
    assert len(calls) == 3

    calls.clear()
    with transaction.atomic(), pytest.raises(OperationalError):
        # Inside a transaction the work so far went with the connection: no retry.
        executor.reconnecting(flaky_step, "test step")
    assert len(calls) == 1

    def wrong_sql() -> None:
        calls.append(1)
        raise ProgrammingError('relation "nowhere" does not exist')

    calls.clear()
    with pytest.raises(ProgrammingError):
        executor.reconnecting(wrong_sql, "test step")  # the connection is fine: a real error, not retried
    assert len(calls) == 1

    def dead() -> None:
        calls.append(1)
        raise InterfaceError("connection already closed")

    calls.clear()
    with pytest.raises(InterfaceError):
        executor.reconnecting(dead, "test step")
    assert len(calls) == executor.DB_TRIES


# --- 3. two beats on PostgreSQL: one leads, the other takes over ----------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only: the leader lock is an advisory lock")
def test_second_beat_waits_for_the_leader_lock_and_takes_over_when_the_leader_dies(
    start_worker, start_beat, make_task, journal
):
    start_worker()
    beats = [start_beat("beat1"), start_beat("beat2")]
    leader = wait_until(lambda: next((b for b in beats if LEADER_LINE in b.output()), None))
    follower = beats[1 - beats.index(leader)]
    # Yearly crons cannot fire on their own during the test; each fire is brought close.
    tasks = [make_task(f"cron{i}", task_type="SCHEDULED", cron_expr="0 0 1 1 *") for i in range(3)]

    def fire_soon() -> list:
        base = timezone.now().replace(microsecond=0)
        times = [base + timedelta(seconds=2 + i) for i in range(len(tasks))]
        for task, fire_at in zip(tasks, times, strict=True):
            Task.objects.filter(pk=task.pk).update(next_fire_at=fire_at)
        return times

    def fired(times: list) -> bool:
        return all(
            TaskResult.objects.filter(task=t, fire_time=at, status=AttemptStatus.DONE).exists()
            for t, at in zip(tasks, times, strict=True)
        )

    first = fire_soon()
    wait_until(lambda: fired(first), timeout=60)
    assert LEADER_LINE not in follower.output()  # it waited: the leader alone fired

    leader.stop()  # SIGKILL: its session (and advisory lock) ends with its connection
    wait_until(lambda: LEADER_LINE in follower.output(), timeout=60)
    second = fire_soon()
    wait_until(lambda: fired(second), timeout=60)

    per_fire = TaskResult.objects.filter(task__in=tasks).values("task", "fire_time").annotate(n=Count("pk"))
    assert sorted(row["n"] for row in per_fire) == [1] * 6  # one run per (task, fire time)
    assert sorted(runs_per_label(journal()).values()) == [2, 2, 2]
    report("beat_leader_killed", faults=1, affected=len(tasks), lost=0, duplicates=0, note="6 fires, 2 beats")


# --- 4. the dispatcher from four processes at once ----------------------------------------

DISPATCH_LOOP = """
import sys, time
from pathlib import Path
import django
django.setup()
from scheduling.engine import dispatcher
stop = Path(sys.argv[1])
print("ready", flush=True)
picked = 0
while not stop.exists():
    picked += len(dispatcher.dispatch())
    time.sleep(0.005)
print("picked", picked, flush=True)
"""


def execute_messages_in_broker() -> Counter[int]:
    """How many times each attempt is in an execute message waiting in the configured broker (a message
    carries one attempt, or several when the queue is deep: its arguments are their ids)."""
    url = settings.TASKHUB["broker"]["url"]
    messages = []
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        messages = [json.loads(path.read_bytes()) for path in folder.glob("*.msg")]
    else:
        import redis

        client = redis.Redis.from_url(url)
        for key in client.scan_iter():
            if client.type(key) == b"list":
                messages += [json.loads(raw) for raw in client.lrange(key, 0, -1)]
    execute = [m["headers"] for m in messages if m["headers"].get("task") == "scheduling.execute"]
    return Counter(int(pk) for headers in execute for pk in ast.literal_eval(headers["argsrepr"]))


def test_dispatcher_from_four_processes_keeps_the_cap_and_queues_each_attempt_once(
    celery_env, make_task, scheduler_conf, tmp_path
):
    cap = 3
    env = {**celery_env, **scheduler_conf(concurrency=cap)}
    tasks = [make_task(f"d{i}", enabled=False) for i in range(24)]  # not ready until enabled below
    stop = tmp_path / "stop"
    loops = [
        subprocess.Popen(
            [sys.executable, "-c", DISPATCH_LOOP, str(stop)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / f"dispatch{i}.err").open("wb"),
            text=True,
        )
        for i in range(4)
    ]
    try:
        for loop in loops:
            assert loop.stdout.readline().strip() == "ready"
        Task.objects.filter(pk__in=[t.pk for t in tasks]).update(enabled=True)
        # This process plays the worker: it finishes whatever is in flight, without
        # dispatching itself, so the four loops race for every freed slot. Only it
        # lowers the in-flight count, so a snapshot between its batches sees any overshoot.
        peak = finished = 0
        deadline = time.monotonic() + 120
        while finished < len(tasks) and time.monotonic() < deadline:
            in_flight = list(TaskResult.objects.filter(status__in=IN_FLIGHT).select_related("task"))
            peak = max(peak, len(in_flight))
            for result in in_flight:
                if result.status == AttemptStatus.QUEUED:
                    result = executor.claim(result.pk)
                lifecycle.move(result, AttemptStatus.DONE, claim=result.claim)
                finished += 1
            time.sleep(0.05)  # let the loops fill the freed slots
    finally:
        stop.touch()
        picked = [int(loop.communicate(timeout=60)[0].split()[-1]) for loop in loops]

    queued_per_attempt = execute_messages_in_broker()
    _clear_broker()
    results = TaskResult.objects.filter(task__in=tasks)
    sent_twice = sum(n - 1 for n in queued_per_attempt.values() if n > 1)
    report(
        "dispatch_4_processes",
        faults=4,
        affected=len(tasks),
        lost=results.exclude(status=AttemptStatus.DONE).count(),
        duplicates=sent_twice + max(results.count() - len(tasks), 0),
        note=f"peak in flight {peak} of cap {cap}; picked per process {picked}",
    )
    assert peak == cap  # the cap was reached (the race happened) and never exceeded
    assert done(*tasks) and results.count() == len(tasks)
    assert sum(picked) == len(tasks)  # each attempt went to QUEUED once, in one of the loops
    assert sum(1 for n in picked if n) >= 2  # more than one process really dispatched
    # Each attempt reached the broker in one execute message, once.
    assert queued_per_attempt == Counter({r.pk: 1 for r in results})


# --- 5. workers on two hosts; one is cut off mid-work -------------------------------------

HOST_B = "taskhub-host-b"


def _uts_namespaces() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "--uts", "sh", "-c", f"hostname {HOST_B} && hostname"], capture_output=True, text=True
        )
    except OSError:
        return False
    return probe.returncode == 0 and probe.stdout.strip() == HOST_B


def uts_prefix(hostname: str) -> list[str]:
    """Run a command in a UTS namespace of its own, where socket.gethostname() is ``hostname``."""
    return ["unshare", "--uts", "sh", "-c", f'hostname {hostname} && exec "$0" "$@"']


def b_is_mid_work(rows: list[TaskResult]) -> bool:
    """Host B has finished some work and has just started more (1.5 s handlers: time left to cut it off)."""
    just_now = timezone.now() - timedelta(seconds=0.5)
    return any(r.status == AttemptStatus.DONE for r in rows) and any(
        r.status == AttemptStatus.RUNNING and r.started_at >= just_now for r in rows
    )


def test_two_hosts_share_the_work_and_cutting_one_off_loses_nothing(
    start_worker, start_beat, make_task, journal, scheduler_conf
):
    uts = _uts_namespaces()
    env = scheduler_conf(concurrency=4, poll_interval=1, requeue_after_seconds=2, timeout_grace_seconds=1)
    policy = RetryPolicy.objects.create(name="after-cut", max_retries=3, retry_delay=0)
    start_worker("hosta", concurrency=2, env=env)
    host_b = start_worker("hostb", env=env, host=HOST_B, prefix=uts_prefix(HOST_B) if uts else [])
    start_beat(env=env)  # the sweep reclaims host B's attempts at their deadline and re-sends its messages
    tasks = [
        make_task(
            f"h{i}",
            tags=["TEST_SLEEP"],
            parameters={"label": f"h{i}", "seconds": 1.5},
            timeout_seconds=3,
            retry_policy=policy.pk,
        )
        for i in range(10)
    ]
    b_pids = set(host_b.child_pids())  # its pool processes (the same set until it is killed)

    def on_b(*status: str) -> list[TaskResult]:
        rows = TaskResult.objects.filter(task__in=tasks, status__in=status).only("worker", "status", "started_at")
        return [r for r in rows if r.worker.rsplit(":", 1)[0] == b_host and int(r.worker.split(":")[-1]) in b_pids]

    b_host = HOST_B if uts else socket.gethostname()
    wait_until(lambda: b_is_mid_work(on_b(AttemptStatus.DONE, AttemptStatus.RUNNING)))
    host_b.stop()  # SIGKILL its whole process group: the host is gone
    cut_running = len(on_b(AttemptStatus.RUNNING))
    unfinished = Task.objects.filter(pk__in=[t.pk for t in tasks]).exclude(status=TaskStatus.DONE).count()
    wait_until(lambda: done(*tasks), timeout=180, interval=0.2)

    done_rows = TaskResult.objects.filter(task__in=tasks, status=AttemptStatus.DONE)
    hosts = {w.rsplit(":", 1)[0] for w in done_rows.values_list("worker", flat=True)}
    lost = sum(1 for t in tasks if not done_rows.filter(task=t).exists())
    duplicates = done_rows.count() - len(tasks) + lost
    report(
        "host_cut_off",
        faults=1,
        affected=unfinished,
        lost=lost,
        duplicates=duplicates,
        note=f"{cut_running} running on the cut host; hostnames {'by UTS namespace' if uts else 'shared'}",
    )
    assert (lost, duplicates) == (0, 0)
    assert done_rows.count() == len(tasks)
    if uts:
        assert hosts == {socket.gethostname(), HOST_B}  # both hosts did work
    # What host B was running when it vanished ended TIMEOUT and ran again elsewhere.
    cut = TaskResult.objects.filter(task__in=tasks).exclude(status=AttemptStatus.DONE)
    assert cut_running >= 1 and cut.count() == cut_running
    assert set(cut.values_list("status", flat=True)) == {AttemptStatus.TIMEOUT}
    runs = runs_per_label(journal())
    # A handler ran again only after a cut (a cut attempt may have died before its handler began).
    assert all(1 <= runs[t.name] <= 1 + cut.filter(task=t).count() for t in tasks)


# --- 5b. the same across a real network: host B in a network namespace, its link cut ------


class TcpProxy:
    """Carry TCP from ``listen_host`` (host B's side of the link) to a local service on 127.0.0.1."""

    def __init__(self, listen_host: str, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server((listen_host, 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return
            self.sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.server.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the far end sees the connection end at once
            except OSError:
                pass
            sock.close()


class NetworkHost:
    """A network namespace joined to this machine by a veth pair: a second host, reachable only by TCP."""

    def __init__(self) -> None:
        tag = os.getpid() % 100_000
        self.ns, self.link, self.peer = f"th9ns{tag}", f"th9h{tag}", f"th9n{tag}"
        subnet = f"10.209.{tag % 250 + 1}"
        self.host_ip, self.ns_ip = f"{subnet}.1", f"{subnet}.2"
        self.proxies: list[TcpProxy] = []

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def create(self) -> None:
        self._ip("netns", "add", self.ns)
        self._ip("link", "add", self.link, "type", "veth", "peer", "name", self.peer)
        self._ip("link", "set", self.peer, "netns", self.ns)
        self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.link)
        self._ip("link", "set", self.link, "up")
        self._ip("-n", self.ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.peer)
        self._ip("-n", self.ns, "link", "set", self.peer, "up")
        self._ip("-n", self.ns, "link", "set", "lo", "up")

    def expose(self, port: int) -> int:
        """Make 127.0.0.1:port reachable from the namespace; return the port to use at host_ip."""
        proxy = TcpProxy(self.host_ip, port)
        self.proxies.append(proxy)
        return proxy.port

    def cut(self) -> None:
        self._ip("link", "set", self.link, "down")

    def heal(self) -> None:
        self._ip("link", "set", self.link, "up")

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def destroy(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


@pytest.fixture
def network_host() -> Iterator[NetworkHost]:
    host = NetworkHost()
    try:
        host.create()
    except (OSError, subprocess.CalledProcessError) as exc:
        host.destroy()
        detail = getattr(exc, "stderr", "") or exc
        pytest.skip(f"network namespaces are not permitted on this machine ({str(detail).strip()})")
    yield host
    host.destroy()


@pytest.mark.skipif(
    connection.vendor != "postgresql" or not settings.TASKHUB["broker"]["url"].startswith("redis"),
    reason="PostgreSQL and Redis only: SQLite and the filesystem broker are files, not reached over a network",
)
def test_host_cut_off_by_its_network_loses_nothing_and_rejoins_without_duplicates(
    start_worker, start_beat, make_task, journal, scheduler_conf, network_host
):
    env = {
        **scheduler_conf(concurrency=4, poll_interval=1, requeue_after_seconds=2, timeout_grace_seconds=1),
        # Host B may be cut off inside a transaction (the dispatcher's, holding its lock): the
        # server ends that session after this long (60 s by default), and dispatch goes on.
        "TASKHUB_DATABASE_IDLE_TRANSACTION_TIMEOUT": "3",
    }
    db = connection.settings_dict
    broker = urlsplit(settings.TASKHUB["broker"]["url"])
    # Host B reaches PostgreSQL and Redis only through its link (and a proxy on this side of it).
    b_side = network_host.host_ip
    pg_port, redis_port = network_host.expose(int(db["PORT"] or 5432)), network_host.expose(broker.port or 6379)
    b_env = {
        **env,
        "TASKHUB_DATABASE_URL": f"postgresql://{db['USER']}@{b_side}:{pg_port}/{db['NAME']}",
        "TASKHUB_BROKER_URL": f"redis://{b_side}:{redis_port}{broker.path}",
    }
    policy = RetryPolicy.objects.create(name="after-partition", max_retries=3, retry_delay=0)
    start_worker("hosta", concurrency=2, env=env)
    prefix = network_host.prefix() + (uts_prefix(HOST_B) if _uts_namespaces() else [])
    host_b = start_worker("hostb", env=b_env, host=HOST_B, prefix=prefix)
    start_beat(env=env)
    tasks = [
        make_task(
            f"n{i}",
            tags=["TEST_SLEEP"],
            parameters={"label": f"n{i}", "seconds": 1.5},
            timeout_seconds=3,
            retry_policy=policy.pk,
        )
        for i in range(8)
    ]
    b_pids = set(host_b.child_pids())

    def on_b(*status: str) -> list[TaskResult]:
        rows = TaskResult.objects.filter(task__in=tasks, status__in=status).only("worker", "status", "started_at")
        return [r for r in rows if int(r.worker.split(":")[-1]) in b_pids]

    wait_until(lambda: b_is_mid_work(on_b(AttemptStatus.DONE, AttemptStatus.RUNNING)))
    network_host.cut()  # host B keeps running, but nothing it sends arrives
    cut_running = len(on_b(AttemptStatus.RUNNING))
    unfinished = Task.objects.filter(pk__in=[t.pk for t in tasks]).exclude(status=TaskStatus.DONE).count()
    wait_until(lambda: done(*tasks), timeout=180, interval=0.2)

    # The link comes back. Host B works again (its stale deliveries find their attempts taken),
    # and more work after that is also done once.
    seen = len(host_b.output())
    network_host.heal()
    wait_until(lambda: "succeeded in" in host_b.output()[seen:], timeout=120, interval=0.2)
    tasks += [
        make_task(f"n{i}", tags=["TEST_SLEEP"], parameters={"label": f"n{i}", "seconds": 0.2}, retry_policy=policy.pk)
        for i in range(8, 10)
    ]
    wait_until(lambda: done(*tasks), timeout=120, interval=0.2)

    done_rows = TaskResult.objects.filter(task__in=tasks, status=AttemptStatus.DONE)
    lost = sum(1 for t in tasks if not done_rows.filter(task=t).exists())
    duplicates = done_rows.count() - len(tasks) + lost
    report(
        "host_network_cut",
        faults=1,
        affected=unfinished,
        lost=lost,
        duplicates=duplicates,
        note=f"{cut_running} running on the cut host; link restored afterwards, "
        f"{host_b.output().count('discarded, the claim was lost')} late outcomes refused, 2 more tasks",
    )
    assert (lost, duplicates) == (0, 0)
    assert {w.rsplit(":", 1)[0] for w in done_rows.values_list("worker", flat=True)} >= {socket.gethostname()}
    cut = TaskResult.objects.filter(task__in=tasks).exclude(status=AttemptStatus.DONE)
    assert cut_running >= 1 and cut.count() == cut_running
    assert set(cut.values_list("status", flat=True)) == {AttemptStatus.TIMEOUT}
    runs = runs_per_label(journal())
    # A handler ran again only after a cut (a cut attempt may have died before its handler began).
    assert all(1 <= runs[t.name] <= 1 + cut.filter(task=t).count() for t in tasks)
