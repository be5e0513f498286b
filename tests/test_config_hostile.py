"""Malformed and hostile config files: every one stops start-up with one clear line naming the key or the
file, never a traceback, a huge message, a hang or an exhausted memory.

Covers YAML alias bombs (billion laughs), huge and deeply nested files, wrong types at every key and
section, unknown keys at every level, non-UTF-8 bytes, a document that is a list or a scalar, Python
object tags, duplicate keys; and (hypothesis) arbitrary documents built from the schema's own names.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskhub import config
from taskhub.exceptions import ConfigError

ROOT = Path(__file__).resolve().parent.parent
LONGEST = 600  # characters: a clear error is short, whatever the file holds


def leaf_keys(schema: dict[str, Any] = config.SCHEMA, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    for name, spec in schema.items():
        keys += leaf_keys(spec, (*path, name)) if isinstance(spec, dict) else [(*path, name)]
    return keys


def sections(schema: dict[str, Any] = config.SCHEMA, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, spec in schema.items():
        if isinstance(spec, dict):
            found += [(*path, name), *sections(spec, (*path, name))]
    return found


def nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for name in reversed(path):
        value = {name: value}
    return value


def refusal(raw: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        config.parse(raw, env={})
    return clear(str(caught.value))


def clear(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message, message
    assert len(message) <= LONGEST, f"{len(message)} characters: {message[:300]}..."
    return message


def laughs(levels: int = 9) -> list[Any]:
    """The billion-laughs structure as YAML's aliases build it: shared lists, 9**levels leaves when expanded."""
    node: list[Any] = ["lol"] * 9
    for _ in range(levels):
        node = [node] * 9
    return node


