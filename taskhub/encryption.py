"""Encryption at rest for secrets that must live in the database (a task's ``secret_parameters``).

Keys come from ``security.encryption_keys`` (``TASKHUB_SECURITY_ENCRYPTION_KEYS``, comma-separated):
the first key encrypts, every key decrypts (``MultiFernet``), so a key is rotated by putting a new one
first, running ``manage.py encryption_keys --rotate`` and then dropping the old one.

While a handler runs, the task's secret values are also registered here, so the log filter and the
executor scrub them from log lines, error messages, tracebacks and results.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from taskhub.exceptions import ConfigError

HIDDEN = "<hidden>"
KEYS_SETTING = "security.encryption_keys (TASKHUB_SECURITY_ENCRYPTION_KEYS)"

_active: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("taskhub_active_secrets", default=())


class DecryptionError(ConfigError):
    """Stored encrypted data that no configured key can decrypt."""


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _keys() -> list[str]:
    return list(settings.TASKHUB.security.encryption_keys)


def configured() -> bool:
    return bool(_keys())


def _fernet() -> MultiFernet:
    keys = _keys()
    if not keys:
        raise ConfigError(
            f"{KEYS_SETTING}: no encryption key configured, but secret data must be encrypted or decrypted; "
            "make one with `manage.py encryption_keys --generate`"
        )
    return MultiFernet([Fernet(key.encode("ascii")) for key in keys])


def encrypt_json(value: Any) -> str:
    """Return ``value`` as JSON encrypted with the first key ('' for an empty value)."""
    if not value:
        return ""
    return _fernet().encrypt(json.dumps(value, sort_keys=True).encode("utf-8")).decode("ascii")


def decrypt_json(token: str) -> Any:
    """Decrypt what :func:`encrypt_json` wrote; a token no configured key opens is a clear ConfigError."""
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode("ascii")))
    except InvalidToken:
        raise DecryptionError(
            f"{KEYS_SETTING}: no configured key decrypts the stored secret data "
            "(was the key that encrypted it removed before `manage.py encryption_keys --rotate` ran?)"
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the first key (it may have been written with any configured key)."""
    if not token:
        return ""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise DecryptionError(f"{KEYS_SETTING}: no configured key decrypts the stored secret data") from None


def leaves(value: Any) -> list[str]:
    """Return every string (and number) leaf of a JSON value, as text."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    if value is None or isinstance(value, bool):
        return []
    return [str(value)]


def mask(value: Any) -> Any:
    """Return the shape of a JSON value with every leaf replaced by ``<hidden>``."""
    if isinstance(value, dict):
        return {key: mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item) for item in value]
    return HIDDEN


def merge(parameters: dict[str, Any], secret: dict[str, Any]) -> dict[str, Any]:
    """Merge secret parameters over plain ones; objects (e.g. ``headers``) merge one key at a time."""
    merged = dict(parameters)
    for key, value in (secret or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


# --- scrubbing ---------------------------------------------------------------------------------------------


def active_secrets() -> tuple[str, ...]:
    """The secret values of the handler running in this context (the log filter scrubs them)."""
    return _active.get()


@contextlib.contextmanager
def secrets_in_use(values: list[str]) -> Iterator[None]:
    """Register secret values for scrubbing while a handler runs."""
    token = _active.set(tuple(v for v in values if len(v) >= 4))
    try:
        yield
    finally:
        _active.reset(token)
