"""Cron precision and scale: TaskHub's beat beside django-celery-beat's DatabaseScheduler.

One invocation, one database and broker, the same two prefork worker processes, three scenarios
one after another (never two at once):

b) tick cost: with ``--total`` SCHEDULED tasks of which ``--due`` are due, one firing tick
   (``scheduling.engine.firing.fire_due``) in this process before any worker starts; median of 5 after a
   warm-up, split into the firing transaction (to its commit) and the dispatch that runs after the
   commit inside the same call; and the idle tick (nothing due).
a) drift: ``--tasks`` SCHEDULED NOOP tasks on ``* * * * *``, a real ``celery beat`` running
   TaskHubScheduler (as ``make run`` starts it) and the workers, over K minute boundaries.
   Fire drift = attempt committed (observed here by polling every 5 ms) - scheduled second; also
   the tick's ``created_at`` stamp - scheduled second, scheduled second -> RUNNING, duplicates.
c) baseline: ``--periodic`` plain PeriodicTasks on a CrontabSchedule minute='*' each sending the
   raw Celery task ``bench.raw_fire``, run by ``celery beat -S django_celery_beat.schedulers:
   DatabaseScheduler`` for K minutes. TaskHub's own periodic entries are disabled meanwhile and
   no TaskHub task exists. Drift per fire = message sent (stamped by beat) - the boundary it was
   due for; fires still waiting when the window closes count with their drift so far (so the
   baseline's percentiles are lower bounds).

--quick (K = 1; 10,000 / 1,000 tick, 1,000 tasks, 2,000 PeriodicTasks): the baseline takes a natural
minute boundary and is watched for 15 s after it; TaskHub's 1,000 tasks get their first fire on a
whole second set through ``next_fire_at`` just after its beat is ready (the same firing code path
as a boundary), before or after the baseline, whichever ends sooner. About one minute in all.

Usage (from the repository root):
    .venv/bin/python -m bench.cron [--quick]
    TASKHUB_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/taskhub_bench_cron \\
    TASKHUB_BROKER_URL=redis://127.0.0.1:6379/11 .venv/bin/python -m bench.cron
    BENCH_PROFILE=1 ...   prints a cProfile of one firing tick (scenario b)
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from bench import harness  # noqa: E402  (before bench.settings: it notes whether the storage folder is ours)
from bench.common import ROOT, metric, percentiles, wait_for, write_result  # noqa: E402

BENCH_PREFIX = "bench-cron-"  # names of everything this benchmark creates
TICK_BAR_MS = 50.0  # the firing transaction, to its commit (issue "Throughput": both backends)
# The tick with the dispatch after its commit: 100 ms on PostgreSQL + Redis (issue "Throughput"); on the
# embedded default "as now or better", i.e. the 50 ms bar it had before.
TICK_WITH_DISPATCH_BARS_MS = {"postgresql": 100.0, "sqlite": 50.0}
A_START = 8.0  # seconds to start TaskHub's beat before its first boundary
C_PREP = 6.0  # seconds to create the baseline's entries and start its beat, plus 1 s per 1,000 entries
QUICK_WINDOW = 15.0  # seconds the baseline is watched after its boundary in --quick
QUICK_DRAIN = 12.0  # seconds --quick lets the fired runs run (the RUNNING latency is of those started)
QUICK_TASKHUB = 25.0  # seconds TaskHub's scenario takes in --quick (beat start, fire, drain)
DRIFT_BAR_S = 1.0


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def aware(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def next_boundary(after: float) -> float:
    """The first whole minute at or after ``after`` (epoch seconds)."""
    return math.ceil(after / 60) * 60


class Processes:
    """Celery subprocesses in their own sessions, killed with their children whatever happens."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.logdir / f"bench-cron-{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "taskhub", *args],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.running[name] = proc
        return proc

    def adopt(self, name: str, proc: subprocess.Popen) -> None:
        self.running[name] = proc

    def check(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                log = self.logdir / f"bench-cron-{name}.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{name} exited with status {proc.returncode}:\n{tail}")

    def stop(self, name: str) -> None:
        proc = self.running.pop(name, None)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def wait_idle(proc: subprocess.Popen, timeout: float, quiet: float = 0.6) -> None:
    """Wait until a process (start-up, schedule load) stops using CPU for ``quiet`` seconds."""
    stat = Path(f"/proc/{proc.pid}/stat")
    if not stat.exists():
        time.sleep(3)
        return

    def cpu() -> int:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime in clock ticks

    deadline = time.monotonic() + timeout
    last, since = cpu(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} while starting")
        now = cpu()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def say(text: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S.%f}"[:-3], text, flush=True)


def sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))


# --- database set-up ---------------------------------------------------------------------------------


def minute_crontab():
    from django_celery_beat.models import CrontabSchedule

    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="*", hour="*", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    return crontab


def make_tasks(count: int, next_fire: datetime | None, prefix: str) -> None:
    from scheduling.models import Task, TaskType

    crontab = minute_crontab()
    batch = [
        Task(
            name=f"{BENCH_PREFIX}{prefix}-{i}",
            task_type=TaskType.SCHEDULED,
            cron_expr="* * * * *",
            timezone="UTC",
            crontab=crontab,
            next_fire_at=next_fire,
            handler="NOOP",
        )
        for i in range(count)
    ]
    Task.objects.bulk_create(batch, batch_size=2000)


def taskhub_periodic(enabled: bool) -> None:
    """Switch TaskHub's own PeriodicTasks (sweep, reporting) on or off; drop the baseline's."""
    from django.db import connection
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    with connection.cursor() as cursor:  # one DELETE: the ORM's would signal a schedule change per row
        table = connection.ops.quote_name(PeriodicTask._meta.db_table)
        cursor.execute(f"DELETE FROM {table} WHERE name LIKE %s", [f"{BENCH_PREFIX}%"])
    PeriodicTask.objects.exclude(name__startswith=BENCH_PREFIX).update(enabled=enabled)
    PeriodicTasks.update_changed()


# --- b) tick cost --------------------------------------------------------------------------------------


def tick_cost(total: int, due: int, repeats: int = 5) -> dict[str, Any]:
    """Time ``fire_due`` in this process, split into the firing transaction and the dispatch after its commit.

    No worker runs yet: the dispatched messages are purged afterwards.
    """
    from scheduling.engine import dispatcher, firing
    from scheduling.models import Task, TaskResult

    harness.clear_tasks()
    fire_time = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    make_tasks(due, fire_time, "due")
    make_tasks(total - due, fire_time + timedelta(days=1), "idle")
    harness.vacuum()
    now = fire_time + timedelta(milliseconds=500)
    due_tasks = Task.objects.filter(name__startswith=f"{BENCH_PREFIX}due-")
    wake, dispatching = dispatcher.wake, []

    def timed_wake() -> None:  # fire_due hands this to on_commit: it runs after the commit, inside the call
        started = time.perf_counter()
        wake()
        dispatching.append((time.perf_counter() - started) * 1000)

    totals, fired = [], []
    dispatcher.wake = timed_wake
    try:
        for run in range(repeats + 1):  # run 0 warms caches and connections up
            TaskResult.objects.all().delete()
            due_tasks.update(next_fire_at=fire_time, status="PENDING")
            # This reset's dead rows are the bench's own, not the scenario's (autovacuum is off on some
            # machines): without it each repeat walked the one before's (60 ms first, 75-95 ms later).
            harness.vacuum()
            if os.environ.get("BENCH_PROFILE") and run == 1:
                import cProfile
                import pstats

                profile = cProfile.Profile()
                started = time.perf_counter()
                count = profile.runcall(firing.fire_due, now)
                elapsed = time.perf_counter() - started
                print(f"\ncProfile of one firing tick ({due} due of {total}), dispatch after commit included:")
                pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(40)
            else:
                started = time.perf_counter()
                count = firing.fire_due(now)
                elapsed = time.perf_counter() - started
            if run:
                totals.append(elapsed * 1000)
                fired.append(count)
        dispatch = dispatching[1:]
        idle = []
        for _ in range(21):
            started = time.perf_counter()
            assert firing.fire_due(now) == 0
            idle.append((time.perf_counter() - started) * 1000)
    finally:
        dispatcher.wake = wake
    duplicates = TaskResult.objects.filter(fire_time=fire_time).count() - fired[-1]
    harness.clear_tasks()
    harness.purge_broker()  # the dispatched runs are gone: their messages must not reach the workers
    fire = [t - d for t, d in zip(totals, dispatch, strict=True)]
    return {
        "fire_ms": round(median(fire), 1),
        "fire_ms_all": [round(c, 1) for c in fire],
        "dispatch_ms": round(median(dispatch), 1),
        "tick_ms": round(median(totals), 1),
        "tick_ms_all": [round(c, 1) for c in totals],
        "idle_tick_ms": round(median(idle[1:]), 2),
        "fired": fired,
        "duplicates": duplicates,
    }


