"""Load, validate and expose TaskHub's configuration (``config.yaml``).

The file path comes from ``TASKHUB_CONFIG`` (default ``./config.yaml``). When the
file is absent the defaults below apply; they are the values of
``config.yaml.example``. Any scalar key can be overridden from the environment
as ``TASKHUB_<SECTION>_<KEY>`` (``TASKHUB_SCHEDULER_CONCURRENCY=8``,
``TASKHUB_REPORTING_CONFLUENCE_PAGE_ID=42``), which is how secrets and URLs
should reach production. Jira environments take
``TASKHUB_JIRA_ENVIRONMENTS_<NAME>_<KEY>``, NAME upper-cased with every
non-alphanumeric character replaced by ``_``.

A wrong value raises :class:`ConfigError` naming the key, the value and what is
expected; secret values are never echoed. A ``TASKHUB_<SECTION>_...`` variable of a
known section that overrides no key is refused too, so a misspelt secret is not
silently ignored.

Code reads the values through a typed, frozen view of each section
(``settings.TASKHUB.scheduler.concurrency``, see ``VIEWS``); ``settings.TASKHUB["scheduler"]``
is the plain dict of validated values the views are built from (what tests patch).
"""

from __future__ import annotations

import base64
import copy
import difflib
import ipaddress
import logging
import math
import os
import re
import reprlib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import yaml

from taskhub.exceptions import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ENV_PREFIX = "TASKHUB_"
HIDDEN = "<hidden>"


# --- value checkers -------------------------------------------------------
# Each takes the raw value (from YAML or from an environment string) and returns
# the clean value or raises ValueError("expected ...").


def _int(minimum: int) -> Callable[[Any], int]:
    label = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def check(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected {label}")
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"expected {label}")
        return value

    return check


def _number(minimum: float, *, strict: bool = False) -> Callable[[Any], float]:
    label = f"a number > {minimum:g}" if strict else f"a number >= {minimum:g}"

    def check(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"expected {label}")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"expected {label}") from None
        # NaN compares false with everything, so it would slip through the bound check.
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"expected {label}")
        if value < minimum or (strict and value == minimum):
            raise ValueError(f"expected {label}")
        return float(value)

    return check


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "on", "1"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "off", "0"}:
        return False
    raise ValueError("expected true or false")


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a string")
    return str(value)


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.upper() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value.upper()

    return check


def _url(*schemes: str, allow_empty: bool = True) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        value = _str(value).strip()
        if not value and allow_empty:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in schemes or (parts.scheme.startswith("http") and not parts.hostname):
            raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return value

    return check


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):  # from the environment: comma-separated
        value = [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("expected a list of non-empty strings")
    return value


def _allowed_hosts(value: Any) -> list[str]:
    """Check http.allowed_hosts: names, IP addresses or CIDR networks, each optionally with :PORTS."""
    from taskhub.allowlist import parse_rule

    items = _str_list(value)
    for item in items:
        parse_rule(item)  # its ValueError names the entry and what an entry looks like
    return items


def _ports(value: Any) -> list[int]:
    """Check a list of TCP ports (1-65535); comma-separated from the environment."""
    if isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, list):
        raise ValueError("expected a list of ports (1-65535)")
    ports = []
    for item in value:
        if isinstance(item, str) and item.isdigit():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 65535:
            raise ValueError("expected a list of ports (1-65535)")
        ports.append(item)
    return ports


def _subset_of(*choices: str) -> Callable[[Any], list[str]]:
    def check(value: Any) -> list[str]:
        items = _str_list(value)
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise ValueError(f"expected a list drawn from {', '.join(choices)}")
        return items

    return check


def _email_list(value: Any) -> list[str]:
    items = _str_list(value)
    if not all(re.fullmatch(r"[^@\s]+@[^@\s]+", item) for item in items):
        raise ValueError("expected a list of email addresses such as ops@example.com")
    return items


def _webhooks(value: Any) -> dict[str, str]:
    """Check mattermost.webhooks: channel name -> incoming webhook URL (env: ``name=url,name2=url2``)."""
    if isinstance(value, str):
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        value = {name.strip(): url.strip() for name, _, url in pairs}
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(name, str) and name for name in value):
        raise ValueError("expected a mapping of channel name -> incoming webhook URL")
    check = _url("http", "https", allow_empty=False)
    try:
        return {name: check(url) for name, url in value.items()}
    except ValueError:
        raise ValueError("expected a mapping of channel name -> incoming webhook URL (http:// or https://)") from None


