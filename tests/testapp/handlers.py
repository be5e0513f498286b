"""Test-only handlers, registered in worker processes too (they load tests.settings)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from scheduling.handlers import HandlerContext, registry
from taskhub.exceptions import PermanentHandlerError


def _journal() -> Path:
    return Path(settings.STORAGE_DIR) / "journal.log"


def record(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Append "<label> <attempt> <pid>" to the journal, so tests can see order and counts."""
    with _journal().open("a") as handle:
        handle.write(f"{parameters.get('label', context.task_name)} {context.attempt} {os.getpid()}\n")
    if parameters.get("sleep"):
        time.sleep(parameters["sleep"])
    return {"label": parameters.get("label"), "attempt": context.attempt}


def flaky(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Fail the first ``failures`` attempts, then succeed."""
    record(parameters, context)
    if context.attempt <= parameters.get("failures", 1):
        if parameters.get("permanent"):
            raise PermanentHandlerError("credentials rejected (401)")
        raise RuntimeError(f"boom on attempt {context.attempt}")
    return {"ok": True, "attempt": context.attempt}


def sleepy(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Sleep (optionally only on early attempts), reporting progress."""
    record(parameters, context)
    seconds = parameters.get("seconds", 1)
    if context.attempt > parameters.get("sleep_attempts", 99):
        seconds = 0
    context.progress(10, "sleeping")
    time.sleep(seconds)
    context.progress(90, "woke up")
    return {"slept": seconds}


def stubborn(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Swallow the soft time limit and keep sleeping, as a badly written handler would."""
    record(parameters, context)
    if context.attempt > parameters.get("sleep_attempts", 99):
        return {"gave_up": False}
    deadline = time.monotonic() + parameters.get("seconds", 60)
    while time.monotonic() < deadline:
        try:
            time.sleep(0.1)
        except BaseException:  # noqa: BLE001 - the point of this handler
            pass
    return {"gave_up": False}


def db_session(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Return the database session this worker process uses (PostgreSQL's backend pid)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return {"backend": cursor.fetchone()[0], "pid": os.getpid()}


def noop(parameters: dict[str, Any], context: HandlerContext) -> None:
    """Do nothing (for throughput measurements)."""
    return None


def chatty(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Log ``lines`` lines, a DEBUG line and the ``secret`` parameter; optionally wait for a ``go`` file in between.

    ``wait_for``: a path; the handler logs "waiting" and sleeps until the file exists (a test reads the
    log of the running attempt meanwhile), then logs "finished".
    """
    for number in range(parameters.get("lines", 3)):
        context.logger.info("line %d of %s %s", number, context.task_name, parameters.get("pad", ""))
    context.logger.debug("a debug line below the configured level")
    if parameters.get("secret"):
        context.logger.warning("calling with token %s", parameters["secret"])
    if parameters.get("wait_for"):
        context.logger.info("waiting")
        deadline = time.monotonic() + parameters.get("seconds", 60)
        while not Path(parameters["wait_for"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        context.logger.info("finished")
    if parameters.get("fail"):
        raise RuntimeError("chatty failed")
    return {"lines": parameters.get("lines", 3)}


def register() -> None:
    registry.register("TEST_LOG", chatty, schema={"type": "object"})
    registry.register("TEST_RECORD", record, schema={"type": "object"})
    registry.register("TEST_FLAKY", flaky, schema={"type": "object"})
    registry.register("TEST_SLEEP", sleepy, schema={"type": "object"})
    registry.register("NOOP", noop, schema={"type": "object"})
    registry.register("TEST_STUBBORN", stubborn, schema={"type": "object"})
    registry.register("TEST_DB_SESSION", db_session, schema={"type": "object"})