# --- a) TaskHub drift --------------------------------------------------------------------------------


def taskhub_drift(
    procs: Processes, tasks: int, first: float | None, minutes: int, drain: float | None = None
) -> dict[str, Any]:
    """Fire ``tasks`` SCHEDULED tasks on ``minutes`` boundaries from ``first`` with a real TaskHub beat.

    ``first`` None: the first fire is set (``next_fire_at``) on the second whole second after the beat is
    ready, as when a task is created while beat runs; later fires follow the cron.
    ``drain``: wait at most this many seconds after the last fire for the runs to finish (--quick: running
    1,000 no-ops is the workers' throughput, not the cron's precision); the rest is then dropped.
    """
    from django.db.models import Count

    from scheduling.models import AttemptStatus, Task, TaskResult

    harness.clear_tasks()
    taskhub_periodic(enabled=True)
    ours_tasks = Task.objects.filter(name__startswith=BENCH_PREFIX)
    make_tasks(tasks, aware(first) if first else None, "drift")
    harness.vacuum()
    beat = procs.start("taskhub-beat", "beat", "-S", "scheduling.engine.beat:TaskHubScheduler", "--loglevel", "INFO")
    wait_idle(beat, timeout=max(5.0, (first or time.time() + 30) - time.time() - 1))
    if first is None:
        first = math.ceil(time.time() + 1.5)
        ours_tasks.update(next_fire_at=aware(first))
    elif time.time() > first - 0.5:
        say(f"warning: TaskHub beat was still starting {first - time.time():.1f} s before the first fire")
    fires = [first] + [next_boundary(first + 1) + 60 * k for k in range(minutes - 1)]
    ours = TaskResult.objects.filter(task__name__startswith=BENCH_PREFIX)
    say(f"TaskHub beat ready; {tasks} tasks fire at {', '.join(f'{aware(f):%H:%M:%S}' for f in fires)}")
    visible: dict[float, float] = {}
    for fire in fires:
        sleep_until(fire - 0.3)
        procs.check()
        moment = aware(fire)
        deadline = fire + 60
        while not ours.filter(fire_time=moment).exists():
            if time.time() > deadline:
                raise TimeoutError(f"no TaskHub fire for {moment} within 60 s")
            time.sleep(0.005)
        visible[fire] = time.time()
        say(f"TaskHub fire {moment:%H:%M:%S} committed after {visible[fire] - fire:.3f} s")
    # No further fire while the runs drain (beat keeps dispatching them): as if the tasks were paused.
    ours_tasks.update(next_fire_at=None)
    watched = [aware(f) for f in fires]
    done = ours.filter(fire_time__in=watched, status=AttemptStatus.DONE)
    deadline = time.monotonic() + (drain or 300)
    while done.count() < tasks * len(fires):  # polled gently: this process must not slow the workers down
        procs.check()
        if time.monotonic() > deadline:
            if drain:
                break
            raise TimeoutError("TaskHub's fired runs did not finish within 300 s")
        time.sleep(0.25)
    procs.stop("taskhub-beat")  # no more dispatch
    say(f"TaskHub runs DONE: {done.count()} of {tasks * len(fires)}")

    rows = list(ours.filter(attempt=1, fire_time__in=watched).values_list("fire_time", "created_at", "started_at"))
    committed, stamped, running = [], [], []
    tick_seconds: dict[float, float] = {}
    per_fire: dict[float, int] = defaultdict(int)
    for fire_time, created_at, started_at in rows:
        if fire_time is None:  # never: filtered by fire_time__in
            continue
        fire = epoch(fire_time)
        per_fire[fire] += 1
        committed.append(visible[fire] - fire)
        stamped.append(epoch(created_at) - fire)
        if started_at:
            running.append(epoch(started_at) - fire)
        tick_seconds[fire] = visible[fire] - fire  # scheduled second -> all its runs committed
    duplicates = ours.values("task_id", "fire_time").annotate(n=Count("pk")).filter(n__gt=1).count()
    fires_per_s = sum(per_fire.values()) / sum(tick_seconds.values())
    if len(running) < len(rows):  # drain cut short: nothing of this scenario may run during the next one
        harness.clear_tasks()
        harness.purge_broker()
    return {
        "fires": len(rows),
        "expected": tasks * len(fires),
        "per_fire": {aware(f).isoformat(): n for f, n in sorted(per_fire.items())},
        "drift_committed_s": percentiles(committed, 3),
        "drift_created_at_s": percentiles(stamped, 3),
        "fire_to_running_s": percentiles(running, 3),  # of the runs started (all unless drain cut it short)
        "fire_to_committed_s": {aware(f).isoformat(): round(s, 3) for f, s in sorted(tick_seconds.items())},
        "fires_per_s": round(fires_per_s, 1),
        "duplicates": duplicates,
    }