def _timezone(value: Any) -> str:
    try:
        zoneinfo.ZoneInfo(_str(value))
    except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):  # OSError: "Europe" is a folder of zones
        raise ValueError("expected an IANA time zone such as UTC or Europe/Paris") from None
    return str(value)


def _log_format(value: Any) -> str:
    value = _str(value)
    try:
        logging.Formatter(value).format(logging.makeLogRecord({"msg": "probe"}))
    except (ValueError, KeyError, TypeError):
        raise ValueError("expected a Python logging format string") from None
    return value


def _fernet_keys(value: Any) -> list[str]:
    """Check security.encryption_keys: Fernet keys (44 characters of url-safe base64 for 32 bytes)."""
    if value is None or value == "":
        return []
    expected = (
        "expected a list of Fernet keys (44 characters of url-safe base64; "
        "make one with `manage.py encryption_keys --generate`)"
    )
    try:
        keys = _str_list(value)
    except ValueError:
        raise ValueError(expected) from None
    for key in keys:
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ValueError(expected) from None
        if len(raw) != 32 or len(key) != 44:
            raise ValueError(expected)
    return keys


def _networks(value: Any) -> list[str]:
    """Check a list of IP addresses or CIDR networks (security.metrics_allowed_hosts); names are refused."""
    if value is None or value == "":
        return []
    expected = "expected a list of IP addresses or CIDR networks such as 127.0.0.1, ::1 or 10.0.0.0/8"
    try:
        items = _str_list(value)
        for item in items:
            ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise ValueError(expected) from None
    return items


def _token(value: Any) -> str:
    """Check a bearer token: empty (none) or at least 16 characters without spaces."""
    value = _str(value).strip()
    if value and (len(value) < 16 or re.search(r"\s", value)):
        raise ValueError("expected empty (no token) or a token of at least 16 characters without spaces")
    return value


def _rate(value: Any) -> str:
    """Check a throttle rate such as 600/minute (DRF's NUMBER/second|minute|hour|day)."""
    value = _str(value).strip()
    if not re.fullmatch(r"[1-9]\d*/(second|minute|hour|day)", value):
        raise ValueError("expected a rate such as 600/minute (NUMBER/second, minute, hour or day)")
    return value


