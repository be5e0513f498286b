"""config.yaml validation: one clear line per bad value, environment overrides, secrets kept out of messages."""

from __future__ import annotations

import copy
import fcntl
import io
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command

from taskhub import config
from taskhub.exceptions import ConfigError
from taskhub.logconfig import RedactSecrets, SharedRotatingFileHandler

ROOT = Path(__file__).resolve().parent.parent
SECRET = "pl4nted-S3CRET-value-7f3a9c"


def error_of(raw: Any, env: dict[str, str] | None = None) -> str:
    """Return the ConfigError message that parsing ``raw`` raises."""
    with pytest.raises(ConfigError) as caught:
        config.parse(raw, env=env or {})
    return str(caught.value)


# --- each class of bad value gives one line: key, expectation, value ------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # non-integer / non-positive integers
        ({"scheduler": {"concurrency": "five"}}, "scheduler.concurrency: expected a positive integer, got 'five'"),
        ({"scheduler": {"concurrency": 0}}, "scheduler.concurrency: expected a positive integer, got 0"),
        ({"scheduler": {"max_instances": -2}}, "scheduler.max_instances: expected a positive integer, got -2"),
        ({"scheduler": {"concurrency": 2.5}}, "scheduler.concurrency: expected a positive integer, got 2.5"),
        ({"scheduler": {"concurrency": True}}, "scheduler.concurrency: expected a positive integer, got True"),
        ({"log": {"backup_count": -1}}, "log.backup_count: expected an integer >= 0, got -1"),
        ({"log": {"max_bytes": "10MB"}}, "log.max_bytes: expected an integer >= 0, got '10MB'"),
        # numbers
        ({"scheduler": {"poll_interval": "fast"}}, "scheduler.poll_interval: expected a number > 0, got 'fast'"),
        ({"scheduler": {"poll_interval": 0}}, "scheduler.poll_interval: expected a number > 0, got 0"),
        ({"scheduler": {"poll_interval": float("nan")}}, "scheduler.poll_interval: expected a number > 0, got nan"),
        ({"reporting": {"interval": float("inf")}}, "reporting.interval: expected a number > 0, got inf"),
        # booleans
        ({"scheduler": {"coalesce": "maybe"}}, "scheduler.coalesce: expected true or false, got 'maybe'"),
        ({"web": {"debug": 2}}, "web.debug: expected true or false, got 2"),
        # enum
        (
            {"log": {"level": "LOUD"}},
            "log.level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
        ),
        # URLs
        (
            {"confluence": {"url": "confluence.example.com"}},
            "confluence.url: expected a URL starting with http:// or https://, got 'confluence.example.com'",
        ),
        (
            {"jira": {"url": "ftp://jira.example.com"}},
            "jira.url: expected a URL starting with http:// or https://, got 'ftp://jira.example.com'",
        ),
        # lists
        (
            {"reporting": {"report_types": {"confluence": True}}},
            "reporting.report_types: expected a list of non-empty strings, got {'confluence': True}",
        ),
        (
            {"reporting": {"report_types": ["confluence", "slack"]}},
            "reporting.report_types: expected a list drawn from confluence, mattermost, email, "
            "got ['confluence', 'slack']",
        ),
        ({"web": {"allowed_hosts": [""]}}, "web.allowed_hosts: expected a list of non-empty strings, got ['']"),
        ({"http": {"allowed_hosts": 5}}, "http.allowed_hosts: expected a list of non-empty strings, got 5"),
        # time zone
        (
            {"web": {"time_zone": "Mars/Olympus"}},
            "web.time_zone: expected an IANA time zone such as UTC or Europe/Paris, got 'Mars/Olympus'",
        ),
        # log format (the seed's format is Python logging's %-style)
        (
            {"log": {"format": "%(asctime)s %(nosuchfield)s"}},
            "log.format: expected a Python logging format string, got '%(asctime)s %(nosuchfield)s'",
        ),
        ({"log": {"format": "%(message"}}, "log.format: expected a Python logging format string, got '%(message'"),
        # strings
        ({"storage": {"path": ["a", "b"]}}, "storage.path: expected a string, got ['a', 'b']"),
        # database and broker URLs are secrets: the value is never echoed
        (
            {"database": {"url": "mysql://db/taskhub"}},
            "database.url: expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/NAME, got <hidden>",
        ),
        (
            {"broker": {"url": "kafka://broker:9092"}},
            "broker.url: expected filesystem://, redis://HOST:PORT/DB or amqp://USER:PASSWORD@HOST:PORT//, "
            "got <hidden>",
        ),
    ],
)
def test_bad_value_is_one_line_naming_key_expectation_and_value(raw: dict[str, Any], message: str) -> None:
    assert error_of(raw) == message
    assert "\n" not in message


