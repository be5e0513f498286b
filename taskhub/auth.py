"""Login throttling around django-axes: lockouts per user name and per address, for the admin and the API.

django-axes counts every failed ``authenticate()`` (admin login, the API's login page, HTTP Basic on the API),
keeps each failure in its ``AccessFailureLog`` and its counters in ``AccessAttempt`` (both in the admin), and
refuses a user name or an address that reached ``security.login_failure_limit`` failures within
``security.login_lockout_minutes``, whatever the password. This module adds what TaskHub needs around it:
the client's address from a trusted proxy's header only when configured, a 429 for HTTP Basic, a reset
on success that clears only the user's own failures, and a short memory of HTTP Basic credentials that
verified (``RememberedCredentials``), so a script sending Basic on every request does not pay the password
hash (about half a second of CPU with Django's PBKDF2 cost) each time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, NamedTuple

from axes.backends import AxesStandaloneBackend
from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from drf_spectacular.authentication import BasicScheme
from rest_framework import exceptions, status
from rest_framework.authentication import BasicAuthentication

logger = logging.getLogger(__name__)


def lockout_message() -> str:
    """Return the message a locked-out client gets (admin page and API alike)."""
    minutes = settings.AXES_COOLOFF_TIME.total_seconds() / 60
    return (
        f"Too many failed logins for this user name or from this address: logins are refused for {minutes:g} "
        "minutes after the last failure, even with the right password. An operator can lift this with "
        "`manage.py unlock_login`."
    )


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """Answer a locked-out login page (admin, API login) with 429, the message and Retry-After."""
    response = HttpResponse(lockout_message(), status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


def normalise_address(value: str) -> str | None:
    """Return the address failures are counted under, or None if ``value`` is not an IP address.

    An IPv4 address stands for itself (also written IPv4-mapped, ``::ffff:203.0.113.7``); an IPv6 address
    counts as its /64 network, the smallest block a client is usually given, or one client would have 2**64
    addresses to spread its guesses over.
    """
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False).network_address)
    return str(address)


def client_ip(request: HttpRequest) -> str | None:
    """Return the client's address (see normalise_address): the connection's, or the proxy header's last entry."""
    header = settings.LOGIN_CLIENT_IP_HEADER
    if header:
        # The proxy appends the address it saw; entries before it are whatever the client sent.
        value = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        forwarded = normalise_address(value.split(",")[-1]) if value else None
        if forwarded:
            return forwarded
    return normalise_address(request.META.get("REMOTE_ADDR", "") or "")


class LockoutBackend(AxesStandaloneBackend):
    """Refuse a locked-out user name or address before any password is checked."""

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        # A call without a request does not come from a network client (the test client's login(), a
        # shell): nothing to attribute it to, so it is neither counted nor refused here.
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)


class LoginLockedOut(exceptions.APIException):
    """HTTP Basic credentials of a locked-out user name or address."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "login_locked_out"

    def __init__(self) -> None:
        super().__init__(lockout_message())
        self.wait = int(settings.AXES_COOLOFF_TIME.total_seconds())


class _Remembered(NamedTuple):
    expires: float  # time.monotonic()
    password_hash: str  # the user's stored hash when the credentials verified
    digest: bytes  # HMAC of the user name and password under SECRET_KEY; the password itself is not kept


class RememberedCredentials:
    """HTTP Basic credentials that verified in this process within the last ``ttl`` seconds.

    Django's password hash costs about half a second of CPU by design; HTTP Basic sends the password with
    every request, so each request would pay it. A success is remembered as an HMAC (keyed by SECRET_KEY) of
    the user name and password, beside the user's stored hash at that moment. A later request with the same
    credentials is accepted without hashing when the HMAC matches, the user still exists and is active, and
    the stored hash has not changed (a password change or reset forgets it). Nothing is remembered of a
    failure: every wrong password is hashed and counted by django-axes as before, and a locked-out user name
    is refused even with remembered credentials.
    """

    def __init__(self, ttl: float = 300, size: int = 1024) -> None:
        self.ttl, self.size = ttl, size
        self._entries: OrderedDict[str, _Remembered] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(username: str, password: str) -> bytes:
        key = settings.SECRET_KEY.encode()
        return hmac.new(key, f"{username}\0{password}".encode(), hashlib.sha256).digest()

    def remember(self, username: str, password: str, user: Any) -> None:
        entry = _Remembered(time.monotonic() + self.ttl, user.password, self._digest(username, password))
        with self._lock:
            self._entries[username] = entry
            self._entries.move_to_end(username)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def recall(self, username: str, password: str) -> Any | None:
        """The user whose remembered credentials these are, or None (then verify them the full way)."""
        with self._lock:
            entry = self._entries.get(username)
        if entry is None:
            return None
        if entry.expires < time.monotonic():
            self.forget(username)
            return None
        if not hmac.compare_digest(entry.digest, self._digest(username, password)):
            return None
        user_model = get_user_model()
        user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None or not user.is_active or user.password != entry.password_hash:
            self.forget(username)
            return None
        return user

    def forget(self, username: str) -> None:
        with self._lock:
            self._entries.pop(username, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


remembered_credentials = RememberedCredentials()


class LockoutBasicAuthentication(BasicAuthentication):
    """HTTP Basic whose lockouts answer 429 (not 401), whose success clears the user's own failures, and which
    remembers credentials that verified for a few minutes (RememberedCredentials), so scripts do not pay the
    password hash on every request."""

    def authenticate_credentials(self, userid: str, password: str, request: Any = None) -> tuple[Any, None]:
        user = remembered_credentials.recall(userid, password)
        if user is not None:
            if request is not None and AxesProxyHandler.is_locked(request, {"username": userid}):
                raise LoginLockedOut()
            clear_failures(user.get_username())
            return user, None
        try:
            user, auth = super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            # axes marks the request when this failure (or an earlier one) reached the limit.
            if request is not None and getattr(request, "axes_locked_out", False):
                raise LoginLockedOut() from None
            raise
        remembered_credentials.remember(userid, password, user)
        clear_failures(user.get_username())
        return user, auth


class LockoutBasicScheme(BasicScheme):
    """Describe LockoutBasicAuthentication in the OpenAPI schema as plain HTTP Basic."""

    target_class = "taskhub.auth.LockoutBasicAuthentication"


def clear_failures(username: str) -> int:
    """Delete the failures counted against ``username`` (from any address); return how many records went."""
    attempts = AccessAttempt.objects.filter(username=username)
    if not attempts.exists():  # the common case, read-only: no write lock per API request on SQLite
        return 0
    count, _ = attempts.delete()
    return count


@receiver(user_logged_in, dispatch_uid="taskhub.auth.reset_on_success")
def _reset_on_success(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Clear a user's failures when they log in.

    Only theirs: axes' own reset (AXES_RESET_ON_SUCCESS) also deletes every failure from the same address,
    so an attacker with an account of their own could log in between guesses at someone else's password
    and never reach either limit.
    """
    clear_failures(user.get_username())