def _header_name(value: Any) -> str:
    """Check security.login_client_ip_header: empty, or an HTTP header name such as X-Forwarded-For."""
    value = _str(value).strip()
    if value and not re.fullmatch(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*", value):
        raise ValueError("expected an HTTP header name such as X-Forwarded-For, or empty for the connection's address")
    return value


def _database_url(value: Any) -> str:
    value = _str(value).strip()
    scheme = urlsplit(value).scheme
    if scheme not in {"sqlite", "postgres", "postgresql"}:
        raise ValueError("expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/NAME")
    return value


def _broker_url(value: Any) -> str:
    value = _str(value).strip()
    scheme = urlsplit(value).scheme
    if scheme not in {"filesystem", "redis", "rediss", "amqp", "pyamqp"}:
        raise ValueError("expected filesystem://, redis://HOST:PORT/DB or amqp://USER:PASSWORD@HOST:PORT//")
    return value


@dataclass(frozen=True)
class Key:
    """One configuration key: its checker, default and whether it is a secret."""

    check: Callable[[Any], Any]
    default: Any
    secret: bool = False


DEPLOYMENTS = ("auto", "cloud", "server")


def _deployment(value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in DEPLOYMENTS:
        raise ValueError(f"expected one of {', '.join(DEPLOYMENTS)}")
    return value.strip().lower()


def _email(value: Any) -> str:
    value = _str(value).strip()
    if value and (len(value) > 254 or not re.fullmatch(r"[^@\s]+@[^@\s]+", value)):
        raise ValueError("expected the e-mail address of an Atlassian account, such as bot@example.com")
    return value


def _api_token(value: Any) -> str:
    value = _str(value)
    if len(value) > 1024 or re.search(r"\s", value):
        raise ValueError("expected an Atlassian API token (one word, at most 1024 characters)")
    return value


JIRA_ENV_KEYS: dict[str, Key] = {
    "url": Key(_url("http", "https", allow_empty=False), None),
    # auto: read serverInfo's deploymentType once per client; cloud / server: as told.
    "deployment": Key(_deployment, "auto"),
    "username": Key(_str, ""),
    "password": Key(_str, "", secret=True),
    "token": Key(_str, "", secret=True),
    # Atlassian Cloud: the account's e-mail and an API token, sent as HTTP Basic.
    "email": Key(_email, ""),
    "api_token": Key(_api_token, "", secret=True),
    "verify_ssl": Key(_bool, True),
    "timeout": Key(_number(0, strict=True), 30.0),
}

SCHEMA: dict[str, dict[str, Any]] = {
    "confluence": {
        # On Cloud the site root (https://example.atlassian.net); TaskHub adds /wiki.
        "url": Key(_url("http", "https"), "https://confluence.example.com"),
        "deployment": Key(_deployment, "auto"),
        "username": Key(_str, "confluence_user"),
        "password": Key(_str, "", secret=True),
        "token": Key(_str, "", secret=True),
        "email": Key(_email, ""),
        "api_token": Key(_api_token, "", secret=True),
        # Cloud: the space (key) where the results page is created; empty: the main page's space.
        "space_key": Key(_str, ""),
        "main_page_id": Key(_str, "123456"),
        "task_result_page_id": Key(_str, "789012"),
        "verify_ssl": Key(_bool, True),
        "timeout": Key(_number(0, strict=True), 30.0),
    },
    "jira": {
        "url": Key(_url("http", "https"), "https://jira.example.com"),
        "deployment": Key(_deployment, "auto"),
        "username": Key(_str, "jira_user"),
        "password": Key(_str, "", secret=True),
        "token": Key(_str, "", secret=True),
        "email": Key(_email, ""),
        "api_token": Key(_api_token, "", secret=True),
        "verify_ssl": Key(_bool, True),
        "timeout": Key(_number(0, strict=True), 30.0),
        # name -> JIRA_ENV_KEYS; validated separately (names are free-form).
        "environments": Key(lambda v: v, {}),
    },
    "scheduler": {
        "poll_interval": Key(_number(0, strict=True), 30.0),
        "concurrency": Key(_int(1), 5),
        "coalesce": Key(_bool, False),
        "max_instances": Key(_int(1), 5),
        "misfire_grace_seconds": Key(_int(0), 300),
        "priority_aging_seconds": Key(_int(0), 0),
        "default_timeout_seconds": Key(_int(1), 3600),
        "max_timeout_seconds": Key(_int(1), 86400),
        "timeout_grace_seconds": Key(_int(1), 30),
        "requeue_after_seconds": Key(_int(1), 60),
        # A SCHEDULED task's run still waiting for a fresh dependency run this long after it was due fails
        # (tasks override it with dependency_timeout); 0: wait as long as it takes.
        "dependency_timeout": Key(_int(0), 43200),
        # manage.py backfill / the admin's "Backfill..." refuse a range of more cron fires than this.
        "max_backfill": Key(_int(1), 1000),
        # Each worker refreshes its row this often (s); one silent for two intervals reads offline.
        "worker_heartbeat": Key(_number(0, strict=True), 10.0),
        # A dispatch of more attempts than the online workers have processes sends them this many to a
        # Celery message at most (each still claimed, timed and recorded on its own); 1: one per message.
        "attempts_per_message": Key(_int(1), 8),
    },
    "log": {
        "level": Key(_choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "INFO"),
        "filename": Key(_str, "logs/app.log"),
        "max_bytes": Key(_int(0), 10485760),
        "backup_count": Key(_int(0), 5),
        "format": Key(_log_format, "%(asctime)s - %(name)s - %(levelname)s - %(message)s"),
    },
    "storage": {
        "path": Key(_str, "task_storage"),
        "reports_path": Key(_str, "jira_reports"),
        "result_retention_days": Key(_int(0), 90),
    },
    "reporting": {
        "interval": Key(_number(0, strict=True), 30.0),
        "report_types": Key(_subset_of("confluence", "mattermost", "email"), ["confluence", "mattermost"]),
        "max_rows": Key(_int(1), 50),
        "summary_hours": Key(_int(1), 24),
        "base_url": Key(_url("http", "https", allow_empty=False), "http://127.0.0.1:8000"),
        "confluence": {
            "page_id": Key(_str, "789012"),
            "template": Key(_str, "task_results_template"),
            "title": Key(_str, "TaskHub task results"),
        },
    },
    "email": {
        "from_address": Key(_str, "taskhub@localhost"),
        "to": Key(_email_list, []),
        "subject_prefix": Key(_str, "[TaskHub] "),
        "smtp_host": Key(_str, ""),
        "smtp_port": Key(_int(1), 587),
        "smtp_username": Key(_str, ""),
        "smtp_password": Key(_str, "", secret=True),
        "use_tls": Key(_bool, True),
        "use_ssl": Key(_bool, False),
        "timeout": Key(_number(0, strict=True), 30.0),
    },
    "mattermost": {
        "webhook_url": Key(_url("http", "https"), "", secret=True),
        "channel": Key(_str, ""),
        "webhooks": Key(_webhooks, {}, secret=True),
        "username": Key(_str, "TaskHub"),
    },
    "database": {
        "url": Key(_database_url, "sqlite:///db.sqlite3", secret=True),
        # PostgreSQL ends a session idle inside a transaction this long (seconds; 0: never), so a
        # client that vanished mid-transaction (host cut off) does not hold its locks until TCP gives up.
        "idle_transaction_timeout": Key(_int(0), 60),
        # PostgreSQL: prepare the engine's hot statements (the claim, the completion) once per connection.
        # Off behind a pooler that cannot keep them (PgBouncer in transaction mode before 1.21).
        "prepared_statements": Key(_bool, True),
    },
    "broker": {
        "url": Key(_broker_url, "filesystem://", secret=True),
    },
    "http": {
        "allowed_hosts": Key(_allowed_hosts, []),
        "default_ports": Key(_ports, [80, 443]),
    },
    "security": {
        # First key encrypts, every key decrypts: prepend a new key to rotate (see README, Security).
        "encryption_keys": Key(_fernet_keys, [], secret=True),
        "max_parameters_bytes": Key(_int(1), 65536),
        "max_request_bytes": Key(_int(1024), 1048576),
        "write_rate": Key(_rate, "600/minute"),
        # Most tasks one API request (a JSON list to POST /tasks) or one services.task_create_many call creates.
        "max_bulk": Key(_int(1), 1000),
        # Failed logins (admin, API Basic auth, API login page) allowed per user name and per address
        # within login_lockout_minutes; the next one locks that user name or address for as long.
        "login_failure_limit": Key(_int(1), 5),
        "login_lockout_minutes": Key(_number(0, strict=True), 15.0),
        # Empty: the connection's address. Behind one trusted proxy: the header it sets (its last entry is used).
        "login_client_ip_header": Key(_header_name, ""),
        # GET /metrics: from these addresses, or from anywhere with "Authorization: Bearer <metrics_token>".
        "metrics_allowed_hosts": Key(_networks, ["127.0.0.1", "::1"]),
        "metrics_token": Key(_token, "", secret=True),
    },
    "web": {
        "secret_key": Key(_str, "", secret=True),
        "debug": Key(_bool, False),
        "allowed_hosts": Key(_str_list, ["127.0.0.1", "localhost"]),
        "https": Key(_bool, False),
        "time_zone": Key(_timezone, "UTC"),
    },
}


def _defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: _defaults(spec) if isinstance(spec, dict) else copy.deepcopy(spec.default)
        for name, spec in schema.items()
    }


def env_name(*path: str) -> str:
    """Return the environment variable that overrides the setting at ``path``.

    ``env_name("jira", "environments", "acme", "")`` is ``TASKHUB_JIRA_ENVIRONMENTS_ACME_``: each part
    upper-cased, every character other than A-Z, a-z, 0-9 made ``_``, joined with ``_`` after ``TASKHUB_``.
    """
    return ENV_PREFIX + "_".join(re.sub(r"[^A-Za-z0-9]", "_", part).upper() for part in path)


# Bad values are shown bounded: a huge string, a deeply nested value or a YAML alias bomb (billion
# laughs: a few lines that expand to 10**9 items) must not become a huge or endless error message.
_BRIEF = reprlib.Repr()
for _limit, _value in {"maxlevel": 3, "maxdict": 6, "maxlist": 6, "maxtuple": 6, "maxset": 6}.items():
    setattr(_BRIEF, _limit, _value)
_BRIEF.maxstring, _BRIEF.maxlong, _BRIEF.maxother = 80, 40, 80
MAX_SHOWN = 200
#: A config file is a few kilobytes; anything this large is a mistake (or an attack), refused before parsing.
MAX_CONFIG_BYTES = 1024 * 1024


def _brief(value: Any) -> str:
    """Return a one-line representation of ``value`` of at most MAX_SHOWN characters."""
    text = _BRIEF.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _show(value: Any, secret: bool) -> str:
    """Render a bad value for an error message; secrets, and passwords inside URLs, are hidden."""
    if secret:
        return HIDDEN
    if isinstance(value, str) and "@" in value:
        # A URL such as https://user:password@host must not echo its password.
        value = re.sub(r"(://[^/:@\s]*:)[^/@\s]*@", rf"\1{HIDDEN}@", value)
    return _brief(value)


def _key(name: Any) -> str:
    """Show a key from the file on one line: a string as written (line breaks as spaces, cut at 80), else its repr."""
    text = " ".join(name.split()) if isinstance(name, str) else ""
    if not text:
        return _brief(name)
    return text if len(text) <= 80 else text[:77] + "..."


def _has_secret(schema: Mapping[str, Any]) -> bool:
    return any(_has_secret(spec) if isinstance(spec, dict) else spec.secret for spec in schema.values())


def _validate_section(
    raw: Mapping[str, Any], schema: Mapping[str, Any], path: tuple[str, ...], env: Mapping[str, str]
) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        # A section holding secrets may be a mistyped secret itself: name the type, not the value.
        shown = f"a {type(raw).__name__}" if _has_secret(schema) else _brief(raw)
        raise ConfigError(f"{'.'.join(path)}: expected a mapping of keys, got {shown}")
    unknown = sorted(set(raw) - set(schema), key=str)
    if unknown:
        dotted = ".".join((*path, _key(unknown[0])))
        known = f"known keys of {'.'.join(path)}" if path else "known sections"
        raise ConfigError(f"{dotted}: unknown key ({known}: {', '.join(schema)})")
    clean: dict[str, Any] = {}
    for name, spec in schema.items():
        here = (*path, name)
        if isinstance(spec, dict):
            # An empty section (`scheduler:` with nothing under it) is YAML null: the defaults apply.
            section = raw.get(name)
            clean[name] = _validate_section({} if section is None else section, spec, here, env)
            continue
        value, source = raw.get(name, spec.default), ".".join(here)
        env_value = env.get(env_name(*here))
        if env_value is not None:
            value, source = env_value, f"{source} (from {env_name(*here)})"
        try:
            clean[name] = spec.check(value)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}, got {_show(value, spec.secret)}") from None
    return clean


