"""The SSRF guard of ``HTTP_REQUEST``: one URL parser, the allow-list, and a connection that re-checks both.

A URL is read once, by the HTTP client's own parser: requests prepares it (IDNA, quoting) and urllib3's
``parse_url`` reads scheme, host and port from the prepared URL, exactly as the connection pool will. The
standard library's ``urlsplit`` (which ``urljoin`` uses for redirects) must read the same scheme, host and port,
or the URL is refused. Userinfo (``user@``), backslashes, whitespace, control and format characters, non-ASCII
hosts, zone ids and numeric host forms other than dotted-quad IPv4 are refused outright: they are where parsers
disagree.

At connect time (a transport adapter, so every redirect hop and DNS answer is covered) the connection checks
the *name* it is about to connect to against ``http.allowed_hosts`` and each resolved address: an address is
reached when an IP/CIDR entry covers it (and the port), or when it is public and the name is listed. IPv6 forms
that embed an IPv4 address are judged by the embedded address (see :mod:`taskhub.allowlist`).
"""

from __future__ import annotations

import socket
import unicodedata
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, LocationParseError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection
from urllib3.util import parse_url

from taskhub import allowlist
from taskhub.exceptions import ValidationError

DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressRefused(Exception):
    """The connection was about to reach a name or address that http.allowed_hosts does not allow."""


class UrlRefused(ValueError):
    """A URL that is malformed, ambiguous, or outside http.allowed_hosts."""


@dataclass(frozen=True)
class Target:
    """A URL as the HTTP client will send it, and the scheme, host and port it will connect to."""

    url: str
    scheme: str
    host: str  # lower case; an IPv6 address without brackets
    port: int


def _rules() -> tuple[list[allowlist.Rule], allowlist.PortRanges]:
    http = settings.TASKHUB.http
    defaults = tuple((p, p) for p in http.default_ports)
    return allowlist.parse_rules(list(http.allowed_hosts)), defaults


def refuse_characters(url: str, what: str = "URL") -> None:
    """Refuse backslashes, whitespace, control and format characters: parsers read them differently."""
    for index, char in enumerate(url):
        if char == "\\":
            raise UrlRefused(f"the {what} holds a backslash (at {index}); write '/' or percent-encode it (%5C)")
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise UrlRefused(
                f"the {what} holds a control or whitespace character {char!r} (at {index}); percent-encode it"
            )


