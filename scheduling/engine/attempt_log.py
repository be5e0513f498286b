"""Per-attempt logs: what a handler logs through ``context.logger`` is kept with its attempt.

The worker buffers the lines in memory and writes them to the attempt's one ``AttemptLog`` row at
most every :data:`FLUSH_SECONDS` (and at the end), never one row or one write per line. The stored
text is bounded to :data:`MAX_BYTES`: the oldest lines are dropped and a marker line at the top says
how many. Every line is scrubbed of secrets (configuration secrets and the task's secret parameters)
before it is kept, with the same function that scrubs errors and tracebacks.

A running attempt's log is readable while it runs: a background thread, started by the attempt's first
line, flushes it every :data:`FLUSH_SECONDS` when lines are waiting, so a handler that logs once and
then blocks on a long call still shows that line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from scheduling.engine import clock
from scheduling.models import FINISHED, AttemptLog, AttemptStatus, TaskResult
from taskhub import scrubbing

logger = logging.getLogger(__name__)

#: The most a stored attempt log holds (UTF-8 bytes, the marker line included).
MAX_BYTES = 1024 * 1024
#: A single line longer than this is cut (the rest of the log must not be dropped for one line).
MAX_LINE_BYTES = 16 * 1024
#: How often a running attempt's new lines are written.
FLUSH_SECONDS = 1.0
#: How long the attempt's final write waits for a flusher's write under way (then gives the lines up).
FINAL_WAIT_SECONDS = 10.0
FORMAT = "%(asctime)s %(levelname)s %(message)s"


def scrub(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """The one place attempt logs are scrubbed: the same rule as errors and tracebacks.

    ``secrets`` are the task's own; the configuration's secrets are always added (taskhub.scrubbing).
    """
    return scrubbing.scrub_text(text, secrets)


def marker(dropped_lines: int, dropped_bytes: int) -> str:
    return (
        f"[... {dropped_lines} earlier line(s) ({dropped_bytes} bytes) dropped: "
        f"an attempt keeps the last {MAX_BYTES // 1024} KiB of its log ...]\n"
    )


def _cut(line: str) -> str:
    data = line.encode("utf-8")
    if len(data) <= MAX_LINE_BYTES:
        return line
    head = data[:MAX_LINE_BYTES].decode("utf-8", errors="ignore")
    return f"{head} [... line cut: {len(data)} bytes]\n"


class AttemptLogBuffer(logging.Handler):
    """Collect an attempt's formatted, scrubbed log lines; write the bounded tail to its AttemptLog row."""

    def __init__(self, result_id: int, secrets: list[str] | tuple[str, ...]) -> None:
        super().__init__()
        self.result_id = result_id
        self.secrets = tuple(secrets)
        formatter = logging.Formatter(FORMAT)
        formatter.converter = time.gmtime  # the same time on every host, whatever its time zone
        formatter.default_msec_format = "%s.%03d UTC"
        self.setFormatter(formatter)
        self._lines: deque[tuple[str, int]] = deque()  # (line, UTF-8 bytes), the kept tail
        self._bytes = 0
        self._total_lines = 0
        self._dropped_lines = 0
        self._dropped_bytes = 0
        self._dirty = False
        self._state = threading.Lock()  # guards the buffer (handler thread vs flusher thread)
        self._flushing = threading.Lock()  # one write at a time
        #: Called once, with the first line (outside the lock): starts the live flusher (see capture).
        self.on_first_line: Callable[[], None] | None = None

    # -- collecting ------------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = _cut(scrub(self.format(record), self.secrets).rstrip("\n") + "\n")
        except Exception:  # noqa: BLE001 - logging must never raise into the handler
            self.handleError(record)
            return
        size = len(line.encode("utf-8"))
        with self._state:
            first, self.on_first_line = self.on_first_line, None
            self._lines.append((line, size))
            self._bytes += size
            self._total_lines += 1
            self._dirty = True
            # Keep room for the marker line so the stored text stays within MAX_BYTES.
            while self._bytes > MAX_BYTES - 200 and len(self._lines) > 1:
                _, dropped = self._lines.popleft()
                self._bytes -= dropped
                self._dropped_lines += 1
                self._dropped_bytes += dropped
        if first is not None:
            first()

    def stop_live(self) -> None:
        """No flusher starts from now on (the attempt is over)."""
        with self._state:
            self.on_first_line = None

    def text(self) -> str:
        with self._state:
            return self._text_locked()

    def _text_locked(self) -> str:
        head = marker(self._dropped_lines, self._dropped_bytes) if self._dropped_lines else ""
        return head + "".join(line for line, _ in self._lines)

    # -- writing ---------------------------------------------------------------------------------

    def write(self, *, wait: float = FINAL_WAIT_SECONDS) -> bool:
        """Write the kept tail if lines arrived since the last write; True if something was written.

        An attempt that logged nothing writes no row (and costs no statement). ``wait``: how long to wait for
        a write already under way (the flusher's); a flusher stuck on a dead connection must never hold up
        the attempt's outcome, so past that the lines since the last write are given up, with a warning.
        """
        if not self._flushing.acquire(timeout=wait):
            if wait:
                logger.warning("attempt %s: log not written (an earlier write is stuck)", self.result_id)
            return False
        try:
            with self._state:
                if not self._dirty:
                    return False
                text = self._text_locked()
                fields = {
                    "text": text,
                    "lines": self._total_lines,
                    "dropped_lines": self._dropped_lines,
                    "updated_at": clock.now(),
                }
                self._dirty = False
            try:
                if not AttemptLog.objects.filter(result_id=self.result_id).update(**fields):
                    try:
                        with transaction.atomic():
                            AttemptLog.objects.create(result_id=self.result_id, **fields)
                    except IntegrityError:  # the attempt was deleted meanwhile (or a row appeared): give up
                        AttemptLog.objects.filter(result_id=self.result_id).update(**fields)
            except Exception:
                with self._state:
                    self._dirty = True  # try again at the next flush
                raise
            return True
        finally:
            self._flushing.release()


