"""The worker's heartbeat: a bootstep of the Celery worker's main process that keeps its Worker row fresh.

A thread of its own, not Celery's event loop: a slow database then delays the heartbeat only,
never the consumer, and a worker whose main process hangs or dies stops beating, which is what
"offline" must mean. The pool's processes never write the row. Celery's own heartbeats (events)
need ``-E`` and a monitor that listens at all times; this row needs neither.

Imported by taskhub/celery.py before Django is set up: Django modules are imported inside methods.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from celery import bootsteps

logger = logging.getLogger(__name__)

#: How long a clean shutdown waits for the thread's last write.
STOP_WAIT_SECONDS = 5.0


class Heartbeat(bootsteps.StartStopStep):
    """Register the worker when its pool has started, beat every scheduler.worker_heartbeat seconds, mark it stopped."""

    label = "TaskHub heartbeat"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.worker = worker
        self.thread: threading.Thread | None = None
        self.halt = threading.Event()

    def start(self, worker: Any) -> None:
        from django.conf import settings

        interval = float(settings.TASKHUB.scheduler.worker_heartbeat)
        self.thread = threading.Thread(target=self._run, args=(interval,), name="taskhub-heartbeat", daemon=True)
        self.thread.start()

    def stop(self, worker: Any) -> None:
        self.halt.set()
        if self.thread is not None:
            self.thread.join(STOP_WAIT_SECONDS)

    terminate = stop

    def report(self, interval: float) -> Any:
        """Describe the worker now: its pool's processes and its queues may change while it runs."""
        from scheduling.engine.workers import Report

        worker = self.worker
        pool = worker.pool
        info: dict[str, Any] = {}
        try:
            info = pool.info if pool is not None else {}
        except Exception:  # noqa: BLE001 - a pool between restarts has no process list
            info = {}
        processes = [pid for pid in info.get("processes", []) if isinstance(pid, int)]
        return Report(
            name=worker.hostname,
            host=socket.gethostname(),
            pid=os.getpid(),
            pool=type(pool).__module__.rsplit(".", 1)[-1] if pool is not None else "",
            concurrency=int(info.get("max-concurrency") or worker.concurrency or 0),
            processes=processes,
            queues=self._queues(),
            interval=interval,
        )

    def _queues(self) -> list[str]:
        consumer = getattr(self.worker, "consumer", None)
        task_consumer = getattr(consumer, "task_consumer", None)
        if task_consumer is not None:
            return sorted({queue.name for queue in task_consumer.queues})
        return sorted(self.worker.app.amqp.queues.consume_from or self.worker.app.amqp.queues)

    def _run(self, interval: float) -> None:
        from django.db import close_old_connections, connection

        from scheduling.engine import workers

        first, beat_at = True, time.monotonic()
        try:
            while True:
                close_old_connections()
                try:
                    if first:
                        workers.register(self.report(interval))
                        logger.info("worker %s registered (heartbeat every %g s)", self.worker.hostname, interval)
                    else:
                        workers.heartbeat(self.report(interval))
                    first = False
                except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next one
                    logger.warning("worker heartbeat not recorded: %s", str(exc).strip()[:200])
                    connection.close()
                # On a fixed rhythm: a slow write must not stretch the gap between beats past two intervals.
                beat_at = max(beat_at + interval, time.monotonic())
                if self.halt.wait(beat_at - time.monotonic()):
                    break
            try:
                workers.stopped(self.worker.hostname)
            except Exception as exc:  # noqa: BLE001 - then it reads offline two intervals later
                logger.warning("worker shutdown not recorded: %s", str(exc).strip()[:200])
        finally:
            connection.close()
