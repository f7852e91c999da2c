"""Who the client is: the peer address, or what a trusted proxy says it forwarded.

`X-Forwarded-For` is believed only from the addresses and networks listed in
`KEFU_TRUSTED_PROXIES` (none by default): anyone can send the header, so
believing it from everyone would give every spoofed address a fresh budget
of whatever kefu counts per address (sign-in failures, sockets that have not
authenticated yet). Behind trusted proxies the header is read from the right:
the first address that is not itself a trusted proxy is the client.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The proxies whose `X-Forwarded-For` is believed (a comma-separated list of IPs/CIDRs)."""

    def __init__(self, spec: str) -> None:
        self.networks: tuple[Network, ...] = parse(spec)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        return bool(self.networks) and _trusted(address, self.networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address: `peer`, or from `forwarded_for` when `peer` is a trusted proxy."""
        peer = peer or "?"
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            address = _strip_port(hop)
            if _ip(address) is None:
                return peer  # garbage in the header: believe only what we saw
            if not self.trusts(address):
                return address
        return _strip_port(hops[0]) if hops else peer


def parse(spec: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1, ::1` -> networks; raises ValueError naming a bad entry."""
    networks: list[Network] = []
    for part in spec.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return tuple(networks)


@lru_cache(maxsize=4096)
def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip.version == n.version and ip in n for n in networks)


def _strip_port(hop: str) -> str:
    """`1.2.3.4:5678` -> `1.2.3.4`; `[::1]:80` -> `::1`; a bare IPv6 address is kept."""
    if hop.startswith("["):
        return hop[1:].split("]", 1)[0]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop
