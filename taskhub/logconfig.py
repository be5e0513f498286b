"""Build Django's LOGGING from the ``log`` section, with secrets scrubbed from every record."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path
from typing import Any

from taskhub.config import LogSettings

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: rotation is then only safe for one process
    fcntl = None  # type: ignore[assignment]  # not POSIX: no fcntl module, checked before each use


class RedactSecrets(logging.Filter):
    """Replace configured secret values in log messages with ``<hidden>``."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        # Short values would redact ordinary words; secrets are long in practice.
        self.secrets = [s for s in (secrets or []) if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        from taskhub.encryption import active_secrets  # the running handler's secret parameters
        from taskhub.scrubbing import scrub_text

        secrets = [*self.secrets, *active_secrets()]
        if not secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        text = record.exc_text or ""
        # Every form (the token inside "Bearer T", URL-encoded, base64...), by the one scrubber.
        clean, clean_text = scrub_text(message, secrets, defaults=False), scrub_text(text, secrets, defaults=False)
        if clean != message or clean_text != text:
            record.msg, record.args, record.exc_text = clean, None, clean_text or None
        return True


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that several processes (web, worker, beat) can share.

    The stock handler keeps writing to its open file after another process rotated it
    away, so backups grow without bound and rotations multiply. Here every write:
    1. takes an exclusive lock on ``<file>.lock``, so one process rotates at a time;
    2. reopens the file if it is no longer the one at the configured path;
    3. writes, rotating first if the file is full.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock_fd: int | None = None
        self._lock_pid = 0

    def _lock_file(self) -> int | None:
        if fcntl is None:
            return None
        # flock() locks belong to the open file, which a forked child (Celery's prefork pool)
        # inherits: each process needs its own descriptor or parent and children never exclude.
        if self._lock_fd is None or self._lock_pid != os.getpid():
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # the parent's; closing our copy leaves its lock alone
            self._lock_fd = os.open(f"{self.baseFilename}.lock", os.O_WRONLY | os.O_CREAT, 0o644)
            self._lock_pid = os.getpid()
        return self._lock_fd

    def _reopen_if_rotated(self) -> None:
        if self.stream is None:
            return
        try:
            moved = os.stat(self.baseFilename).st_ino != os.fstat(self.stream.fileno()).st_ino
        except FileNotFoundError:
            moved = True
        if moved:
            self.stream.close()
            self.stream = self._open()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fd = self._lock_file()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            self.handleError(record)  # logging must never raise into the caller
            return
        try:
            if fd is not None:
                self._reopen_if_rotated()
            super().emit(record)
        except OSError:
            self.handleError(record)
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        super().close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def build_logging(section: LogSettings, log_file: Path | None, *, secrets: list[str]) -> dict[str, Any]:
    """Return a dictConfig: console plus a rotating file, both in the configured format."""
    handlers: dict[str, dict[str, Any]] = {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "taskhub",
            "filters": ["redact"],
        }
    }
    if log_file is not None:
        handlers["file"] = {
            "class": "taskhub.logconfig.SharedRotatingFileHandler",
            "filename": str(log_file),
            "maxBytes": section.max_bytes,
            "backupCount": section.backup_count,
            "encoding": "utf-8",
            "formatter": "taskhub",
            "filters": ["redact"],
            # Opened on first write, so `manage.py --help` creates no file.
            "delay": True,
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets, "secrets": secrets}},
        "formatters": {"taskhub": {"format": section.format}},
        "handlers": handlers,
        "root": {"level": section.level, "handlers": list(handlers)},
        "loggers": {
            # Celery and Django log through the root logger's handlers.
            "django": {"level": section.level, "propagate": True},
            "celery": {"level": section.level, "propagate": True},
            # django-axes announces its version at INFO in every process (web, worker, beat, each command).
            "axes.apps": {"level": "WARNING", "propagate": True},
        },
    }
