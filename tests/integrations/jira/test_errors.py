"""Jira failures become IntegrationError with the environment, operation and status; 4xx permanent, 5xx not."""

from __future__ import annotations

import socket
import time

import pytest

from integrations.jira.client import get_client
from integrations.jira.services import ExportRequest, export_issues
from taskhub.exceptions import IntegrationError
from tests.integrations.jira.conftest import ENV1, ENV2, configure


def export(tmp_path, key_type="root_ticket", key_value="PROJ-123", env=ENV1):
    return export_issues(ExportRequest(envs=[env], key_type=key_type, key_value=key_value), tmp_path / "out.xlsx")


def test_wrong_password_is_permanent_and_names_the_keys_to_fix(fake_jira, monkeypatch, tmp_path):
    configure(monkeypatch, ENV1, fake_jira, password="wrong")
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path)
    error = caught.value
    assert error.status == 401 and error.permanent
    assert error.system == "Jira env1.jira.com"
    assert "authentication failed" in str(error)
    assert "jira.environments.env1.jira.com.username" in str(error)
    assert "TASKHUB_JIRA_ENVIRONMENTS_ENV1_JIRA_COM_PASSWORD" in str(error)
    assert "wrong" not in str(error)
    assert not (tmp_path / "out.xlsx").exists()


def test_wrong_token_is_permanent(fake_jira2, monkeypatch, tmp_path):
    configure(monkeypatch, ENV2, fake_jira2, token="not-the-token")
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path, env=ENV2)
    assert caught.value.status == 401 and caught.value.permanent
    assert "not-the-token" not in str(caught.value)


def test_missing_root_ticket_is_a_permanent_404_naming_the_issue(fake_jira, tmp_path):
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path, key_value="PROJ-999")
    assert caught.value.status == 404 and caught.value.permanent
    assert str(caught.value).startswith("Jira env1.jira.com read issue PROJ-999 (HTTP 404): not found")
    assert "Issue Does Not Exist" in str(caught.value)


def test_missing_project_is_permanent_with_jiras_reason(fake_jira, tmp_path):
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path, key_type="project", key_value="NOPE")
    assert caught.value.status == 400 and caught.value.permanent
    assert "The value 'NOPE' does not exist for the field 'project'." in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient_and_not_retried_by_the_library(fake_jira, tmp_path, status):
    fake_jira.fail_next(status, path="/search")
    started = time.monotonic()
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path, key_type="project", key_value="PROJ")
    assert caught.value.status == status and not caught.value.permanent
    assert "Jira server error (transient)" in str(caught.value)
    # The error may be the last attempt's: it promises no retry.
    assert "will retry" not in str(caught.value)
    # One request only: the library's own retries (sleeping 10 s and more on 429/503) are off.
    assert fake_jira.count("GET", "/search") == 1
    assert time.monotonic() - started < 10  # not the library's back-off of 10 s and more


def test_500_then_success_works_on_the_next_try(fake_jira, tmp_path):
    fake_jira.fail_next(500, path="/search")
    with pytest.raises(IntegrationError):
        export(tmp_path, key_type="project", key_value="PROJ")
    summary = export(tmp_path, key_type="project", key_value="PROJ")
    assert summary["total"] == 8


def test_slow_jira_times_out_as_a_transient_error(fake_jira, monkeypatch, tmp_path):
    configure(monkeypatch, ENV1, fake_jira, timeout=0.3)
    fake_jira.delay = 1.5
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path)
    assert not caught.value.permanent and caught.value.status is None
    assert "timed out after 0.3 s (jira.environments.env1.jira.com.timeout)" in str(caught.value)
    assert fake_jira.count("GET") == 1  # the first request timed out (recorded on arrival) and was not repeated


def test_unreachable_jira_is_a_transient_connection_error(monkeypatch, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setitem(
        __import__("django.conf").conf.settings.TASKHUB["jira"]["environments"],
        ENV1,
        {
            "url": f"http://127.0.0.1:{port}",
            "username": "u",
            "password": "p",
            "token": "",
            "verify_ssl": True,
            "timeout": 2.0,
        },
    )
    started = time.monotonic()
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path)
    assert not caught.value.permanent
    assert f"cannot connect to http://127.0.0.1:{port} (connection refused)" in str(caught.value)
    assert time.monotonic() - started < 10  # not the library's back-off of 20 s and more


def test_unconfigured_environment_is_permanent_and_lists_configured_ones(fake_jira):
    with pytest.raises(IntegrationError) as caught:
        get_client("nope.jira.com")
    assert caught.value.permanent
    assert "no Jira environment named 'nope.jira.com'" in str(caught.value)
    assert ENV1 in str(caught.value)


def test_forbidden_is_permanent(fake_jira, tmp_path):
    fake_jira.fail_next(403, path="/issue/")
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path)
    assert caught.value.status == 403 and caught.value.permanent
    assert "permission denied" in str(caught.value)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_untrusted_certificate_is_permanent_and_verify_ssl_false_accepts_it(jira_servers, monkeypatch, tmp_path):
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = jira_servers(tls=(str(cert), str(key)))
    server.add_issue("PROJ-123", "Over TLS")
    configure(monkeypatch, ENV1, server)
    with pytest.raises(IntegrationError) as caught:
        export(tmp_path)
    assert caught.value.permanent
    assert f"TLS certificate of {server.url} not accepted" in str(caught.value)
    assert "jira.environments.env1.jira.com.verify_ssl" in str(caught.value)
    configure(monkeypatch, ENV1, server, verify_ssl=False)
    assert export(tmp_path)["total"] == 1
