"""Cloud / Server configuration keys: deployment, email + api_token, confluence.space_key, checked at start-up."""

from __future__ import annotations

from typing import Any

import pytest

from taskhub import config
from taskhub.exceptions import ConfigError

TOKEN = "ATATT3xFfGF0-secret-token"


def error_of(raw: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        config.parse(raw, env=env or {})
    return str(caught.value)


def jira_env(**settings: Any) -> dict[str, Any]:
    return {"jira": {"url": "", "environments": {"acme": {"url": "https://acme.atlassian.net", **settings}}}}


def test_cloud_environment_takes_email_and_api_token_from_file_and_environment() -> None:
    loaded = config.parse(
        jira_env(deployment="cloud", email="bot@acme.example"),
        env={"TASKHUB_JIRA_ENVIRONMENTS_ACME_API_TOKEN": TOKEN},
    )
    acme = loaded.jira_environments["acme"]
    assert (acme["deployment"], acme["email"], acme["api_token"]) == ("cloud", "bot@acme.example", TOKEN)
    assert TOKEN in loaded.secret_values()  # scrubbed from logs like every secret


def test_deployment_defaults_to_auto_and_is_checked() -> None:
    assert config.parse(jira_env(username="u", password="p"), env={}).jira_environments["acme"]["deployment"] == "auto"
    assert error_of(jira_env(deployment="saas")) == (
        "jira.environments.acme.deployment: expected one of auto, cloud, server, got 'saas'"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"deployment": "cloud", "email": "bot@acme.example"},
            "jira.environments.acme.api_token: required on Atlassian Cloud (with jira.environments.acme.email); "
            "create one at id.atlassian.com > Security > API tokens, set it in "
            "TASKHUB_JIRA_ENVIRONMENTS_ACME_API_TOKEN",
        ),
        (
            {"api_token": TOKEN},
            "jira.environments.acme.email: required on Atlassian Cloud with jira.environments.acme.api_token: "
            "the e-mail address of the account the token belongs to",
        ),
        (
            {"deployment": "cloud", "email": "bot@acme.example", "api_token": TOKEN, "token": "pat"},
            "jira.environments.acme.token: a Bearer token is refused by Atlassian Cloud; put the API token in "
            "jira.environments.acme.api_token (and the account's e-mail in jira.environments.acme.email)",
        ),
        (
            {"deployment": "server", "email": "bot@acme.example", "api_token": TOKEN},
            "jira.environments.acme.email: is for Atlassian Cloud, but jira.environments.acme.deployment is server "
            "(use username + password, or token for a personal access token)",
        ),
        (
            {"email": "not-an-address"},
            "jira.environments.acme.email: expected the e-mail address of an Atlassian account, such as "
            "bot@example.com, got 'not-an-address'",
        ),
    ],
)
def test_credentials_that_cannot_work_are_refused_in_one_line_naming_the_key(settings, message) -> None:
    text = error_of(jira_env(**settings))
    assert text == message and "\n" not in text and TOKEN not in text


def test_a_mistyped_api_token_is_not_echoed() -> None:
    text = error_of(jira_env(email="bot@acme.example", api_token=f"{TOKEN} trailing words"))
    assert text == (
        "jira.environments.acme.api_token: expected an Atlassian API token (one word, at most 1024 characters), "
        "got <hidden>"
    )


def test_the_single_jira_form_takes_cloud_keys_too() -> None:
    loaded = config.parse(
        {"jira": {"url": "https://acme.atlassian.net", "email": "bot@acme.example"}},
        env={"TASKHUB_JIRA_API_TOKEN": TOKEN},
    )
    assert loaded.jira_environments["default"]["api_token"] == TOKEN
    assert error_of({"jira": {"url": "https://acme.atlassian.net", "deployment": "cloud"}}).startswith(
        "jira.api_token: required on Atlassian Cloud"
    )


def test_confluence_cloud_keys_and_their_checks() -> None:
    loaded = config.parse(
        {"confluence": {"url": "https://acme.atlassian.net", "deployment": "cloud", "email": "bot@acme.example"}},
        env={"TASKHUB_CONFLUENCE_API_TOKEN": TOKEN, "TASKHUB_CONFLUENCE_SPACE_KEY": "OPS"},
    )
    assert loaded["confluence"]["space_key"] == "OPS" and loaded["confluence"]["api_token"] == TOKEN
    assert error_of({"confluence": {"url": "https://acme.atlassian.net", "deployment": "cloud"}}).startswith(
        "confluence.api_token: required on Atlassian Cloud (with confluence.email)"
    )