def _validate_jira_environments(jira: dict[str, Any], env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Return every Jira environment by name; the seed's single ``jira.url`` form is one of them."""
    raw = {} if jira["environments"] is None else jira["environments"]
    if not isinstance(raw, Mapping):
        # Environments carry passwords: name the type, never the value.
        raise ConfigError(f"jira.environments: expected a mapping of name -> settings, got a {type(raw).__name__}")
    environments: dict[str, dict[str, Any]] = {}
    for name, settings in raw.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ConfigError(
                f"jira.environments: expected names of letters, digits, '.', '_' or '-', got {_brief(name)}"
            )
        settings = {} if settings is None else settings
        environments[name] = _validate_section(settings, JIRA_ENV_KEYS, ("jira", "environments", name), env)
        check_credentials(environments[name], ("jira", "environments", name))
    if jira["url"]:
        host = urlsplit(jira["url"]).hostname or "default"
        single = {key: jira[key] for key in JIRA_ENV_KEYS}
        check_credentials(single, ("jira",))
        environments.setdefault(host, single)
        environments.setdefault("default", single)
    return environments


def check_credentials(values: Mapping[str, Any], path: tuple[str, ...]) -> None:
    """Refuse credentials that cannot work for the deployment: Cloud takes email + api_token, Server the rest."""
    where = ".".join(path)
    deployment, email, api_token = values["deployment"], values["email"].strip(), values["api_token"]
    if deployment == "cloud" or email or api_token:
        if deployment == "server":
            key = "email" if email else "api_token"
            raise ConfigError(
                f"{where}.{key}: is for Atlassian Cloud, but {where}.deployment is server "
                "(use username + password, or token for a personal access token)"
            )
        if not api_token:
            raise ConfigError(
                f"{where}.api_token: required on Atlassian Cloud (with {where}.email); create one at "
                f"id.atlassian.com > Security > API tokens, set it in {env_name(*path, 'api_token')}"
            )
        if not email:
            raise ConfigError(
                f"{where}.email: required on Atlassian Cloud with {where}.api_token: the e-mail address of the "
                "account the token belongs to"
            )
        if values.get("token"):
            raise ConfigError(
                f"{where}.token: a Bearer token is refused by Atlassian Cloud; put the API token in "
                f"{where}.api_token (and the account's e-mail in {where}.email)"
            )


# --- typed views -------------------------------------------------------------
# One frozen dataclass per section, so code reads ``settings.TASKHUB.scheduler.concurrency`` as an int
# that mypy knows about. SCHEMA stays the one home of every key (checker, default, secrecy); a view only
# names the keys and their Python types, and _check_views() (run at import) refuses a view whose fields
# are not exactly its section's keys, or whose repr would show a secret (tests/test_config_views.py
# also checks each field's type against what its key's checker returns). A view is built from the
# validated values on each access (a few microseconds): Config.data stays what tests patch
# (monkeypatch.setitem(settings.TASKHUB["scheduler"], ...)) and what they replace
# (monkeypatch.setattr(settings, "TASKHUB", ...)), and a view sees both. Lists become tuples and
# mappings copies, so a view cannot change the configuration it was read from.

_V = TypeVar("_V", bound="DataclassInstance")


def _build(cls: type[_V], values: Mapping[str, Any]) -> _V:
    """Return the view ``cls`` of one section's validated ``values``."""
    kwargs: dict[str, Any] = {}
    for item in fields(cls):
        value = values[item.name]
        build = item.metadata.get("build")
        if build is not None:
            value = build(value)
        elif isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, dict):
            value = dict(value)
        kwargs[item.name] = value
    return cls(**kwargs)