# --- c) django-celery-beat baseline ------------------------------------------------------------------


def baseline(procs: Processes, entries: int, prep: float, window: float) -> dict[str, Any]:
    """Run ``entries`` PeriodicTasks due every minute under DatabaseScheduler for ``window`` s.

    The first boundary is the first one at least ``prep`` seconds away (set-up and schedule load).
    """
    from django.conf import settings
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    from bench.benchapp.tasks import FIRES_FILE

    harness.clear_tasks()
    taskhub_periodic(enabled=False)
    crontab = minute_crontab()
    first = next_boundary(time.time() + prep)
    last_run = first - 30  # after the previous boundary: the first fire is due at ``first``
    PeriodicTask.objects.bulk_create(
        [
            PeriodicTask(
                name=f"{BENCH_PREFIX}{i}",
                task="bench.raw_fire",
                crontab=crontab,
                args=f"[{i}]",
                last_run_at=aware(last_run),
            )
            for i in range(entries)
        ],
        batch_size=2000,
    )
    PeriodicTasks.update_changed()
    harness.vacuum()
    fires_file = Path(settings.STORAGE_DIR) / FIRES_FILE
    fires_file.unlink(missing_ok=True)
    beat = procs.start(
        "dcb-beat", "beat", "-S", "django_celery_beat.schedulers:DatabaseScheduler", "--loglevel", "INFO"
    )
    wait_idle(beat, timeout=max(5.0, first - time.time() - 1))
    if time.time() > first - 0.5:
        print(f"warning: DatabaseScheduler was still loading {first - time.time():.1f} s before its boundary")
    say(f"DatabaseScheduler ready with {entries} entries due at {aware(first):%H:%M:%S}")
    end = first + window
    while time.time() < end:
        procs.check()
        time.sleep(min(1.0, max(0.0, end - time.time())))
    procs.stop("dcb-beat")
    say("DatabaseScheduler stopped")

    def lines() -> int:
        return fires_file.read_bytes().count(b"\n") if fires_file.exists() else 0

    # The workers have nothing else to do: let them finish what beat sent before it stopped.
    count, stable = lines(), time.monotonic()
    while time.monotonic() - stable < 1.0:
        time.sleep(0.2)
        if (now := lines()) != count:
            count, stable = now, time.monotonic()
    taskhub_periodic(enabled=True)

    sends: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for line in fires_file.read_text().splitlines() if fires_file.exists() else []:
        entry, sent, received = line.split()
        sends[int(entry)].append((float(sent) if sent != "None" else float(received), float(received)))
    return summarize_baseline(sends, entries, last_run, first, end)


