"""``http.allowed_hosts`` entries and the addresses they cover, with no Django in sight (config.py validates them).

An entry is a host name, an IP address or a CIDR network, optionally followed by ``:PORTS``: one port
(``10.0.0.5:8080``), a range (``10.0.0.0/8:8000-8999``) or ``*`` (any). An IPv6 address or network takes
brackets when it names ports (``[fd00::/8]:8443``). An IP or CIDR entry naming no ports allows
``http.default_ports`` (80 and 443 unless configured); a name entry naming none allows any port, on the public
addresses it resolves to.

An IPv6 address that embeds an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, 6to4
``2002::/16``, NAT64 ``64:ff9b::/96``, Teredo ``2001::/32``) is judged by the embedded address(es).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PortRanges = tuple[tuple[int, int], ...]

#: What a host name may hold (after IDNA encoding): letters, digits, hyphens, underscores and dots.
NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local-use translation, never global
_COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class Rule:
    """One allowed_hosts entry: a name or a network, and its ports (None: the default ones)."""

    entry: str
    name: str | None = None
    network: Network | None = None
    ports: PortRanges | None = None

    def allows_port(self, port: int, default_ports: PortRanges) -> bool:
        ranges = self.ports if self.ports is not None else (None if self.name else default_ports)
        return ranges is None or any(low <= port <= high for low, high in ranges)


def _shown(text: str) -> str:
    """Quote a bad entry for an error message, cut so that a huge value makes a one-line message."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def parse_ports(text: str) -> PortRanges:
    """Read ``*``, ``N`` or ``LOW-HIGH`` (1-65535)."""
    text = text.strip()
    if text == "*":
        return ((1, 65535),)
    match = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", text)
    if not match:
        raise ValueError(f"ports {_shown(text)}: expected a port (8080), a range (8000-8999) or *")
    low, high = int(match.group(1)), int(match.group(2) or match.group(1))
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"ports {_shown(text)}: expected ports between 1 and 65535, the lower first")
    return ((low, high),)


def parse_rule(entry: str) -> Rule:
    """Read one allowed_hosts entry; raise ValueError saying what is wrong."""
    text = entry.strip().lower()
    ports: PortRanges | None = None
    if text.startswith("["):
        inner, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ValueError(f"{_shown(entry)}: expected [IPv6 address or network] optionally followed by :PORTS")
        if rest:
            ports = parse_ports(rest[1:])
        host = inner
    elif text.count(":") >= 2:  # a bare IPv6 address or network, without ports
        host = text
    else:
        host, colon, port_text = text.partition(":")
        if colon:
            ports = parse_ports(port_text)
    try:
        return Rule(entry, network=ipaddress.ip_network(host, strict=False), ports=ports)
    except ValueError:
        pass
    name = host.rstrip(".")
    if ":" in name or "/" in name or not NAME.fullmatch(name):
        raise ValueError(
            f"{_shown(entry)}: expected a host name, an IP address or a CIDR network, optionally with :PORTS"
        )
    return Rule(entry, name=name, ports=ports)


def parse_rules(entries: list[str]) -> list[Rule]:
    return [parse_rule(entry) for entry in entries]


def ip_of(text: str) -> Address | None:
    """Return the IP address written in ``text`` (brackets allowed, no zone), or None when it is a name."""
    try:
        return ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def embedded(address: Address) -> list[Address]:
    """Return the addresses ``address`` stands for: the IPv4 ones an IPv6 form carries, else itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)  # the server and the client: both must be allowed
    if address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address in _COMPATIBLE and int(address) > 1:  # ::a.b.c.d (deprecated); :: and ::1 are themselves
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return [address]


def is_public(address: Address) -> bool:
    """Whether a plain (already unwrapped) address is global unicast."""
    if isinstance(address, ipaddress.IPv6Address) and address in _NAT64_LOCAL:
        return False
    return address.is_global and not address.is_multicast


def covering(address: Address, port: int, rules: list[Rule], default_ports: PortRanges) -> Rule | None:
    """Return an IP/CIDR rule covering every address ``address`` stands for on ``port``, if any."""
    parts = embedded(address)
    # Each embedded address needs a rule of its own (Teredo carries two).
    found: Rule | None = None
    for part in parts:
        match = next(
            (
                r
                for r in rules
                if r.network is not None
                and r.network.version == part.version
                and part in r.network
                and r.allows_port(port, default_ports)
            ),
            None,
        )
        if match is None:
            return None
        found = found or match
    return found


def name_rule(name: str, port: int, rules: list[Rule], default_ports: PortRanges) -> Rule | None:
    """Return the name rule listing ``name`` on ``port``, if any."""
    name = name.lower().rstrip(".")
    return next((r for r in rules if r.name == name and r.allows_port(port, default_ports)), None)