def _section(cls: type[Any]) -> Any:
    """Declare a field holding a nested section (reporting.confluence), built as ``cls``."""
    return field(metadata={"section": cls, "build": lambda values: _build(cls, values)})


@dataclass(frozen=True)
class AtlassianSettings:
    """What a Jira environment and Confluence share: where the site is and how to sign in (Cloud or Server)."""

    url: str
    deployment: str
    username: str
    password: str = field(repr=False)
    token: str = field(repr=False)
    email: str
    api_token: str = field(repr=False)
    verify_ssl: bool
    timeout: float


@dataclass(frozen=True)
class ConfluenceSettings(AtlassianSettings):
    space_key: str
    main_page_id: str
    task_result_page_id: str


@dataclass(frozen=True)
class JiraEnvironmentSettings(AtlassianSettings):
    pass


def _jira_environments(values: Mapping[str, Any]) -> dict[str, JiraEnvironmentSettings]:
    return {name: _build(JiraEnvironmentSettings, env) for name, env in values.items()}


@dataclass(frozen=True)
class JiraSettings(AtlassianSettings):
    """The default Jira environment's site and sign-in, and the named ``jira.environments``."""

    environments: Mapping[str, JiraEnvironmentSettings] = field(
        metadata={"keys": JIRA_ENV_KEYS, "section": JiraEnvironmentSettings, "build": _jira_environments}
    )


