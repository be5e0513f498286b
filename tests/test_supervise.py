"""`make run`'s supervised group, with the real processes: nothing survives it, crashes are restarted, slow
clients do not stall the web, stop signals stop everything quietly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskhub.supervise import Service, Supervisor, read_procfile
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's"),
    pytest.mark.embedded_only,  # processes and signals: the same on every backend (`make run`'s default is embedded)
]
# Lines no clean stop may print (gunicorn, Celery, Python and make's own error forms).
ERROR_LINE = re.compile(r"ERROR|CRITICAL|Traceback|Exception|make: \*\*\*|exited with 'signal", re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def marked(marker: str) -> dict[int, str]:
    """Every live process (not a zombie) whose environment carries ``marker``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"TASKHUB_SUPERVISE_TEST={marker}".encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def answers(port: int, path: str = "/admin/login/", timeout: float = 5) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


class Group:
    """A supervised group started like `make run` (or the supervisor alone), its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.marker = uuid.uuid4().hex
        self.port = free_port()
        self.log = log
        self.handle = log.open("wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**env, "PORT": str(self.port), "TASKHUB_SUPERVISE_TEST": self.marker},
            stdin=subprocess.DEVNULL,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives `make run`
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def processes(self) -> dict[int, str]:
        return marked(self.marker)

    def pids_of(self, service: str) -> list[int]:
        pattern = {"web": "gunicorn", "worker": "celery -A taskhub worker", "beat": "celery -A taskhub beat"}[service]
        return sorted(pid for pid, cmd in self.processes().items() if pattern in cmd)

    def wait_ready(self, services: tuple[str, ...] = ("web", "worker", "beat")) -> None:
        """Wait until every service is up: the web answers, the worker's pool and beat are running."""

        def ready() -> bool:
            text = self.output()
            if self.popen.poll() is not None:
                raise RuntimeError(f"the group exited early:\n{text[-4000:]}")
            return (
                ("web" not in services or (len(self.pids_of("web")) >= 3 and answers(self.port)))
                and ("worker" not in services or ("ready." in text and len(self.pids_of("worker")) >= 3))
                and ("beat" not in services or "beat: Starting" in text)
            )

        wait_until(ready, timeout=120, interval=0.5)

    def close(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        for pid in self.processes():  # never leave anything behind, even when a test failed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.handle.close()


@pytest.fixture
def group(celery_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Group]]:
    started: list[Group] = []

    def start(*args: str, make: bool = False) -> Group:
        if make:  # `make run` without its install and migrate steps (the test database is migrated)
            argv = ["make", "--no-print-directory", "-o", "admin-user", "run"]
        else:
            argv = [sys.executable, "-m", "taskhub.supervise", *args]
        started.append(Group(argv, celery_env, tmp_path / f"group{len(started)}.log"))
        return started[-1]

    yield start
    for each in started:
        each.close()


