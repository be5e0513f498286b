"""Build Django's LOGGING from the ``log`` section, with secrets scrubbed from every record."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


class RedactSecrets(logging.Filter):
    """Replace configured secret values in log messages with ``<hidden>``."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        # Short values would redact ordinary words; secrets are long in practice.
        self.secrets = [s for s in (secrets or []) if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        text = record.exc_text or ""
        if any(secret in message or secret in text for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "<hidden>")
                text = text.replace(secret, "<hidden>")
            record.msg, record.args, record.exc_text = message, None, text or None
        return True


def build_logging(section: dict[str, Any], log_file: Path | None, *, secrets: list[str]) -> dict[str, Any]:
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
            "class": "logging.handlers.RotatingFileHandler",
            "filename": str(log_file),
            "maxBytes": section["max_bytes"],
            "backupCount": section["backup_count"],
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
        "formatters": {"taskhub": {"format": section["format"]}},
        "handlers": handlers,
        "root": {"level": section["level"], "handlers": list(handlers)},
        "loggers": {
            # Celery and Django log through the root logger's handlers.
            "django": {"level": section["level"], "propagate": True},
            "celery": {"level": section["level"], "propagate": True},
        },
    }