@dataclass(frozen=True)
class SchedulerSettings:
    poll_interval: float
    concurrency: int
    coalesce: bool
    max_instances: int
    misfire_grace_seconds: int
    priority_aging_seconds: int
    default_timeout_seconds: int
    max_timeout_seconds: int
    timeout_grace_seconds: int
    requeue_after_seconds: int
    dependency_timeout: int
    max_backfill: int
    worker_heartbeat: float
    attempts_per_message: int


@dataclass(frozen=True)
class LogSettings:
    level: str
    filename: str
    max_bytes: int
    backup_count: int
    format: str


@dataclass(frozen=True)
class StorageSettings:
    path: str
    reports_path: str
    result_retention_days: int


@dataclass(frozen=True)
class ReportingConfluenceSettings:
    page_id: str
    template: str
    title: str


@dataclass(frozen=True)
class ReportingSettings:
    interval: float
    report_types: tuple[str, ...]
    max_rows: int
    summary_hours: int
    base_url: str
    confluence: ReportingConfluenceSettings = _section(ReportingConfluenceSettings)


@dataclass(frozen=True)
class EmailSettings:
    from_address: str
    to: tuple[str, ...]
    subject_prefix: str
    smtp_host: str
    smtp_port: int
    smtp_username: str
    smtp_password: str = field(repr=False)
    use_tls: bool
    use_ssl: bool
    timeout: float


@dataclass(frozen=True)
class MattermostSettings:
    webhook_url: str = field(repr=False)
    channel: str
    webhooks: Mapping[str, str] = field(repr=False)
    username: str


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(repr=False)
    idle_transaction_timeout: int
    prepared_statements: bool


@dataclass(frozen=True)
class BrokerSettings:
    url: str = field(repr=False)


@dataclass(frozen=True)
class HttpSettings:
    allowed_hosts: tuple[str, ...]
    default_ports: tuple[int, ...]