def test_procfile_and_make_run_start_the_three_services_through_the_supervisor() -> None:
    assert list(read_procfile(ROOT / "Procfile")) == ["web", "worker", "beat"]
    recipe = subprocess.run(
        ["make", "-n", "-o", "admin-user", "run"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "-m taskhub.supervise --stop-with-parent" in recipe and "honcho" not in recipe


def test_a_service_that_keeps_crashing_is_restarted_with_a_growing_delay(capsys: pytest.CaptureFixture[str]) -> None:
    supervisor = Supervisor([Service("crasher", ["/bin/sh", "-c", "exit 3"])], grace=1)
    supervisor.start()
    deadline = time.monotonic() + 9  # restarts near 1, 3 and 7 s; the next would be near 15 s
    supervisor.run(until=lambda: time.monotonic() > deadline)
    err = capsys.readouterr().err
    assert "crasher stopped (exit status 3); restarting in 1 s" in err
    assert "crasher stopped (exit status 3); restarting in 2 s" in err
    assert "crasher stopped (exit status 3); restarting in 4 s" in err
    assert err.count("crasher restarted") == 3


@pytest.mark.parametrize("target", ["group", "supervisor"])
def test_sigkill_of_make_runs_process_group_leaves_nothing_running(group: Callable[..., Group], target: str) -> None:
    """SIGKILL of the whole group (make and the supervisor), or of the supervisor alone: nothing survives."""
    run = group(make=True)
    run.wait_ready()
    before = run.processes()
    assert len(before) >= 8, before  # make, supervisor, gunicorn master + 2 workers, worker + 2 pool, beat
    if target == "group":
        os.killpg(run.popen.pid, signal.SIGKILL)
    else:
        os.kill(next(pid for pid, cmd in before.items() if "taskhub.supervise" in cmd), signal.SIGKILL)
    wait_until(lambda: not run.processes(), timeout=15, interval=0.2)

    # Nothing listens on the port: a second `make run` can start (gunicorn binds with SO_REUSEADDR too, which
    # still fails while any socket listens there).
    def port_free() -> bool:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", run.port))
                probe.listen()
            except OSError:
                return False
        return True

    try:  # gunicorn itself retries a busy port for 5 s, so a closing socket's last moments do not count
        wait_until(port_free, timeout=5, interval=0.2)
    except AssertionError:
        ss = subprocess.run(["ss", "-tanp"], capture_output=True, text=True).stdout
        raise AssertionError([line for line in ss.splitlines() if f":{run.port}" in line]) from None


def test_sigkill_of_make_alone_stops_the_group(group: Callable[..., Group]) -> None:
    """`kill -9` of make's pid only: the supervisor gets its parent-death signal and stops everything."""
    run = group(make=True)
    run.wait_ready()
    os.kill(run.popen.pid, signal.SIGKILL)
    wait_until(lambda: not run.processes(), timeout=30, interval=0.2)


@pytest.mark.parametrize(
    ("sig", "to_group"),
    [
        pytest.param(signal.SIGINT, True, id="ctrl-c"),  # the terminal signals the whole foreground group
        pytest.param(signal.SIGTERM, False, id="sigterm"),
        pytest.param(signal.SIGHUP, True, id="sighup"),  # the terminal closed
    ],
)
def test_stop_signals_stop_everything_quietly(group: Callable[..., Group], sig: int, to_group: bool) -> None:
    run = group(make=True)
    run.wait_ready()
    if to_group:
        os.killpg(run.popen.pid, sig)
    else:  # the supervisor's pid, as `kill PID` or systemd would
        supervisor = next(pid for pid, cmd in run.processes().items() if "taskhub.supervise" in cmd)
        os.kill(supervisor, sig)
    before = len(run.output())
    # One sent to the supervisor alone ends in a clean exit of both. After a signal to the whole group, make dies
    # by it when it handles the signal before its child has exited, or else reports the supervisor's clean 0.
    assert run.popen.wait(timeout=60) in ((-sig, 0) if to_group else (0,))
    wait_until(lambda: not run.processes(), timeout=15, interval=0.2)
    after = run.output()[before:]
    assert not [line for line in after.splitlines() if ERROR_LINE.search(line)], after
    assert "stopped web, worker, beat" in after


@pytest.mark.parametrize("service", ["worker", "beat"])
def test_a_crashed_service_is_restarted_without_stopping_the_web(group: Callable[..., Group], service: str) -> None:
    run = group()
    run.wait_ready()
    web = run.pids_of("web")
    main = min(run.pids_of(service))  # its main process: the pool's processes are its children
    os.kill(main, signal.SIGKILL)
    # The web keeps answering while the crashed service comes back with a new process.
    deadline = time.monotonic() + 60
    while not (run.pids_of(service) and main not in run.pids_of(service) and f"{service} restarted" in run.output()):
        assert answers(run.port), "the web stopped answering"
        assert time.monotonic() < deadline, run.output()[-3000:]
        time.sleep(0.3)
    assert f"{service} stopped (killed by SIGKILL); restarting in 1 s" in run.output()
    wait_until(lambda: run.output().count("ready." if service == "worker" else "beat: Starting") >= 2, timeout=90)
    assert run.pids_of("web") == web and answers(run.port), run.output()[-3000:]


def test_the_web_serves_others_while_slow_clients_dribble_headers(group: Callable[..., Group]) -> None:
    """Six clients send their headers a byte every 0.2 s (longer than the test); another request is served at once."""
    run = group("--only", "web")
    run.wait_ready(("web",))
    stop = threading.Event()
    slow = []
    for _ in range(6):
        sock = socket.create_connection(("127.0.0.1", run.port), timeout=5)
        sock.sendall(b"GET /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow.append(sock)

    def dribble() -> None:
        while not stop.is_set():
            for sock in slow:
                try:
                    sock.sendall(b"X")  # part of a header line that never ends
                except OSError:
                    pass
            stop.wait(0.2)

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        time.sleep(1.5)  # every slow client holds a connection (a sync worker each, were they sync)
        timings = []
        for _ in range(3):
            started = time.monotonic()
            assert answers(run.port, timeout=10)
            timings.append(time.monotonic() - started)
        assert max(timings) < 2.0, timings
        # The slow clients are still connected, still unanswered: they were not simply dropped.
        for sock in slow:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        stop.set()
        thread.join()
        for sock in slow:
            sock.close()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("sig", "to_group"),
    [
        pytest.param(signal.SIGINT, True, id="ctrl-c"),
        pytest.param(signal.SIGTERM, False, id="sigterm"),
        pytest.param(signal.SIGHUP, True, id="sighup"),
    ],
)
def test_make_demo_stops_everything_it_started_quietly(tmp_path: Path, sig: int, to_group: bool) -> None:
    """`make demo` (python -m demo) started its fakes, web, worker and beat; a stop signal ends them all."""
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKHUB_", "DJANGO_"))}
    env.update(TASKHUB_DEMO_DIR=str(tmp_path / "demo"), TASKHUB_SUPERVISE_TEST=marker, PYTHONUNBUFFERED="1")
    log = tmp_path / "demo.out"
    with log.open("wb") as handle:
        demo = subprocess.Popen(
            [sys.executable, "-m", "demo", "--port", str(free_port())],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            worker_log = tmp_path / "demo" / "logs" / "worker.log"

            def up() -> bool:
                assert demo.poll() is None, log.read_text()[-3000:]
                return "admin is up" in log.read_text() and worker_log.exists() and "ready." in worker_log.read_text()

            wait_until(up, timeout=150, interval=0.5)
            assert len(marked(marker)) >= 8  # demo, gunicorn master + 2, worker + 2 pool, beat
            before = len(log.read_text())
            os.killpg(demo.pid, sig) if to_group else os.kill(demo.pid, sig)
            assert demo.wait(timeout=60) == 0
            wait_until(lambda: not marked(marker), timeout=15, interval=0.2)
            after = log.read_text()[before:]
            assert not [line for line in after.splitlines() if ERROR_LINE.search(line)], after
            assert "stopping web, worker, beat and the fake servers" in after
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait()
            for pid in marked(marker):
                os.kill(pid, signal.SIGKILL)
