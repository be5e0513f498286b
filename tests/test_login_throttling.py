"""Failed logins lock out a user name and an address (admin, API login page, HTTP Basic), audited, unlockable."""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from axes.models import AccessAttempt, AccessFailureLog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from taskhub import config
from taskhub.exceptions import ConfigError

LIMIT = settings.AXES_FAILURE_LIMIT
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def users(db: None) -> dict[str, Any]:
    model = get_user_model()
    return {
        "alice": model.objects.create_user("alice", password="pw-alice-123", is_staff=True, is_superuser=True),
        "bob": model.objects.create_user("bob", password="pw-bob-123", is_staff=True, is_superuser=True),
    }


def admin_login(username: str, password: str, address: str = "198.51.100.1") -> Any:
    """POST the admin login form from ``address``; a fresh client each time (no cookies carried over)."""
    client = Client(REMOTE_ADDR=address)
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def api_login(username: str, password: str, address: str = "198.51.100.1") -> Any:
    """GET /tasks with HTTP Basic credentials from ``address``."""
    client = APIClient(REMOTE_ADDR=address)
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client.get("/tasks")


def api_page_login(username: str, password: str, address: str = "198.51.100.1") -> Any:
    """POST the browsable API's login page (rest_framework.urls) from ``address``."""
    client = Client(REMOTE_ADDR=address)
    return client.post("/api-auth/login/", {"username": username, "password": password, "next": "/tasks"})


def ok(entry: Callable[..., Any], response: Any) -> bool:
    """Whether the login succeeded: admin and API page redirect to `next`, the API answers 200."""
    return response.status_code == (200 if entry is api_login else 302)


def refused(entry: Callable[..., Any], response: Any) -> bool:
    """Whether a wrong password was refused as such (not as a lockout)."""
    return response.status_code == (401 if entry is api_login else 200)


ENTRIES = [
    pytest.param(admin_login, id="admin"),
    pytest.param(api_login, id="api-basic"),
    pytest.param(api_page_login, id="api-login-page"),
]


@pytest.mark.parametrize("entry", ENTRIES)
def test_one_user_name_is_locked_after_the_limit_from_any_address(entry: Callable[..., Any], users: Any) -> None:
    for n in range(LIMIT - 1):
        assert refused(entry, entry("alice", "wrong", address=f"203.0.113.{n + 1}"))
    locking = entry("alice", "wrong", address="203.0.113.200")
    assert locking.status_code == 429
    # The right password, from an address never seen, is still refused: the user name is locked.
    locked = entry("alice", "pw-alice-123", address="192.0.2.77")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode() and locked["Retry-After"] == str(15 * 60)
    # Another user from those addresses is not concerned (each address saw fewer than LIMIT failures).
    assert ok(entry, entry("bob", "pw-bob-123", address="203.0.113.1"))


@pytest.mark.parametrize("entry", ENTRIES)
def test_one_address_is_locked_after_the_limit_whatever_the_names(entry: Callable[..., Any], users: Any) -> None:
    for n in range(LIMIT - 1):
        assert refused(entry, entry(f"guess{n}", "wrong", address="203.0.113.9"))
    assert entry("root", "wrong", address="203.0.113.9").status_code == 429
    # A real user with the right password from that address is refused; from elsewhere they log in.
    assert entry("bob", "pw-bob-123", address="203.0.113.9").status_code == 429
    assert ok(entry, entry("bob", "pw-bob-123", address="203.0.113.10"))


def test_failures_count_across_entry_points(users: Any) -> None:
    """Guesses split between the admin, the API login page and HTTP Basic add up to one count."""
    entries = [admin_login, api_login, api_page_login]
    for n in range(LIMIT):
        entries[n % 3]("alice", "wrong", address=f"203.0.113.{n + 1}")
    assert admin_login("alice", "pw-alice-123").status_code == 429
    assert api_login("alice", "pw-alice-123").status_code == 429
    assert api_page_login("alice", "pw-alice-123").status_code == 429