def summarize_baseline(
    sends: dict[int, list[tuple[float, float]]], entries: int, last_run: float, first: float, end: float
) -> dict[str, Any]:
    """Drift per fire from (sent, received) per entry: each is due at the first boundary after its last run.

    crontab(minute='*') ignores seconds: an entry last run at 12:00:41 is due at 12:01:00; one sent late
    at 12:01:10 for 12:01 is next due at 12:02 (the 12:01 fire is then never sent: coalesced).
    """
    fires = []  # (due, sent, received)
    waiting = []  # due boundaries of fires not sent when the window closed
    for entry in range(entries):
        previous = last_run
        for sent, received in sorted(sends.get(entry, [])):
            due = math.floor(previous / 60) * 60 + 60
            fires.append((due, sent, received))
            previous = sent
        due = math.floor(previous / 60) * 60 + 60
        if due <= end:
            waiting.append(due)
    # Sustained rate: fires over the time beat was busy sending (from each boundary to its minute's last send).
    last_in_minute: dict[float, float] = {}
    for _, sent, _ in fires:
        minute = math.floor(sent / 60) * 60
        last_in_minute[minute] = max(last_in_minute.get(minute, minute), sent)
    busy = sum(last - minute for minute, last in last_in_minute.items())
    per_minute = []
    for k in range(max(1, math.ceil((end - first) / 60))):
        boundary = first + 60 * k
        drifts = [sent - due for due, sent, _ in fires if boundary <= sent < boundary + 60]
        per_minute.append(
            {
                "minute": k + 1,
                "boundary": aware(boundary).isoformat(),
                "sent": len(drifts),
                "sent_for_this_boundary": sum(1 for due, _, _ in fires if due == boundary),
                "drift_of_sends_in_this_minute_s": percentiles(drifts, 1) if drifts else None,
            }
        )
    sent_drift = [sent - due for due, sent, _ in fires]
    censored = sent_drift + [end - due for due in waiting]
    return {
        "entries": entries,
        "window_s": round(end - first, 1),
        "fires_sent": len(fires),
        "fires_due_in_window": len(fires) + len(waiting),
        "still_waiting_at_end": len(waiting),
        "fires_per_s": round(len(fires) / busy, 1) if busy else None,
        "drift_sent_s": percentiles(sent_drift, 1) if fires else None,
        "drift_received_s": percentiles([r - due for due, _, r in fires], 1) if fires else None,
        "drift_incl_waiting_s": percentiles(censored, 1) if censored else None,
        "per_minute": per_minute,
    }