@dataclass(frozen=True)
class SecuritySettings:
    encryption_keys: tuple[str, ...] = field(repr=False)
    max_parameters_bytes: int
    max_request_bytes: int
    write_rate: str
    max_bulk: int
    login_failure_limit: int
    login_lockout_minutes: float
    login_client_ip_header: str
    metrics_allowed_hosts: tuple[str, ...]
    metrics_token: str = field(repr=False)


@dataclass(frozen=True)
class WebSettings:
    secret_key: str = field(repr=False)
    debug: bool
    allowed_hosts: tuple[str, ...]
    https: bool
    time_zone: str


#: The view of each section of SCHEMA.
VIEWS: dict[str, type[Any]] = {
    "confluence": ConfluenceSettings,
    "jira": JiraSettings,
    "scheduler": SchedulerSettings,
    "log": LogSettings,
    "storage": StorageSettings,
    "reporting": ReportingSettings,
    "email": EmailSettings,
    "mattermost": MattermostSettings,
    "database": DatabaseSettings,
    "broker": BrokerSettings,
    "http": HttpSettings,
    "security": SecuritySettings,
    "web": WebSettings,
}


def _check_views(schema: Mapping[str, Any], view: type[Any], where: str) -> None:
    """Refuse a view whose fields are not exactly the keys of its section (recursively)."""
    names = {item.name for item in fields(view)}
    if names != set(schema):
        missing, extra = sorted(set(schema) - names), sorted(names - set(schema))
        raise TypeError(f"{view.__name__} does not match SCHEMA[{where}]: missing {missing}, not in SCHEMA {extra}")
    for item in fields(view):
        nested = item.metadata.get("section")
        keys = item.metadata.get("keys", schema[item.name])
        if isinstance(keys, dict) != (nested is not None):
            raise TypeError(f"{view.__name__}.{item.name}: a nested section needs _section() and vice versa")
        if nested is not None:
            _check_views(keys, nested, f"{where}.{item.name}")
        elif item.repr == schema[item.name].secret:
            # A view may end up in a log line or a traceback: its repr must not show a secret.
            raise TypeError(f"{view.__name__}.{item.name}: a secret key needs field(repr=False), only a secret one")


if set(VIEWS) != set(SCHEMA):
    raise TypeError(f"VIEWS does not name every section of SCHEMA: {sorted(set(VIEWS) ^ set(SCHEMA))}")
for _name, _view in VIEWS.items():
    _check_views(SCHEMA[_name], _view, _name)