class _Flusher(threading.Thread):
    """Write a running attempt's new lines every FLUSH_SECONDS, on its own database connection."""

    def __init__(self, buffer: AttemptLogBuffer) -> None:
        super().__init__(name=f"attempt-log-{buffer.result_id}", daemon=True)
        self.buffer = buffer
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.wait(FLUSH_SECONDS):
                try:
                    self.buffer.write(wait=0)  # a write under way (the attempt's own) is not waited for
                except Exception as exc:  # noqa: BLE001 - the final write from the attempt's thread retries
                    logger.warning("attempt %s: log not written yet (%s)", self.buffer.result_id, exc)
                    connection.close()
        finally:
            connection.close()  # this thread's connection

    def stop(self) -> None:
        self.buffer.stop_live()
        self.stopping.set()
        if self.ident is not None:  # started (by the attempt's first line)
            self.join(timeout=FLUSH_SECONDS * 10)


@contextmanager
def capture(
    result_id: int, handler_tag: str, secrets: list[str] | tuple[str, ...], *, live: bool
) -> Iterator[tuple[logging.Logger, AttemptLogBuffer]]:
    """Give a handler its ``context.logger``: a child of ``taskhub.handler.<tag>`` that also feeds the buffer.

    The logger is not registered with the logging module (one per attempt would pile up there); its
    parent gives it the configured level and passes its records on to the console and file handlers.
    ``live``: flush from a background thread while the attempt runs (the worker); without it
    (in-process runs) lines are written at the end. The caller writes the final state with
    :meth:`AttemptLogBuffer.write` after the handler returned.
    """
    buffer = AttemptLogBuffer(result_id, secrets)
    attempt_logger = logging.Logger(f"taskhub.handler.{handler_tag}")
    attempt_logger.parent = logging.getLogger(f"taskhub.handler.{handler_tag}")
    attempt_logger.addHandler(buffer)
    flusher = _Flusher(buffer) if live else None
    if flusher is not None:
        # Started by the first line: an attempt that logs nothing (most) costs no thread and no connection.
        buffer.on_first_line = flusher.start
    try:
        yield attempt_logger, buffer
    finally:
        if flusher is not None:
            flusher.stop()
        attempt_logger.removeHandler(buffer)


def payload(result: TaskResult) -> dict[str, Any]:
    """One attempt's stored log and state, as the API and the admin show it (empty when it logged nothing)."""
    row = AttemptLog.objects.filter(result_id=result.pk).first()
    return {
        "task": result.task_id,
        "attempt_id": result.pk,
        "attempt": result.attempt,
        "status": result.status,
        "finished": result.status in FINISHED,
        "text": row.text if row else "",
        "lines": row.lines if row else 0,
        "dropped_lines": row.dropped_lines if row else 0,
        "updated_at": row.updated_at if row else None,
    }


def shown_attempt(attempts: list[TaskResult]) -> TaskResult | None:
    """The attempt whose log the task page shows: the newest that started (running or finished)."""
    for result in attempts:  # newest first
        if result.started_at is not None or result.status == AttemptStatus.RUNNING:
            return result
    return None


def admin_context(result: TaskResult | None) -> dict[str, Any] | None:
    """What templates/admin/scheduling/_attempt_log.html needs for one attempt (None: nothing to show)."""
    if result is None:
        return None
    return {
        **payload(result),
        "url": reverse("task-attempt-log", kwargs={"pk": result.task_id, "attempt": result.pk}),
    }
