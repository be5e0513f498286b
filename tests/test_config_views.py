"""The typed views of the configuration (settings.TASKHUB.scheduler.concurrency): they match SCHEMA key for key."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from taskhub import config

ROOT = Path(__file__).resolve().parent.parent


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (a key's clean default, before the view converts it) fits the field type ``hint``."""
    origin = typing.get_origin(hint)
    if origin is tuple:  # tuple[X, ...]: SCHEMA keeps a list
        (item, _) = typing.get_args(hint)
        return isinstance(value, list) and all(isinstance(v, item) for v in value)
    if origin is Mapping:
        key, item = typing.get_args(hint)
        return isinstance(value, dict) and all(isinstance(k, key) and isinstance(v, item) for k, v in value.items())
    if hint is float:
        return isinstance(value, float)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _keys(schema: Mapping[str, Any], view: type[Any], where: str) -> list[tuple[str, Any, Any]]:
    """Every (dotted key, Key, field type) of a section and its nested sections."""
    hints = typing.get_type_hints(view)
    found = []
    for item in dataclasses.fields(view):
        nested = item.metadata.get("section")
        if nested is not None:
            found += _keys(item.metadata.get("keys", schema[item.name]), nested, f"{where}.{item.name}")
        else:
            found.append((f"{where}.{item.name}", schema[item.name], hints[item.name]))
    return found


ALL_KEYS = [key for name, view in config.VIEWS.items() for key in _keys(config.SCHEMA[name], view, name)]


def test_every_section_has_a_view_and_a_config_property() -> None:
    assert set(config.VIEWS) == set(config.SCHEMA)
    loaded = config.parse({}, env={})
    for name, view in config.VIEWS.items():
        assert isinstance(getattr(loaded, name), view), name


@pytest.mark.parametrize(("dotted", "key", "hint"), ALL_KEYS, ids=[dotted for dotted, _, _ in ALL_KEYS])
def test_each_field_has_the_type_its_checker_returns(dotted: str, key: config.Key, hint: Any) -> None:
    """The default, once checked, fits the field's annotation: the view's types cannot drift from the checkers."""
    # jira.environments.<name>.url has no default (each environment must give one): try a URL.
    default = "https://jira.test" if dotted == "jira.environments.url" else key.default
    assert _matches(key.check(default), hint), f"{dotted}: {key.check(default)!r} is not {hint}"


def test_a_view_that_misses_or_adds_a_key_is_refused() -> None:
    missing = dataclasses.make_dataclass("Partial", [("url", str)], frozen=True)
    with pytest.raises(TypeError, match=r"missing \['idle_transaction_timeout', 'prepared_statements'\]"):
        config._check_views(config.SCHEMA["database"], missing, "database")
    extra = dataclasses.make_dataclass(
        "Extra",
        [
            ("url", str, dataclasses.field(repr=False)),
            ("idle_transaction_timeout", int),
            ("prepared_statements", bool),
            ("pool", int),
        ],
        frozen=True,
    )
    with pytest.raises(TypeError, match=r"not in SCHEMA \['pool'\]"):
        config._check_views(config.SCHEMA["database"], extra, "database")


def test_a_secret_shown_in_a_views_repr_is_refused() -> None:
    shown = dataclasses.make_dataclass(
        "Shown", [("url", str), ("idle_transaction_timeout", int), ("prepared_statements", bool)], frozen=True
    )
    with pytest.raises(TypeError, match="repr=False"):
        config._check_views(config.SCHEMA["database"], shown, "database")


def test_views_hold_the_validated_values() -> None:
    raw = yaml.safe_load((ROOT / "config.yaml.example").read_text(encoding="utf-8"))
    loaded = config.parse(raw, env={"TASKHUB_SCHEDULER_CONCURRENCY": "8", "TASKHUB_EMAIL_TO": "a@b.test,c@d.test"})
    assert loaded.scheduler.concurrency == 8 == loaded["scheduler"]["concurrency"]
    assert loaded.email.to == ("a@b.test", "c@d.test")
    for name in config.SCHEMA:
        view = getattr(loaded, name)
        for item in dataclasses.fields(view):
            value, raw_value = getattr(view, item.name), loaded[name][item.name]
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                assert dataclasses.asdict(value) == raw_value
            elif isinstance(raw_value, list):
                assert value == tuple(raw_value)
            elif name == "jira" and item.name == "environments":
                assert {k: dataclasses.asdict(v) for k, v in value.items()} == raw_value
            else:
                assert value == raw_value, f"{name}.{item.name}"


def test_a_view_cannot_change_the_configuration() -> None:
    loaded = config.parse({"mattermost": {"webhooks": {"ops": "https://chat.test/hooks/abc"}}}, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.scheduler.concurrency = 9  # type: ignore[misc]  # the point: frozen
    webhooks = loaded.mattermost.webhooks
    assert isinstance(webhooks, dict)
    webhooks["other"] = "https://chat.test/hooks/def"  # a copy
    assert list(loaded.mattermost.webhooks) == ["ops"]


def test_a_views_repr_hides_secrets() -> None:
    secret = "pl4nted-S3CRET-value-7f3a9c"
    loaded = config.parse(
        {"confluence": {"password": secret}, "web": {"secret_key": secret}, "email": {"smtp_password": secret}},
        env={},
    )
    for name in config.SCHEMA:
        assert secret not in repr(getattr(loaded, name)), name


def test_a_patched_value_is_seen_by_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests patch the validated dicts (monkeypatch.setitem) or replace settings.TASKHUB; views read both."""
    monkeypatch.setitem(settings.TASKHUB["scheduler"], "concurrency", 17)
    monkeypatch.setitem(settings.TASKHUB["reporting"]["confluence"], "title", "Patched")
    assert settings.TASKHUB.scheduler.concurrency == 17
    assert settings.TASKHUB.reporting.confluence.title == "Patched"
    monkeypatch.setattr(settings, "TASKHUB", config.parse({"scheduler": {"concurrency": 3}}, env={}))
    assert settings.TASKHUB.scheduler.concurrency == 3


def test_a_view_type_is_a_plain_type() -> None:
    """mypy reads the annotations: none is Any."""
    for _, _, hint in ALL_KEYS:
        assert hint is not Any
        assert not isinstance(hint, types.UnionType)