def test_a_success_clears_only_the_users_own_failures(users: Any) -> None:
    """An attacker who logs into their own account between guesses does not reset the victim's count."""
    for _ in range(LIMIT - 1):
        assert refused(admin_login, admin_login("alice", "wrong", address="203.0.113.5"))
    # alice logs in: her count goes back to zero, so she has LIMIT - 1 more tries before a lockout.
    assert ok(admin_login, admin_login("alice", "pw-alice-123", address="192.0.2.1"))
    assert not AccessAttempt.objects.filter(username="alice").exists()
    # Now bob (the attacker) guesses at alice's password from one address, logging into his own
    # account after every guess: his successes clear his failures, never alice's or the address's.
    for _ in range(LIMIT - 1):
        assert refused(api_login, api_login("alice", "wrong", address="203.0.113.6"))
        assert ok(api_login, api_login("bob", "pw-bob-123", address="203.0.113.6"))
    assert api_login("alice", "wrong", address="203.0.113.6").status_code == 429
    assert api_login("alice", "pw-alice-123", address="192.0.2.1").status_code == 429


def test_basic_auth_success_resets_the_count(users: Any) -> None:
    for _ in range(LIMIT - 1):
        api_login("alice", "wrong", address="203.0.113.5")
    assert ok(api_login, api_login("alice", "pw-alice-123", address="203.0.113.99"))
    for _ in range(LIMIT - 1):  # a full count again before the lockout
        assert refused(api_login, api_login("alice", "wrong", address="203.0.113.7"))


def test_a_lockout_ends_after_the_lockout_time(users: Any, _clock: Any) -> None:
    for _ in range(LIMIT):
        admin_login("alice", "wrong")
    _clock.shift(dt.timedelta(minutes=14))
    assert admin_login("alice", "pw-alice-123").status_code == 429  # still locked (and the clock restarts)
    _clock.shift(dt.timedelta(minutes=15, seconds=1))
    assert ok(admin_login, admin_login("alice", "pw-alice-123"))


def test_each_failure_and_lockout_is_recorded_for_the_operator(users: Any) -> None:
    for _ in range(LIMIT):
        api_login("mallory", "secret-guess-1", address="203.0.113.66")
    failures = AccessFailureLog.objects.filter(username="mallory").order_by("attempt_time", "pk")
    assert failures.count() == LIMIT
    assert [f.locked_out for f in failures] == [False] * (LIMIT - 1) + [True]
    assert {f.ip_address for f in failures} == {"203.0.113.66"}
    # The operator sees them in the admin; the guessed password is stored nowhere.
    operator = Client()
    operator.force_login(users["alice"])
    page = operator.get("/admin/axes/accessfailurelog/").content.decode()
    assert "mallory" in page and "203.0.113.66" in page
    attempts = operator.get("/admin/axes/accessattempt/").content.decode()
    assert "mallory" in attempts
    for row in AccessAttempt.objects.all():
        assert "secret-guess-1" not in row.get_data + row.post_data


def test_the_admin_form_password_is_not_stored_with_the_failure(users: Any) -> None:
    admin_login("alice", "typed-password-xyz")
    assert AccessAttempt.objects.get(username="alice").post_data.count("typed-password-xyz") == 0


def test_unlock_command_lifts_a_user_name_or_an_address(users: Any) -> None:
    for n in range(LIMIT):
        admin_login("alice", "wrong", address=f"203.0.113.{n + 1}")
    for n in range(LIMIT):
        admin_login(f"guess{n}", "wrong", address="203.0.113.50")
    out = io.StringIO()
    call_command("unlock_login", "--list", stdout=out)
    assert "locked: user name alice" in out.getvalue() and "locked: address 203.0.113.50" in out.getvalue()

    out = io.StringIO()
    call_command("unlock_login", "--user", "alice", stdout=out)
    assert f"Unlocked user name 'alice': {LIMIT} failure record(s) cleared." in out.getvalue()
    assert ok(admin_login, admin_login("alice", "pw-alice-123", address="192.0.2.3"))
    assert admin_login("bob", "pw-bob-123", address="203.0.113.50").status_code == 429  # the address still is

    call_command("unlock_login", "--address", "203.0.113.50", stdout=io.StringIO())
    assert ok(admin_login, admin_login("bob", "pw-bob-123", address="203.0.113.50"))
    out = io.StringIO()
    call_command("unlock_login", "--list", stdout=out)
    assert out.getvalue().strip() == "Nothing is locked."
    # The record of what happened stays for the operator.
    assert AccessFailureLog.objects.filter(username="alice", locked_out=True).exists()