def bomb_yaml(where: str) -> str:
    """A billion-laughs document whose expansion sits at ``where`` (a dotted key)."""
    lines = ["  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    *parents, leaf = where.split(".")
    head = [f"{'  ' * depth}{name}:" for depth, name in enumerate(parents)]
    indent = "  " * len(parents)
    body = [f"{indent}{leaf}:", *(indent + line for line in lines)]
    return "\n".join([*head, *body]) + "\n"


# --- wrong types at every level ----------------------------------------------------------------------------

WRONG = {
    "mapping": {"nested": {"deeper": [1, 2, {"x": None}]}},
    "nested list": [[["x"]]],
    "alias bomb": laughs(),
    "huge string": "x" * 5_000_000,
    "deep": None,  # filled below: 2,000 levels of lists
}
deep: Any = "leaf"
for _ in range(2000):
    deep = [deep]
WRONG["deep"] = deep
# Keys whose checker legitimately takes a mapping or a list (so a mapping / a list is not wrong for them).
TAKES_MAPPING = {("mattermost", "webhooks"), ("jira", "environments")}


@pytest.mark.parametrize(
    ("key", "kind"),
    # A mapping is the type of the TAKES_MAPPING keys; their entries are checked by their own tests.
    [(key, kind) for key in leaf_keys() for kind in WRONG if not (key in TAKES_MAPPING and kind == "mapping")],
    ids=lambda value: ".".join(value) if isinstance(value, tuple) else value,
)
def test_wrong_type_at_every_key_is_one_line_naming_it(key: tuple[str, ...], kind: str) -> None:
    try:
        config.parse(nest(key, WRONG[kind]), env={})
    except ConfigError as exc:
        message = clear(str(exc))
        assert message.startswith(".".join(key)), message
        secret = config_key(key).secret
        if secret:
            assert "lol" not in message and "xxx" not in message  # a mistyped secret is not echoed
        return
    # Only a string-typed key takes any string: the huge one is a (silly) valid value there.
    assert kind == "huge string", f"{'.'.join(key)} accepted {kind}"


def config_key(key: tuple[str, ...]) -> config.Key:
    spec: Any = config.SCHEMA
    for name in key:
        spec = spec[name]
    return spec


@pytest.mark.parametrize("value", [[1, 2], "text", 42, laughs(), True], ids=["list", "str", "int", "bomb", "bool"])
@pytest.mark.parametrize("section", sections(), ids=".".join)
def test_a_section_that_is_not_a_mapping_is_one_line(section: tuple[str, ...], value: Any) -> None:
    message = refusal(nest(section, value))
    assert message.startswith(f"{'.'.join(section)}: expected a mapping")


# jira.environments' keys are environment names, not a fixed set (checked by test_config.py).
@pytest.mark.parametrize(
    "path", [(), *(s for s in sections() if s != ("jira", "environments"))], ids=lambda p: ".".join(p) or "top"
)
def test_unknown_key_at_every_level_is_named_with_its_path(path: tuple[str, ...]) -> None:
    message = refusal(nest(path, {"colour": "red"}))
    assert message.startswith(".".join((*path, "colour")) + ": unknown key"), message


@pytest.mark.parametrize(
    "key", [{"a": 1}.keys().__iter__().__next__(), None, 5, "a\nb", "é" * 500, "\u202eevil"], ids=repr
)
def test_unknown_keys_of_any_shape_are_shown_on_one_short_line(key: Any) -> None:
    message = refusal({"scheduler": {key: 1}})
    assert message.startswith("scheduler.") and "unknown key" in message


def test_jira_environment_names_of_any_shape_are_one_line() -> None:
    message = refusal({"jira": {"environments": {"x" * 10_000 + "\n": {}}}})
    assert message.startswith("jira.environments: expected names of letters")


# --- hostile files ---------------------------------------------------------------------------------------------

FILES: dict[str, tuple[bytes, str]] = {
    # name: (content, what the one line says after the file name or key)
    "list": (b"- scheduler\n- jira\n", "expected a YAML mapping of sections at the top level"),
    "scalar": (b"42\n", "expected a YAML mapping of sections at the top level"),
    "string": (b"just some words\n", "expected a YAML mapping of sections at the top level"),
    "python object": (
        b"scheduler: !!python/object/apply:os.system ['touch /tmp/h_input_pwned']\n",
        "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
    "python name": (b"scheduler:\n  concurrency: !!python/name:os.system\n", "could not determine a constructor"),
    "not utf-8": (b"scheduler:\n  concurrency: \xff\xfe\n", "is not UTF-8 text (byte 0xff at offset 26)"),
    "utf-16": ("scheduler:\n  concurrency: 2\n".encode("utf-16"), "is not UTF-8 text"),
    "NUL": (b"scheduler:\n  concurrency: 2\x00\n", "is not valid YAML (unacceptable character #x0000"),
    "huge": (b"# " + b"x" * 2_000_000 + b"\n", "bytes; a config file may be at most 1048576 bytes"),
    "deep lists": (b"scheduler: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "is not valid YAML (nested too deeply)"),
    "deep mappings": (
        b"scheduler:\n  concurrency: " + b"{a: " * 5000 + b"1" + b"}" * 5000 + b"\n",
        "is not valid YAML (nested too deeply)",
    ),
    "huge integer": (b"scheduler:\n  concurrency: " + b"9" * 5000 + b"\n", "is not valid YAML (Exceeds the limit"),
    "duplicate key": (
        b"scheduler:\n  concurrency: 1\n  concurrency: 2\n",
        "line 3, column 3 is not valid YAML (key concurrency given twice (first on line 2))",
    ),
    "duplicate section": (b"scheduler: {}\nlog: {}\nscheduler: {}\n", "key scheduler given twice (first on line 1)"),
    "tab indent": (b"scheduler:\n\tconcurrency: 2\n", "is not valid YAML"),
    "unclosed": (b'scheduler: {concurrency: "2\n', "is not valid YAML"),
    "binary tag": (b"scheduler:\n  concurrency: !!binary aGVsbG8=\n", "scheduler.concurrency: expected a positive"),
    "date": (b"scheduler:\n  concurrency: 2026-01-01\n", "scheduler.concurrency: expected a positive integer, got"),
    "set": (b"scheduler:\n  concurrency: !!set {a, b}\n", "scheduler.concurrency: expected a positive integer"),
    "bomb at top": (bomb_yaml("laughs").encode(), "laughs: unknown key (known sections:"),
    "bomb in a key": (bomb_yaml("scheduler.concurrency").encode(), "scheduler.concurrency: expected a positive"),
    "bomb in a list key": (bomb_yaml("web.allowed_hosts").encode(), "web.allowed_hosts: expected a list of non-empty"),
    "bomb as a secret": (bomb_yaml("jira.password").encode(), "jira.password: expected a string, got <hidden>"),
    "bomb as a section": (bomb_yaml("log").encode(), "log: expected a mapping of keys, got [["),
    "bomb as jira environments": (
        bomb_yaml("jira.environments").encode(),
        "jira.environments: expected a mapping of name -> settings, got a list",
    ),
}


@pytest.mark.parametrize("name", list(FILES))
def test_hostile_file_is_one_clear_line(name: str, tmp_path: Path) -> None:
    content, expected = FILES[name]
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        config.load(path, env={})
    message = clear(str(caught.value))
    assert expected in message, message
    assert not Path("/tmp/h_input_pwned").exists()


def test_merge_keys_and_anchors_still_work(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "scheduler: &base\n  concurrency: 3\nreporting:\n  interval: 15\nlog:\n  level: debug\n", encoding="utf-8"
    )
    assert config.load(path, env={})["scheduler"]["concurrency"] == 3


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbfscheduler:\n  concurrency: 3\n")
    assert config.load(path, env={})["scheduler"]["concurrency"] == 3


def test_huge_environment_override_is_shown_bounded() -> None:
    message = refusal_env({"TASKHUB_SCHEDULER_CONCURRENCY": "9" * 3000 + "x"})
    assert message.startswith("scheduler.concurrency (from TASKHUB_SCHEDULER_CONCURRENCY): expected a positive")


def refusal_env(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        config.parse({}, env=env)
    return clear(str(caught.value))


@pytest.mark.parametrize("name", ["bomb in a key", "deep lists", "not utf-8", "python object"])
def test_manage_py_stops_with_one_line_not_a_traceback(name: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(FILES[name][0])
    env = {**os.environ, "TASKHUB_CONFIG": str(path), "DJANGO_SETTINGS_MODULE": "taskhub.settings"}
    done = subprocess.run(
        [sys.executable, "manage.py", "check_config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("TaskHub configuration error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and len(lines[0]) <= LONGEST + 40


# --- arbitrary documents ---------------------------------------------------------------------------------------

NAMES = sorted({name for key in leaf_keys() for name in key})
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=10),
    st.dates(),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=8) | st.integers(), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(document=st.dictionaries(st.sampled_from(list(config.SCHEMA)), DOCUMENTS, max_size=4) | DOCUMENTS)
def test_any_document_is_a_config_or_one_clear_line(document: Any) -> None:
    try:
        config.parse(document, env={})
    except ConfigError as exc:
        clear(str(exc))