def test_concurrency_five_is_exactly_the_documented_line() -> None:
    assert error_of({"scheduler": {"concurrency": "five"}}) == (
        "scheduler.concurrency: expected a positive integer, got 'five'"
    )


def test_unknown_section_is_reported_with_the_known_ones() -> None:
    message = error_of({"schedular": {"concurrency": 5}})
    assert message.startswith("schedular: unknown key (known sections: confluence, jira, scheduler, log,")


def test_unknown_key_is_reported_with_the_section_keys() -> None:
    message = error_of({"scheduler": {"concurency": 5}})
    assert message.startswith("scheduler.concurency: unknown key (known keys of scheduler: poll_interval, concurrency")


def test_unknown_nested_key_names_its_full_path() -> None:
    message = error_of({"reporting": {"confluence": {"pageid": "1"}}})
    assert message.startswith("reporting.confluence.pageid: unknown key (known keys of reporting.confluence: page_id, ")


@pytest.mark.parametrize("value", [5, "fast", [], ["concurrency"], False])
def test_section_that_is_not_a_mapping_is_refused(value: Any) -> None:
    assert error_of({"scheduler": value}) == f"scheduler: expected a mapping of keys, got {value!r}"


def test_empty_section_means_its_defaults() -> None:
    loaded = config.parse(yaml.safe_load("scheduler:\nlog:\n"), env={})
    assert loaded["scheduler"] == config.DEFAULTS["scheduler"]
    assert loaded["log"] == config.DEFAULTS["log"]


def test_top_level_must_be_a_mapping() -> None:
    assert "expected a YAML mapping of sections" in error_of(["scheduler"])


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("scheduler:\n  concurrency: 5\n    poll_interval: 3\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, env={})
    message = str(caught.value)
    assert message.startswith(f"{path}: line 3, column 18 is not valid YAML")
    assert "\n" not in message


def test_missing_file_named_by_taskhub_config_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="TASKHUB_CONFIG: file not found"):
        config.load(env={"TASKHUB_CONFIG": str(missing)})


def test_no_config_file_at_all_means_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = config.load(env={})
    assert loaded.path is None
    assert loaded["scheduler"] == config.DEFAULTS["scheduler"]