def parse(url: Any) -> Target:
    """Read ``url`` the way the HTTP client will, or raise UrlRefused saying what is wrong."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("expected an http:// or https:// URL")
    refuse_characters(url)
    try:
        plain = urlsplit(url)
        plain.hostname, plain.port  # noqa: B018 - raise now on a bad port or bracket
    except ValueError as exc:
        raise UrlRefused(f"expected an http:// or https:// URL ({exc})") from None
    if plain.scheme.lower() not in DEFAULT_PORTS or not plain.netloc:
        raise UrlRefused(f"expected an http:// or https:// URL, got {url!r}")
    if "@" in plain.netloc:
        raise UrlRefused("user names and passwords in URLs (user@host) are refused: send credentials in headers")
    if not plain.netloc.isascii():
        raise UrlRefused("the host must be ASCII: write an internationalised name in its xn-- (punycode) form")
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)
        if prepared.url is None:  # prepare_url always sets it; typed Optional for a fresh PreparedRequest
            raise ValueError("no URL")
        prepared_url = prepared.url
        client = parse_url(prepared_url)
    except (requests.RequestException, LocationParseError, ValueError) as exc:
        raise UrlRefused(f"not a URL the HTTP client accepts ({exc.__class__.__name__})") from None
    if client.auth:
        raise UrlRefused("user names and passwords in URLs (user@host) are refused: send credentials in headers")
    scheme = (client.scheme or "").lower()
    host = (client.host or "").lower()
    bare = host.removeprefix("[").removesuffix("]")
    port = client.port if client.port is not None else DEFAULT_PORTS.get(scheme, 0)
    if not 1 <= port <= 65535:
        raise UrlRefused(f"port {port}: expected 1-65535")
    # requests' adapter picks the connection's host with urlsplit on the prepared URL; redirects are resolved
    # with urljoin on the original: every reading must be the same.
    for reading, text in (("urllib3", url), ("urlsplit", url), ("urlsplit", prepared_url)):
        seen = _read(reading, text)
        if not 1 <= seen[2] <= 65535:
            raise UrlRefused(f"port {seen[2]}: expected 1-65535")
        if seen != (scheme, bare, port):
            raise UrlRefused(
                f"the URL reads as {scheme}://{host}:{port} to the HTTP client but as "
                f"{seen[0]}://{seen[1]}:{seen[2]} to another parser: refused as ambiguous"
            )
    _check_host(bare)
    return Target(url=prepared_url, scheme=scheme, host=bare.rstrip("."), port=port)


def _read(parser: str, url: str) -> tuple[str, str, int]:
    """Return (scheme, host, port) as one parser reads ``url`` (('', '', 0) when it cannot)."""
    try:
        if parser == "urllib3":
            parts = parse_url(url)
            scheme, host, port = (parts.scheme or "").lower(), parts.host or "", parts.port
        else:
            split = urlsplit(url)
            scheme, host, port = split.scheme.lower(), split.hostname or "", split.port
    except (LocationParseError, ValueError):
        return "", "", 0
    host = host.lower().removeprefix("[").removesuffix("]")
    return scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme, 0)


def _check_host(host: str) -> None:
    if allowlist.ip_of(host) is not None:
        return
    if "%" in host:
        raise UrlRefused(f"host {host!r}: zone ids and percent-escapes are refused in hosts")
    try:
        socket.inet_aton(host)
    except OSError:
        pass
    else:  # 2130706433, 0x7f.1, 127.1, 0177.0.0.1: numbers a resolver reads as an IPv4 address
        raise UrlRefused(f"host {host!r}: write an IPv4 address as four decimal numbers (a.b.c.d)")
    if not allowlist.NAME.fullmatch(host.rstrip(".")):
        raise UrlRefused(f"host {host!r}: expected a host name, an IPv4 address or a bracketed IPv6 address")


def allowed_rule(host: str, port: int) -> allowlist.Rule | None:
    """Return the allowed_hosts entry that lets ``host`` (a name or an IP address) be reached on ``port``."""
    rules, defaults = _rules()
    address = allowlist.ip_of(host)
    if address is not None:
        return allowlist.covering(address, port, rules, defaults)
    return allowlist.name_rule(host, port, rules, defaults)


def _ports_text(ranges: allowlist.PortRanges) -> str:
    return ", ".join(f"{low}" if low == high else f"{low}-{high}" for low, high in ranges)


def _not_listed(target: Target) -> str:
    shown = ", ".join(settings.TASKHUB.http.allowed_hosts) or "none configured"
    rules, defaults = _rules()
    any_port = [replace(rule, ports=((1, 65535),)) for rule in rules]
    address = allowlist.ip_of(target.host)
    listed = (
        allowlist.covering(address, target.port, any_port, defaults)
        if address is not None
        else allowlist.name_rule(target.host, target.port, any_port, defaults)
    )
    if listed is not None:
        ports = next(r.ports for r in rules if r.entry == listed.entry)
        allows = (
            f"it allows {_ports_text(ports)}"
            if ports is not None
            else f"an entry without :PORTS allows http.default_ports ({_ports_text(defaults)})"
        )
        return (
            f"port {target.port} of host {target.host!r} is not allowed by http.allowed_hosts entry "
            f"{listed.entry!r}: {allows}"
        )
    if address is not None and allowlist.embedded(address) != [address]:
        embedded = ", ".join(map(str, allowlist.embedded(address)))
        return f"host {target.host!r} (which stands for {embedded}) is not in http.allowed_hosts (allowed: {shown})"
    return f"host {target.host!r} is not in http.allowed_hosts (allowed: {shown})"


def check_url(url: Any) -> Target:
    """Return the target of an allowed URL; raise ValidationError (field ``parameters``) otherwise."""
    try:
        target = parse(url)
    except UrlRefused as exc:
        raise ValidationError({"parameters": f"url: {exc}"}) from None
    if allowed_rule(target.host, target.port) is None:
        raise ValidationError({"parameters": f"url: {_not_listed(target)}"})
    return target


def origin(url: Any) -> tuple[str, str, int] | None:
    """Return (scheme, host, port) of a URL, or None when it is not one this guard reads."""
    try:
        target = parse(url)
    except UrlRefused:
        return None
    return target.scheme, target.host, target.port


def address_allowed(text: str, port: int = 443, *, name_listed: bool = True) -> bool:
    """Return whether a resolved address may be connected to on ``port``.

    Covered (every embedded address) by an IP/CIDR entry for that port, or public when the name was listed.
    """
    address = allowlist.ip_of(text)
    if address is None:
        return False
    rules, defaults = _rules()
    if allowlist.covering(address, port, rules, defaults) is not None:
        return True
    return name_listed and all(allowlist.is_public(part) for part in allowlist.embedded(address))


class _GuardedConnectionMixin:
    """Check the name, resolve it, keep only allowed addresses, and connect to one of those exact addresses."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        host = self.host.lower().rstrip(".").removeprefix("[").removesuffix("]")
        if allowed_rule(host, self.port) is None:
            raise AddressRefused(f"host {self.host!r} port {self.port} is not listed in http.allowed_hosts")
        name_listed = allowlist.ip_of(host) is None  # an IP literal must be covered itself
        try:
            infos = socket.getaddrinfo(host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]  # mixin: self is an HTTPConnection
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        permitted = [a for a in addresses if address_allowed(a, self.port, name_listed=name_listed)]
        if not permitted:
            raise AddressRefused(
                f"host {self.host!r} resolves to {', '.join(addresses)}: private, loopback, link-local and "
                "reserved addresses are refused unless http.allowed_hosts lists the address or its network (CIDR)"
                " for this port"
            )
        error: OSError | None = None
        for address in permitted:
            try:
                return urllib3_connection.create_connection(
                    (address, self.port), self.timeout, self.source_address, self.socket_options
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from exc
            except OSError as exc:
                error = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")  # type: ignore[arg-type]  # mixin: self is an HTTPConnection


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests transport adapter whose connections only reach allowed names and addresses."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def guarded_session() -> requests.Session:
    """Return a session that honours the SSRF rule at connect time and ignores proxy settings."""
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc from the environment: the allow-list is the only route
    session.mount("http://", GuardedAdapter())
    session.mount("https://", GuardedAdapter())
    return session