def test_unlock_all_and_bad_arguments(users: Any) -> None:
    for _ in range(LIMIT):
        api_login("alice", "wrong")
    call_command("unlock_login", "--all", stdout=io.StringIO())
    assert ok(api_login, api_login("alice", "pw-alice-123"))
    with pytest.raises(CommandError, match="say what to unlock"):
        call_command("unlock_login")
    with pytest.raises(CommandError, match=r"--address: 'nope' is not an IP address"):
        call_command("unlock_login", "--address", "nope")


def test_a_forged_forwarded_header_is_ignored_by_default(users: Any) -> None:
    """Without login_client_ip_header a client cannot pose as many addresses with X-Forwarded-For."""
    for n in range(LIMIT):
        Client(REMOTE_ADDR="203.0.113.8", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").post(
            "/admin/login/", {"username": f"guess{n}", "password": "wrong"}
        )
    assert admin_login("bob", "pw-bob-123", address="203.0.113.8").status_code == 429


def test_behind_a_proxy_the_last_forwarded_entry_is_the_address(users: Any, settings: Any) -> None:
    settings.LOGIN_CLIENT_IP_HEADER = "X-Forwarded-For"  # from security.login_client_ip_header
    proxy = "10.1.1.1"
    for n in range(LIMIT):  # the client forges the first entries; the proxy appends the address it saw
        Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}, 203.0.113.44").post(
            "/admin/login/", {"username": f"guess{n}", "password": "wrong"}
        )
    assert AccessAttempt.objects.filter(ip_address="203.0.113.44").count() == LIMIT
    # Other clients behind the same proxy are not locked with that one.
    response = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.45").post(
        "/admin/login/", {"username": "bob", "password": "pw-bob-123"}
    )
    assert response.status_code == 302
    # A garbage header falls back to the connection's address instead of failing the request.
    garbage = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="not-an-ip").post(
        "/admin/login/", {"username": "bob", "password": "wrong"}
    )
    assert garbage.status_code == 200 and AccessAttempt.objects.filter(ip_address=proxy).exists()


def test_an_ipv6_client_counts_as_its_64_and_a_mapped_ipv4_as_itself(users: Any) -> None:
    """Hopping between addresses of one /64, or writing IPv4 as ::ffff:a.b.c.d, is the same address."""
    for n in range(LIMIT):
        admin_login(f"guess{n}", "wrong", address=f"2001:db8:1:2::{n + 1:x}")
    assert admin_login("bob", "pw-bob-123", address="2001:db8:1:2:ffff::9").status_code == 429
    assert ok(admin_login, admin_login("bob", "pw-bob-123", address="2001:db8:1:3::1"))  # another /64
    call_command("unlock_login", "--address", "2001:db8:1:2::77", stdout=io.StringIO())
    assert ok(admin_login, admin_login("bob", "pw-bob-123", address="2001:db8:1:2::1"))

    for n in range(LIMIT):
        address = "203.0.113.30" if n % 2 else "::ffff:203.0.113.30"
        admin_login(f"guess{n}", "wrong", address=address)
    assert admin_login("bob", "pw-bob-123", address="203.0.113.30").status_code == 429


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"login_failure_limit": 0}, "security.login_failure_limit: expected a positive integer, got 0"),
        ({"login_lockout_minutes": 0}, "security.login_lockout_minutes: expected a number > 0, got 0"),
        ({"login_client_ip_header": "X Forwarded"}, "security.login_client_ip_header: expected an HTTP header name"),
    ],
)
def test_bad_throttling_config_names_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        config.parse({"security": raw}, {})
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_throttling_config_from_the_environment() -> None:
    loaded = config.parse(
        {}, {"TASKHUB_SECURITY_LOGIN_FAILURE_LIMIT": "12", "TASKHUB_SECURITY_LOGIN_LOCKOUT_MINUTES": "2.5"}
    )
    assert loaded["security"]["login_failure_limit"] == 12
    assert loaded["security"]["login_lockout_minutes"] == 2.5