def test_file_values_are_read_and_typed(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("scheduler:\n  concurrency: 12\n  coalesce: yes\nlog:\n  level: debug\n")
    loaded = config.load(path, env={})
    assert loaded.path == path
    assert loaded["scheduler"]["concurrency"] == 12
    assert loaded["scheduler"]["coalesce"] is True
    assert loaded["log"]["level"] == "DEBUG"


# --- environment overrides --------------------------------------------------------------------------------


def test_env_overrides_scalar_keys_with_their_types() -> None:
    loaded = config.parse(
        {"scheduler": {"concurrency": 3}},
        env={
            "TASKHUB_SCHEDULER_CONCURRENCY": "8",
            "TASKHUB_SCHEDULER_COALESCE": "true",
            "TASKHUB_SCHEDULER_POLL_INTERVAL": "2.5",
            "TASKHUB_WEB_ALLOWED_HOSTS": "taskhub.example.com, 10.0.0.5",
            "TASKHUB_JIRA_PASSWORD": SECRET,
        },
    )
    assert loaded["scheduler"]["concurrency"] == 8
    assert loaded["scheduler"]["coalesce"] is True
    assert loaded["scheduler"]["poll_interval"] == 2.5
    assert loaded["web"]["allowed_hosts"] == ["taskhub.example.com", "10.0.0.5"]
    assert loaded["jira"]["password"] == SECRET


def test_env_overrides_nested_keys() -> None:
    loaded = config.parse(
        {"reporting": {"confluence": {"page_id": "1"}}}, env={"TASKHUB_REPORTING_CONFLUENCE_PAGE_ID": "424242"}
    )
    assert loaded["reporting"]["confluence"]["page_id"] == "424242"


def test_bad_env_override_names_the_variable() -> None:
    message = error_of({}, env={"TASKHUB_SCHEDULER_CONCURRENCY": "five"})
    assert message == (
        "scheduler.concurrency (from TASKHUB_SCHEDULER_CONCURRENCY): expected a positive integer, got 'five'"
    )


def test_env_overrides_jira_environment_keys() -> None:
    raw = {
        "jira": {
            "environments": {
                "env1.jira.com": {"url": "https://env1.jira.com", "username": "bot"},
                "staging": {"url": "https://staging.example.com"},
            }
        }
    }
    loaded = config.parse(
        raw,
        env={
            "TASKHUB_JIRA_ENVIRONMENTS_ENV1_JIRA_COM_PASSWORD": SECRET,
            "TASKHUB_JIRA_ENVIRONMENTS_STAGING_TOKEN": "staging-token-123",
            "TASKHUB_JIRA_ENVIRONMENTS_STAGING_VERIFY_SSL": "false",
        },
    )
    envs = loaded.jira_environments
    assert envs["env1.jira.com"]["password"] == SECRET
    assert envs["env1.jira.com"]["username"] == "bot"
    assert envs["staging"]["token"] == "staging-token-123"
    assert envs["staging"]["verify_ssl"] is False
    assert SECRET in loaded.secret_values()
    assert "staging-token-123" in loaded.secret_values()


# --- Jira environments ------------------------------------------------------------------------------------


def test_seed_single_jira_form_is_an_environment_named_by_host_and_default() -> None:
    loaded = config.parse(
        {"jira": {"url": "https://jira.corp.example:8443/jira", "username": "svc", "password": SECRET}}, env={}
    )
    envs = loaded.jira_environments
    assert set(envs) == {"jira.corp.example", "default"}
    assert (
        envs["default"]
        == envs["jira.corp.example"]
        == {
            "url": "https://jira.corp.example:8443/jira",
            "deployment": "auto",
            "username": "svc",
            "password": SECRET,
            "token": "",
            "email": "",
            "api_token": "",
            "verify_ssl": True,
            "timeout": 30.0,
        }
    )


def test_single_form_env_password_reaches_the_derived_environments() -> None:
    loaded = config.parse({"jira": {"url": "https://jira.example.com"}}, env={"TASKHUB_JIRA_PASSWORD": SECRET})
    assert loaded.jira_environments["default"]["password"] == SECRET
    assert loaded.jira_environments["jira.example.com"]["password"] == SECRET


def test_named_environments_sit_beside_the_single_form() -> None:
    loaded = config.parse(
        {
            "jira": {
                "url": "https://jira.example.com",
                "environments": {"env1.jira.com": {"url": "https://env1.jira.com"}},
            }
        },
        env={},
    )
    assert set(loaded.jira_environments) == {"env1.jira.com", "jira.example.com", "default"}


def test_empty_jira_url_leaves_only_named_environments() -> None:
    loaded = config.parse(
        {"jira": {"url": "", "environments": {"env2.jira.com": {"url": "https://env2.jira.com", "token": "t"}}}},
        env={},
    )
    assert set(loaded.jira_environments) == {"env2.jira.com"}


@pytest.mark.parametrize(
    ("environments", "message"),
    [
        ({"env1": {}}, "jira.environments.env1.url: expected a URL starting with http:// or https://, got None"),
        (
            {"env1": {"url": "https://env1", "pasword": "x"}},
            "jira.environments.env1.pasword: unknown key (known keys of jira.environments.env1: "
            "url, deployment, username, password, token, email, api_token, verify_ssl, timeout)",
        ),
        (
            {"env 1": {"url": "https://env1"}},
            "jira.environments: expected names of letters, digits, '.', '_' or '-', got 'env 1'",
        ),
        (
            {"env1": {"url": "https://env1", "timeout": 0}},
            "jira.environments.env1.timeout: expected a number > 0, got 0",
        ),
        ({"env1": "https://env1"}, "jira.environments.env1: expected a mapping of keys, got a str"),
        (["env1"], "jira.environments: expected a mapping of name -> settings, got a list"),
    ],
)
def test_bad_jira_environment_is_reported(environments: Any, message: str) -> None:
    assert error_of({"jira": {"environments": environments}}) == message


# --- secrets never appear in error messages ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "env"),
    [
        ({"jira": {"password": [SECRET]}}, {}),
        ({"confluence": {"token": {"value": SECRET}}}, {}),
        ({"database": {"url": f"mysql://taskhub:{SECRET}@db/taskhub"}}, {}),
        ({}, {"TASKHUB_DATABASE_URL": f"oracle://taskhub:{SECRET}@db/taskhub"}),
        ({}, {"TASKHUB_BROKER_URL": f"kafka://user:{SECRET}@broker"}),
        ({"mattermost": {"webhook_url": f"hooks/{SECRET}"}}, {}),
        ({}, {"TASKHUB_MATTERMOST_WEBHOOK_URL": f"chat.example.com/hooks/{SECRET}"}),
        ({"jira": {"environments": {"e1": {"url": "https://e1", "password": [SECRET]}}}}, {}),
        ({"jira": {"environments": [{"url": "https://e1", "password": SECRET}]}}, {}),
        ({"jira": {"environments": {"e1": f"https://e1 password={SECRET}"}}}, {}),
        ({"jira": f"password: {SECRET}"}, {}),
        ({"web": {"secret_key": [SECRET]}}, {}),
        ({"confluence": {"url": f"htps://bot:{SECRET}@confluence.example.com"}}, {}),
    ],
)
def test_secret_values_never_appear_in_error_messages(raw: dict[str, Any], env: dict[str, str]) -> None:
    message = error_of(raw, env)
    assert SECRET not in message
    assert message.split(":")[0]  # still names the key