# --- main ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one minute boundary (about 1 minute)")
    parser.add_argument("--minutes", type=int, help="minute boundaries to watch (full: 3, quick: 1)")
    parser.add_argument("--tasks", type=int, help="SCHEDULED tasks for the drift (1000)")
    parser.add_argument("--total", type=int, help="SCHEDULED tasks for the tick cost (full 100000, quick 10000)")
    parser.add_argument("--due", type=int, help="of which due in the tick (1000)")
    parser.add_argument("--periodic", type=int, help="django-celery-beat PeriodicTasks (full 10000, quick 2000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (prefork concurrency)")
    parser.add_argument("--tick-only", action="store_true", help="only the tick cost, printed (with BENCH_PROFILE)")
    args = parser.parse_args()
    quick = args.quick
    minutes = args.minutes or (1 if quick else 3)
    tasks = args.tasks or 1000
    total = args.total or (10_000 if quick else 100_000)
    due = args.due or 1000
    periodic = args.periodic or (2000 if quick else 10_000)
    window = QUICK_WINDOW if quick else 60.0 * minutes

    # Ctrl-C and a TERM from bench/run.py both unwind through the ``finally`` that kills the subprocesses.
    harness.setup_django()  # also: migrate, no task left, the bench queue purged
    from django.conf import settings

    if args.tick_only:
        say(f"tick cost, {due} due of {total}: {tick_cost(total, due)}")
        return
    started = time.monotonic()
    load_before = os.getloadavg()
    procs = Processes(Path(settings.STORAGE_DIR))
    results: dict[str, Any] = {}
    try:
        # The tick cost first, alone: no worker may take what its ticks dispatch (purged after it).
        results["tick"] = tick_cost(total, due)
        say(f"tick cost: {results['tick']}")
        procs.adopt("worker", harness.start_worker(args.workers, "bench-cron-worker.log"))
        warm = _warm_up(procs)

        def taskhub() -> None:
            warm()
            first = None if quick else next_boundary(time.time() + A_START)
            results["taskhub"] = taskhub_drift(procs, tasks, first, minutes, QUICK_DRAIN if quick else None)

        c_prep = C_PREP + periodic / 1000  # create the entries, start beat, load them
        taskhub_first = not quick or plan_quick(time.time(), c_prep, window)
        if taskhub_first:
            taskhub()
        warm()
        results["baseline"] = baseline(procs, periodic, c_prep, window)
        if not taskhub_first:
            taskhub()
    finally:
        procs.stop_all()
    drift, base, tick_result = results["taskhub"], results["baseline"], results["tick"]
    params = {
        "minutes": minutes,
        "drift_tasks": tasks,
        "tick_total": total,
        "tick_due": due,
        "periodic_tasks": periodic,
        "baseline_window_s": window,
        "worker_processes": args.workers,
        "order": "tick cost, TaskHub, baseline" if taskhub_first else "tick cost, baseline, TaskHub",
        "seconds": round(time.monotonic() - started, 1),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    print(f"TaskHub drift: {drift}")
    print(f"django-celery-beat: {base}")
    _report(quick, params, tick_result, drift, base)


def _warm_up(procs: Processes):
    """Send the workers a few raw no-ops now; the returned call waits until they ran (start-up not measured)."""
    from django.conf import settings

    from bench.benchapp.tasks import raw_noop

    done = Path(settings.STORAGE_DIR) / "raw-done"
    done.unlink(missing_ok=True)
    for _ in range(4):
        raw_noop.apply_async()

    def started() -> bool:
        procs.check()  # raises if a process died
        return done.exists() and done.stat().st_size >= 4

    def wait() -> None:
        wait_for(started, 60, "worker start-up")

    return wait


def plan_quick(now: float, c_prep: float, window: float) -> bool:
    """Whether TaskHub's scenario goes before the baseline's, so that the run ends soonest.

    The baseline needs a natural minute boundary (crontab); TaskHub's first fire does not (next_fire_at):
    when the next boundary is far enough, TaskHub's scenario fills the wait for it.
    """
    taskhub_first = next_boundary(now + QUICK_TASKHUB + c_prep) + window
    baseline_first = next_boundary(now + c_prep) + window + QUICK_TASKHUB
    return taskhub_first <= baseline_first


def _report(quick: bool, params: dict[str, Any], tick: dict, drift: dict, base: dict) -> None:
    tasks, total, due = params["drift_tasks"], params["tick_total"], params["tick_due"]
    from django.db import connection

    dispatch_bar = TICK_WITH_DISPATCH_BARS_MS.get(connection.vendor, TICK_WITH_DISPATCH_BARS_MS["sqlite"])
    periodic, window = params["periodic_tasks"], params["baseline_window_s"]
    hub_p99 = drift["drift_committed_s"]["p99"]
    started = drift["fire_to_running_s"]["samples"]
    started = f"all {started}" if started == drift["fires"] else f"{started} of {drift['fires']} started"
    base_drift = base["drift_incl_waiting_s"] or {"p50": None, "p99": None}
    fire_ratio = round(drift["fires_per_s"] / base["fires_per_s"], 1) if base["fires_per_s"] else None
    drift_ratio = round(base_drift["p99"] / hub_p99, 1) if base_drift["p99"] and hub_p99 > 0 else None
    metrics = [
        metric(
            f"cron fire drift p50 ({tasks} tasks x {len(drift['per_fire'])} fires)",
            drift["drift_committed_s"]["p50"],
            "s",
            baseline="django-celery-beat p50 (>=)",
            baseline_value=base_drift["p50"],
        ),
        metric(
            "cron fire drift p99 (fire = attempt committed)",
            hub_p99,
            "s",
            bar=f"<= {DRIFT_BAR_S} s",
            ok=hub_p99 <= DRIFT_BAR_S,
            baseline="django-celery-beat p99 (>=)",
            baseline_value=base_drift["p99"],
            ratio=drift_ratio,
        ),
        metric("cron fire drift p99 (tick's created_at stamp)", drift["drift_created_at_s"]["p99"], "s"),
        metric(f"cron scheduled second -> RUNNING p50 ({started} runs)", drift["fire_to_running_s"]["p50"], "s"),
        metric(f"cron scheduled second -> RUNNING p99 ({started} runs)", drift["fire_to_running_s"]["p99"], "s"),
        metric("cron duplicate fires", drift["duplicates"], "fires", bar="0", ok=drift["duplicates"] == 0),
        metric(
            "cron missed fires",
            drift["expected"] - drift["fires"],
            "fires",
            bar="0",
            ok=drift["fires"] == drift["expected"],
        ),
        metric(
            "cron fires/s (scheduled second -> committed)",
            drift["fires_per_s"],
            "fires/s",
            baseline="django-celery-beat sustained",
            baseline_value=base["fires_per_s"],
            ratio=fire_ratio,
        ),
        metric(
            f"beat tick: firing {due} due of {total} SCHEDULED (to commit)",
            tick["fire_ms"],
            "ms",
            bar=f"<= {TICK_BAR_MS:.0f} ms",
            ok=tick["fire_ms"] <= TICK_BAR_MS,
        ),
        metric(
            "beat tick incl. the dispatch after its commit",
            tick["tick_ms"],
            "ms",
            bar=f"<= {dispatch_bar:.0f} ms",
            ok=tick["tick_ms"] <= dispatch_bar,
        ),
        metric(f"beat tick, nothing due of {total}", tick["idle_tick_ms"], "ms"),
        metric(
            f"django-celery-beat fires sent in {window:.0f} s ({periodic} entries)",
            base["fires_sent"],
            "fires",
            baseline="due in the window",
            baseline_value=base["fires_due_in_window"],
        ),
    ]
    for minute in base["per_minute"]:
        if minute["drift_of_sends_in_this_minute_s"]:
            metric_row = metric(
                f"django-celery-beat drift p99, minute {minute['minute']}",
                minute["drift_of_sends_in_this_minute_s"]["p99"],
                "s",
            )
            metrics.append(metric_row)
    write_result(
        "cron",
        quick=quick,
        params=params,
        metrics=metrics,
        series={"tick": tick, "taskhub": drift, "django_celery_beat": base},
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        harness.cleanup()
