"""The one scrubber: remove every secret, in every form it echoes back in, before anything is cut or stored.

Call :func:`scrub` on any text or JSON value that leaves a handler (errors, tracebacks, results, log lines,
handler logs, report content) and :func:`cut` wherever such text is shortened: it scrubs first, so a secret
that straddles the cut cannot survive in part.

The secrets are the configuration's (``settings.TASKHUB.secret_values()``), the running handler's task
``secret_parameters`` (:func:`taskhub.encryption.secrets_in_use`) and any passed in. Each is removed as
itself; for a credential header value (``Bearer T``, ``Basic b64``) also the token alone and, for Basic,
the decoded ``user:password`` and the password; and each of those URL-encoded, JSON- and HTML-escaped, and
base64-encoded (standard and URL-safe, with or without padding, and at the three byte alignments it can take
inside a longer base64 text, such as ``Basic base64(user:T)``), in any letter case.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

HIDDEN = "<hidden>"
#: Shorter values would hide ordinary words; secrets are long in practice.
MIN_LENGTH = 4
#: A base64 fragment shorter than this could match ordinary text by chance.
MIN_FRAGMENT = 8

_CREDENTIAL = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)[ \t]+(\S+)")


def _bases(secret: str) -> set[str]:
    """Return the secret and the credentials inside it (a header's token, Basic's user:password and password)."""
    bases = {secret, secret.strip()}
    match = _CREDENTIAL.fullmatch(secret.strip())
    if match:
        token = match.group(2)
        bases.add(token)
        if match.group(1).lower() == "basic":
            try:
                decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                decoded = ""
            if decoded:
                bases.add(decoded)
                bases.add(decoded.partition(":")[2])
    return {b for b in bases if len(b) >= MIN_LENGTH}


def _base64_forms(raw: bytes) -> set[str]:
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode("ascii")
        forms.update({whole, whole.rstrip("=")})
        for offset in (0, 1, 2):  # the characters that depend on the secret's bytes alone, at each alignment
            text = encode(b"\0" * offset + raw).decode("ascii")
            fragment = text[-(-8 * offset // 6) : (8 * (offset + len(raw))) // 6]
            if len(fragment) >= MIN_FRAGMENT:
                forms.add(fragment)
    return forms


def forms(secret: str) -> set[str]:
    """Return every text form of ``secret`` that the scrubber removes."""
    found: set[str] = set()
    for base in _bases(secret):
        found.update({base, quote(base, safe=""), quote(base), quote_plus(base), html.escape(base)})
        found.add(json.dumps(base)[1:-1])
        found.add(json.dumps(base, ensure_ascii=False)[1:-1])
        found.update(_base64_forms(base.encode("utf-8")))
    return {f for f in found if len(f) >= MIN_LENGTH}


@functools.lru_cache(maxsize=64)
def _compiled(secrets: tuple[str, ...]) -> tuple[re.Pattern[str] | None, int]:
    every: set[str] = set()
    for secret in secrets:
        every |= forms(secret)
    if not every:
        return None, 0
    ordered = sorted(every, key=lambda f: (-len(f), f))  # longest first: a form may contain another
    # Case-insensitive: %2f is %2F, and a server that upper- or lower-cases a token still shows it.
    return re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE), len(ordered[0])


def _secrets(extra: Iterable[str] | None) -> tuple[str, ...]:
    from django.conf import settings

    from taskhub.encryption import active_secrets

    values = [str(v) for v in (extra or ())]
    configured = getattr(settings, "TASKHUB", None)
    if configured is not None and hasattr(configured, "secret_values"):
        values += configured.secret_values()
    values += active_secrets()
    return tuple(sorted({v for v in values if len(v) >= MIN_LENGTH}))


def scrub_text(text: str, secrets: Iterable[str] | None = None, *, defaults: bool = True) -> str:
    """Return ``text`` with every form of every secret replaced by ``<hidden>``."""
    values = _secrets(secrets) if defaults else tuple(sorted({str(v) for v in secrets or () if len(v) >= MIN_LENGTH}))
    pattern, _ = _compiled(values)
    if pattern is None or not text:
        return text
    return pattern.sub(HIDDEN, text)


def scrub(value: Any, secrets: Iterable[str] | None = None, *, defaults: bool = True) -> Any:
    """Return a text or JSON value with every form of every secret replaced by ``<hidden>`` (keys included).

    ``secrets`` are added to the configuration's and the running handler's; ``defaults=False`` uses only them.
    """
    values = _secrets(secrets) if defaults else tuple(sorted({str(v) for v in secrets or () if len(v) >= MIN_LENGTH}))
    return _scrub(value, values)


def _scrub(value: Any, values: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrub_text(value, values, defaults=False)
    if isinstance(value, dict):
        return {_scrub(str(k), values): _scrub(v, values) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item, values) for item in value]
    return value


def longest_form(secrets: Iterable[str] | None = None) -> int:
    """Return the length of the longest text form scrubbed (0 when there is no secret)."""
    return _compiled(_secrets(secrets))[1]


def cut(
    text: str, limit: int, secrets: Iterable[str] | None = None, *, keep: str = "start", complete: bool = True
) -> str:
    """Scrub ``text``, then shorten it to ``limit`` characters (``keep="end"``: its last ones).

    ``complete=False`` says the text was itself read only in part (its end cut off by a reader): its last
    characters may then hold the start of a secret that scrubbing cannot recognise, and are dropped.
    """
    values = _secrets(secrets)
    text = scrub_text(text, values, defaults=False)
    if not complete:
        _, longest = _compiled(values)
        text = text[: max(0, len(text) - max(longest - 1, 0))]
    return text[-limit:] if keep == "end" and limit else text[:limit]