def test_secret_values_lists_every_configured_secret() -> None:
    loaded = config.parse(
        {"confluence": {"password": "conf-pass-1"}, "web": {"secret_key": "web-secret-key-2"}},
        env={"TASKHUB_BROKER_URL": "redis://:broker-pass-3@127.0.0.1:6379/0"},
    )
    secrets = loaded.secret_values()
    assert {"conf-pass-1", "web-secret-key-2", "broker-pass-3"} <= set(secrets)
    assert "confluence_user" not in secrets  # a username is not a secret
    # Of a connection URL only the password is secret: "redis://" in a log line is not scrubbed.
    assert not any(s.startswith("redis://") for s in secrets)


def _redacting_logger(secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    logger = logging.getLogger(f"tests.redact.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream


def test_logs_redact_secrets_in_messages_arguments_and_tracebacks() -> None:
    logger, stream = _redacting_logger([SECRET])
    logger.info("connecting with password %s", SECRET)
    logger.warning("settings: %r", {"jira": {"password": SECRET}})
    try:
        raise RuntimeError(f"login failed for token {SECRET}")
    except RuntimeError:
        logger.exception("jira call failed")
    output = stream.getvalue()
    assert SECRET not in output
    assert output.count("<hidden>") == 3
    assert "connecting with password <hidden>" in output
    assert "RuntimeError: login failed for token <hidden>" in output


def test_logs_without_secrets_are_untouched() -> None:
    logger, stream = _redacting_logger([SECRET])
    logger.info("%d tasks queued for %s", 3, "nightly")
    assert stream.getvalue() == "INFO 3 tasks queued for nightly\n"


def test_settings_logging_redacts_configured_secrets() -> None:
    """The LOGGING dict settings build carries the configured secrets into its filter."""
    from django.conf import settings

    assert settings.LOGGING["filters"]["redact"]["secrets"] == settings.TASKHUB.secret_values()
    assert settings.TASKHUB["web"]["secret_key"] in settings.TASKHUB.secret_values()
    for handler in settings.LOGGING["handlers"].values():
        assert handler["filters"] == ["redact"]


def test_check_config_prints_no_secrets(settings: Any) -> None:
    settings.TASKHUB = config.parse(
        {"jira": {"password": SECRET}, "confluence": {"token": SECRET}},
        env={"TASKHUB_BROKER_URL": f"redis://:{SECRET}@127.0.0.1:6379/3"},
    )
    settings.CELERY_BROKER_URL = f"redis://:{SECRET}@127.0.0.1:6379/3"
    out = io.StringIO()
    call_command("check_config", stdout=out)
    text = out.getvalue()
    assert "configuration OK" in text
    assert "jira environments: jira.example.com, default" in text
    assert "broker:   redis" in text
    assert SECRET not in text


# --- config.yaml.example is the defaults ------------------------------------------------------------------


def test_config_example_parses_and_equals_the_builtin_defaults() -> None:
    example = config.load(ROOT / "config.yaml.example", env={})
    expected = copy.deepcopy(config.DEFAULTS)
    # The example's single Jira instance is exposed as two derived environments; the defaults hold none.
    derived = example.data["jira"].pop("environments")
    expected["jira"].pop("environments")
    assert example.data == expected
    assert set(derived) == {"jira.example.com", "default"}


def test_config_example_lists_every_schema_key_explicitly() -> None:
    """Every key is written out in the example (not just defaulted), so users can see and edit it."""
    raw = yaml.safe_load((ROOT / "config.yaml.example").read_text())

    def keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
        found = set()
        for name, value in tree.items():
            if isinstance(value, dict) and name != "environments":
                found |= keys(value, f"{prefix}{name}.")
            else:
                found.add(f"{prefix}{name}")
        return found

    assert keys(raw) == keys(config.DEFAULTS)


def test_parse_does_not_read_the_process_environment_when_given_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKHUB_SCHEDULER_CONCURRENCY", "five")
    assert config.parse({}, env={})["scheduler"]["concurrency"] == 5
    with pytest.raises(ConfigError):
        config.parse({})


def test_shared_log_handler_locks_exclude_a_forked_child(tmp_path: Path) -> None:
    """Celery's prefork children inherit the handler: their lock must still exclude the parent's."""
    handler = SharedRotatingFileHandler(tmp_path / "app.log", maxBytes=1000, backupCount=1)
    handler.emit(logging.makeLogRecord({"msg": "parent line"}))
    fd = handler._lock_file()
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            try:
                fcntl.flock(handler._lock_file(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                os._exit(1)  # got the lock the parent holds: no exclusion
            except BlockingIOError:
                os._exit(0)
        _, status = os.waitpid(child, 0)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        handler.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_shared_log_handler_follows_a_rotation_done_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    first = SharedRotatingFileHandler(path, maxBytes=200, backupCount=3)
    second = SharedRotatingFileHandler(path, maxBytes=200, backupCount=3)
    for handler in (first, second):
        handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        for index in range(20):
            (first if index % 2 else second).emit(logging.makeLogRecord({"msg": f"line {index:02d} " + "x" * 20}))
    finally:
        first.close()
        second.close()
    files = sorted(tmp_path.glob("app.log*"))
    assert [f.name for f in files] == ["app.log", "app.log.1", "app.log.2", "app.log.3", "app.log.lock"]
    assert all(f.stat().st_size <= 200 for f in files)
    assert path.read_text().splitlines()[-1].startswith("line 19")


def test_shared_log_handler_counts_what_other_processes_appended(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    first = SharedRotatingFileHandler(path, maxBytes=200, backupCount=3)
    second = SharedRotatingFileHandler(path, maxBytes=200, backupCount=3)
    try:
        first.emit(logging.makeLogRecord({"msg": "a" * 49}))  # 50 bytes
        second.emit(logging.makeLogRecord({"msg": "b" * 99}))  # 150 in the file
        first.emit(logging.makeLogRecord({"msg": "c" * 59}))  # would make 210: rotate first
    finally:
        first.close()
        second.close()
    assert path.read_text() == "c" * 59 + "\n"
    assert (tmp_path / "app.log.1").stat().st_size == 150


# --- environment variables that override nothing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "TASKHUB_SCHEDULER_CONCURENCY",
            "TASKHUB_SCHEDULER_CONCURENCY: unknown setting, it overrides no key of config.yaml; "
            "did you mean TASKHUB_SCHEDULER_CONCURRENCY?",
        ),
        (
            "TASKHUB_JIRA_PASSWORT",
            "TASKHUB_JIRA_PASSWORT: unknown setting, it overrides no key of config.yaml; "
            "did you mean TASKHUB_JIRA_PASSWORD?",
        ),
        (
            "TASKHUB_JIRA_ENVIRONMENTS_ENV1_JIRA_COM_PASWORD",
            "TASKHUB_JIRA_ENVIRONMENTS_ENV1_JIRA_COM_PASWORD: unknown setting, a Jira environment variable ends in one "
            "of URL, DEPLOYMENT, USERNAME, PASSWORD, TOKEN, EMAIL, API_TOKEN, VERIFY_SSL, TIMEOUT",
        ),
    ],
)
def test_misspelt_override_variable_is_refused(variable: str, message: str) -> None:
    assert error_of({}, env={variable: SECRET}) == message


def test_variables_outside_the_config_sections_are_left_alone() -> None:
    env = {"TASKHUB_CONFIG": "x.yaml", "TASKHUB_TEST_STORAGE": "/tmp/x", "TASKHUB_BENCH_STORAGE": "/tmp/y"}
    assert config.parse({}, env=env)["scheduler"]["concurrency"] == 5


def test_secret_for_a_jira_environment_this_file_does_not_list_is_allowed() -> None:
    loaded = config.parse({}, env={"TASKHUB_JIRA_ENVIRONMENTS_ENV2_JIRA_COM_TOKEN": SECRET})
    assert "env2.jira.com" not in loaded.jira_environments
    assert SECRET not in loaded.secret_values()
