"""Handlers that ship with the scheduling core: ``HTTP_REQUEST``."""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from scheduling.handlers import HandlerContext, registry
from taskhub.exceptions import IntegrationError, PermanentHandlerError, ValidationError

HTTP_REQUEST = "HTTP_REQUEST"
MAX_REDIRECTS = 5
BODY_EXCERPT = 2000

HTTP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], "default": "GET"},
        "url": {"type": "string", "minLength": 1, "maxLength": 2000},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 50},
        "json": {"description": "JSON body to send"},
        "expected_status": {
            "type": "array",
            "items": {"type": "integer", "minimum": 100, "maximum": 599},
            "minItems": 1,
            "default": [200, 201, 202, 204],
        },
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300, "default": 30},
    },
}


# --- SSRF guard ---------------------------------------------------------------------------------------------
# A URL's host must be listed in http.allowed_hosts, by name, IP address or CIDR network. A listed *name* only
# reaches public addresses: private, loopback, link-local (169.254.169.254, fe80::/10), unique-local (fc00::/7),
# reserved and multicast addresses need an allowed_hosts entry covering the address itself. The address check is
# made when the connection opens, on the address actually connected to, so DNS rebinding cannot slip past it.


class AddressRefused(Exception):
    """A host resolved only to addresses that http.allowed_hosts does not allow."""


def _allow_rules() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in settings.TASKHUB["http"]["allowed_hosts"]:
        entry = entry.strip().lower()
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.add(entry.rstrip("."))
    return names, networks


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def address_allowed(text: str) -> bool:
    """Return whether a resolved address may be connected to: public, or covered by an allowed_hosts entry."""
    address = _ip(text)
    if address is None:
        return False
    _, networks = _allow_rules()
    if any(address.version == net.version and address in net for net in networks):
        return True
    return address.is_global and not address.is_multicast


def check_url(url: str) -> None:
    """Refuse non-HTTP schemes and hosts not listed in http.allowed_hosts."""
    parts = urlsplit(url)
    allowed = settings.TASKHUB["http"]["allowed_hosts"]
    try:
        hostname = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        hostname = None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValidationError({"parameters": f"url: expected an http:// or https:// URL, got {url!r}"})
    host = hostname.lower().rstrip(".")
    names, networks = _allow_rules()
    address = _ip(host)
    if address is not None:
        listed = any(address.version == net.version and address in net for net in networks)
    else:
        listed = host in names
    if not listed:
        shown = ", ".join(allowed) or "none configured"
        raise ValidationError({"parameters": f"url: host {host!r} is not in http.allowed_hosts (allowed: {shown})"})


class _GuardedConnectionMixin:
    """Resolve the host, keep only allowed addresses, and connect to one of those exact addresses."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        permitted = [a for a in addresses if address_allowed(a)]
        if not permitted:
            raise AddressRefused(
                f"host {self.host!r} resolves to {', '.join(addresses)}: private, loopback, link-local and "
                "reserved addresses are refused unless http.allowed_hosts lists the address or its network (CIDR)"
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
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")  # type: ignore[arg-type]


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests transport adapter whose connections only reach allowed addresses."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def guarded_session() -> requests.Session:
    """Return a session that honours the SSRF rule at connect time and ignores proxy settings."""
    session = requests.Session()
    session.trust_env = False  # no proxies from the environment: the allow-list is the only route
    session.mount("http://", GuardedAdapter())
    session.mount("https://", GuardedAdapter())
    return session


def _check_parameters(parameters: dict[str, Any]) -> None:
    check_url(parameters["url"])


def http_request(parameters: dict[str, Any], context: HandlerContext) -> dict[str, Any]:
    """Call an HTTP endpoint on an allowed host; an unexpected status fails the attempt."""
    method = parameters.get("method", "GET")
    url = parameters["url"]
    expected = parameters.get("expected_status") or [200, 201, 202, 204]
    started = time.monotonic()
    session = guarded_session()
    for _ in range(MAX_REDIRECTS + 1):
        try:
            check_url(url)
        except ValidationError as exc:
            raise PermanentHandlerError(f"redirect refused: {exc}") from None
        try:
            response = session.request(
                method,
                url,
                headers=parameters.get("headers") or {},
                json=parameters.get("json"),
                timeout=parameters.get("timeout", 30),
                allow_redirects=False,
            )
        except AddressRefused as exc:
            raise PermanentHandlerError(f"{method} {url} refused: {exc}") from None
        except requests.Timeout:
            raise IntegrationError("HTTP", f"{method} {url}", "timed out") from None
        except requests.RequestException as exc:
            raise IntegrationError("HTTP", f"{method} {url}", f"connection failed ({exc.__class__.__name__})") from None
        if response.is_redirect and "location" in response.headers:
            url = urljoin(url, response.headers["location"])
            if response.status_code in (301, 302, 303) and method != "HEAD":
                method = "GET"
            continue
        break
    else:
        raise PermanentHandlerError(f"more than {MAX_REDIRECTS} redirects from {parameters['url']}")
    body = response.text[:BODY_EXCERPT] if method != "HEAD" else ""
    summary = {
        "status": response.status_code,
        "url": url,
        "duration": round(time.monotonic() - started, 4),
        "body": body,
    }
    if response.status_code not in expected:
        raise IntegrationError(
            "HTTP",
            f"{method} {url}",
            f"unexpected status {response.status_code} (expected {', '.join(map(str, expected))}); "
            f"body: {body[:200]!r}",
            status=response.status_code,
            permanent=False,
        )
    context.logger.info("%s %s -> %s", method, url, response.status_code)
    return summary


def register() -> None:
    registry.register(
        HTTP_REQUEST,
        http_request,
        schema=HTTP_SCHEMA,
        description="Call an HTTP endpoint on a host listed in http.allowed_hosts",
        check=_check_parameters,
    )
