"""Run TaskHub's web server, worker and beat as one supervised group: ``python -m taskhub.supervise`` (``make run``).

1. Each service of the Procfile runs in a process group of its own, with the kernel's parent-death signal
   (``PR_SET_PDEATHSIG``) set to SIGKILL: if the supervisor dies, even by SIGKILL, every service's main process
   dies with it, and their children follow (gunicorn's workers leave when their parent changes, Celery's pool
   processes carry the same death signal). Nothing is left holding the port.
2. A service that exits on its own (crashed, killed) is restarted after 1 s, doubling up to 30 s while it keeps
   failing within a minute of its start; the other services are not touched.
3. SIGTERM, SIGINT (Ctrl-C) and SIGHUP stop every service: SIGTERM to its main process, SIGKILL to its group
   once that exited or after ``--grace`` seconds; then the supervisor exits with status 0 and no error lines.
4. ``--stop-with-parent``: the supervisor itself gets SIGTERM when the process that started it dies (``make``).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_libc = ctypes.CDLL(None, use_errno=True)


def say(message: str) -> None:
    """Print one line of the supervisor's own, on stderr beside the services' logs."""
    print(f"[supervise {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def set_death_signal(sig: int) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux)."""
    if _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _die_with(parent: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        set_death_signal(signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the death signal was set
            os._exit(1)

    return preexec


def read_procfile(path: Path) -> dict[str, str]:
    """Return the ``name: command`` lines of a Procfile, in order."""
    services: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line.strip())
        if not match:
            raise SystemExit(f"{path}:{number}: expected 'name: command', got {line!r}")
        services[match[1]] = match[2]
    return services


@dataclass
class Service:
    """One supervised command and its current process."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    log: Path | None = None

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        output = self.log.open("ab") if self.log else None
        try:
            self.process = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                process_group=0,  # its own group: a Ctrl-C reaches the supervisor only, which stops it in order
                preexec_fn=_die_with(os.getpid()),
            )
        finally:
            if output:
                output.close()
        self.started = time.monotonic()
        self.restart_at = None

    def exited(self) -> int | None:
        """Return the wait status' exit code (negative: signal) once the main process ended, without reaping."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        try:
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped already by someone else: gone, status unknown
            return 0
        if info is None:  # still running
            return None
        return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status

    def signal_group(self, sig: int) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def reap(self) -> int:
        """Kill whatever is left in the group (the main process is a zombie, so its id is not reused) and reap."""
        assert self.process is not None
        self.signal_group(signal.SIGKILL)
        return self.process.wait()


@dataclass
class Supervisor:
    """Start services, restart the ones that exit, stop them all on request."""

    services: list[Service]
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = ROOT
    grace: float = 10.0
    stopping: bool = False

    def start(self) -> None:
        for service in self.services:
            service.start(self.env, self.cwd)
            say(f"{service.name} started (pid {service.process.pid if service.process else '?'})")

    def request_stop(self, signum: int, frame: FrameType | None = None) -> None:
        self.stopping = True

    def install_signal_handlers(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.request_stop)

    def check(self) -> None:
        """Restart each service whose process ended (after its backoff)."""
        now = time.monotonic()
        for service in self.services:
            if service.restart_at is not None:
                if now >= service.restart_at and not self.stopping:
                    service.start(self.env, self.cwd)
                    say(f"{service.name} restarted (pid {service.process.pid if service.process else '?'})")
                continue
            code = service.exited()
            if code is None or self.stopping:
                continue
            service.reap()
            service.failures = service.failures + 1 if now - service.started < 60 else 1
            delay = min(30.0, 2.0 ** (service.failures - 1))
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            say(f"{service.name} stopped ({how}); restarting in {delay:g} s")
            service.restart_at = now + delay

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        """Supervise until a stop signal arrives or ``until()`` is true, then stop everything."""
        try:
            while not self.stopping and not until():
                self.check()
                time.sleep(0.2)
        finally:
            self.stop()

    def stop(self) -> None:
        """SIGTERM every service, wait up to ``grace`` seconds, SIGKILL what is left in each group."""
        self.stopping = True
        # A second Ctrl-C must not interrupt the stop half-way; the handlers come back afterwards.
        handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
        try:
            self._stop_all()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _stop_all(self) -> None:
        running = [s for s in self.services if s.process is not None and s.process.returncode is None]
        for service in running:
            # The main process only: it stops its own children in order (Celery's pool processes killed
            # directly would be logged as errors); whatever is left in its group gets SIGKILL once it exits.
            if service.process is not None:  # always: running holds started services only
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while running and time.monotonic() < deadline:
            for service in [s for s in running if s.exited() is not None]:
                service.reap()
                running.remove(service)
            time.sleep(0.05)
        for service in running:
            say(f"{service.name} did not stop within {self.grace:g} s: killed")
            service.reap()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procfile", type=Path, default=ROOT / "Procfile", help="services to run (default Procfile)")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds a service has to stop (default 10)")
    parser.add_argument("--only", default="", metavar="NAMES", help="comma-separated services to run (default all)")
    parser.add_argument("--stop-with-parent", action="store_true", help="stop when the parent process dies (make)")
    options = parser.parse_args(argv)

    services = read_procfile(options.procfile)
    only = [name.strip() for name in options.only.split(",") if name.strip()] or list(services)
    unknown = [name for name in only if name not in services]
    if unknown:
        parser.error(f"--only: no service {', '.join(unknown)} in {options.procfile} (it has {', '.join(services)})")
    supervisor = Supervisor(
        # sh expands ${PORT:-8000} as the Procfile format allows, then becomes the service (exec).
        [Service(name, ["/bin/sh", "-c", f"exec {services[name]}"]) for name in only],
        cwd=options.procfile.resolve().parent,
        grace=options.grace,
    )
    supervisor.install_signal_handlers()
    if options.stop_with_parent:
        parent = os.getppid()
        set_death_signal(signal.SIGTERM)
        if os.getppid() != parent:
            return 0
    supervisor.start()
    supervisor.run()
    say("stopped " + ", ".join(service.name for service in supervisor.services))
    return 0


if __name__ == "__main__":
    sys.exit(main())