@dataclass(frozen=True)
class Config:
    """Validated configuration: typed as ``config.scheduler.concurrency``, untyped as ``config['scheduler']``.

    ``data`` holds the validated values (plain dicts, as tests patch them); each section property
    returns its frozen view (see VIEWS), built from ``data`` at that moment.
    """

    data: dict[str, Any]
    path: Path | None

    def section(self, name: str) -> dict[str, Any]:
        return self.data[name]

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.data[name]

    @property
    def confluence(self) -> ConfluenceSettings:
        return _build(ConfluenceSettings, self.data["confluence"])

    @property
    def jira(self) -> JiraSettings:
        return _build(JiraSettings, self.data["jira"])

    @property
    def scheduler(self) -> SchedulerSettings:
        return _build(SchedulerSettings, self.data["scheduler"])

    @property
    def log(self) -> LogSettings:
        return _build(LogSettings, self.data["log"])

    @property
    def storage(self) -> StorageSettings:
        return _build(StorageSettings, self.data["storage"])

    @property
    def reporting(self) -> ReportingSettings:
        return _build(ReportingSettings, self.data["reporting"])

    @property
    def email(self) -> EmailSettings:
        return _build(EmailSettings, self.data["email"])

    @property
    def mattermost(self) -> MattermostSettings:
        return _build(MattermostSettings, self.data["mattermost"])

    @property
    def database(self) -> DatabaseSettings:
        return _build(DatabaseSettings, self.data["database"])

    @property
    def broker(self) -> BrokerSettings:
        return _build(BrokerSettings, self.data["broker"])

    @property
    def http(self) -> HttpSettings:
        return _build(HttpSettings, self.data["http"])

    @property
    def security(self) -> SecuritySettings:
        return _build(SecuritySettings, self.data["security"])

    @property
    def web(self) -> WebSettings:
        return _build(WebSettings, self.data["web"])

    @property
    def jira_environments(self) -> dict[str, dict[str, Any]]:
        return self.data["jira"]["environments"]

    def secret_values(self) -> list[str]:
        """Return every non-empty secret value, so outputs can be checked or scrubbed for them."""
        found: list[str] = []

        def walk(values: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
            for name, spec in schema.items():
                if isinstance(spec, dict):
                    walk(values[name], spec)
                elif spec.secret and isinstance(values.get(name), Mapping):
                    found.extend(str(item) for item in values[name].values() if item)  # mattermost.webhooks
                elif spec.secret and isinstance(values.get(name), list):
                    found.extend(str(item) for item in values[name] if item)  # security.encryption_keys
                elif spec.secret and values.get(name):
                    value = str(values[name])
                    if name == "url":
                        # database.url / broker.url: only the password is secret; scrubbing the
                        # whole URL would also hide harmless text such as "filesystem://" in logs.
                        value = urlsplit(value).password or ""
                    if value:
                        found.append(value)

        walk(self.data, SCHEMA)
        for settings in self.jira_environments.values():
            walk(settings, JIRA_ENV_KEYS)
        # A webhook URL's secret is its path (/hooks/<key>), which HTTP libraries log without the host.
        hooks = [self.data["mattermost"]["webhook_url"], *self.data["mattermost"]["webhooks"].values()]
        found.extend(path for path in (urlsplit(str(url)).path.rstrip("/") for url in hooks if url) if len(path) >= 8)
        return sorted(set(found))


def parse(raw: Any, env: Mapping[str, str] | None = None, path: Path | None = None) -> Config:
    """Validate ``raw`` (the parsed YAML document) with environment overrides applied."""
    env = os.environ if env is None else env
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a YAML mapping of sections at the top level")
    data = _validate_section(raw, SCHEMA, (), env)
    named = list(data["jira"]["environments"] or {}) if isinstance(data["jira"]["environments"], Mapping) else []
    data["jira"]["environments"] = _validate_jira_environments(data["jira"], env)
    if data["confluence"]["url"]:
        check_credentials(data["confluence"], ("confluence",))
    _check_env_names(env, [str(name) for name in named])
    return Config(data=data, path=path)


def _env_names(schema: Mapping[str, Any], path: tuple[str, ...] = ()) -> set[str]:
    names: set[str] = set()
    for name, spec in schema.items():
        names |= _env_names(spec, (*path, name)) if isinstance(spec, dict) else {env_name(*path, name)}
    return names


def _check_env_names(env: Mapping[str, str], jira_names: list[str]) -> None:
    """Refuse a TASKHUB_<SECTION>_... variable that overrides nothing: a typo would otherwise be ignored."""
    known = _env_names(SCHEMA)
    known |= {env_name("jira", "environments", name, key) for name in jira_names for key in JIRA_ENV_KEYS}
    sections = tuple(env_name(section) + "_" for section in SCHEMA)
    for variable in sorted(env):
        if not variable.startswith(sections) or variable in known:
            continue
        if variable.startswith(env_name("jira", "environments") + "_"):
            # Secrets for environments this file does not list are allowed (one secret store
            # serving several deployments); a misspelt key is not.
            if any(variable.endswith("_" + key.upper()) for key in JIRA_ENV_KEYS):
                continue
            raise ConfigError(
                f"{variable}: unknown setting, a Jira environment variable ends in one of "
                f"{', '.join(key.upper() for key in JIRA_ENV_KEYS)}"
            )
        close = difflib.get_close_matches(variable, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{variable}: unknown setting, it overrides no key of config.yaml{hint}")


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice in one mapping (YAML forbids it; PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in lines:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {_key(key_node.value)} given twice (first on line {lines[key_node.value] + 1})",
                        key_node.start_mark,
                    )
                lines[key_node.value] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file; a missing file means the defaults."""
    env = os.environ if env is None else env
    file = Path(path or env.get("TASKHUB_CONFIG") or "config.yaml")
    if not file.exists():
        if path or env.get("TASKHUB_CONFIG"):
            raise ConfigError(f"TASKHUB_CONFIG: file not found: {file}")
        return parse({}, env)
    try:
        size = file.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{file}: is {size} bytes; a config file may be at most {MAX_CONFIG_BYTES} bytes")
        raw = yaml.load(file.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file}: is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    except RecursionError:
        raise ConfigError(f"{file}: is not valid YAML (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts (4300 digits)
        reason = (str(exc).splitlines() or [exc.__class__.__name__])[0][:150]
        raise ConfigError(f"{file}: is not valid YAML ({reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())[:200]  # one line, bounded
        raise ConfigError(f"{file}:{where} is not valid YAML ({reason})") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read ({exc.__class__.__name__})") from None
    return parse(raw, env, file)


DEFAULTS = _defaults(SCHEMA)
