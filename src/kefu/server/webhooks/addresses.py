"""Where a webhook may point: an http(s) URL whose host resolves to public addresses only.

A webhook URL is checked when it is created (the API answers 422) and again
before every attempt, since DNS may have changed since: every address the
host resolves to must be public (not loopback, private, link-local, shared,
multicast, reserved or otherwise not globally routable; an IPv4 address
mapped into IPv6 counts as itself). `KEFU_WEBHOOK_ALLOW_PRIVATE=true` lifts
the rule, for a receiver on the same machine or network.

The attempt then connects to the address that was checked (`Target.at`),
with the URL's host in `Host` and in TLS's SNI (and certificate check), so a
second lookup cannot point it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_CHARS = 2048
RESOLVE_TIMEOUT = 5.0  # seconds for a lookup


class Refused(ValueError):
    """The URL may not be used; the message says why (it names the host, not the URL)."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str  # http or https
    host: str  # a name, or an address (without brackets)
    port: int
    path: str  # with the query, at least "/"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def at(self, address: str) -> str:
        """The URL with `address` in place of the host."""
        where = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{where}:{self.port}{self.path}"


def parse(url: str) -> Target:
    """The target of a webhook URL, or `Refused`."""
    if len(url) > MAX_URL_CHARS:
        raise Refused(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise Refused("the URL holds spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused("the URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL must not hold a user name or password (sign with the secret)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise Refused("the URL has no host")
    try:
        host.encode("idna")
    except UnicodeError:
        raise Refused("the URL's host is not a valid name") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def is_public(address: str) -> bool:
    """True for a globally routable unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(target: Target, allow_private: bool) -> list[str]:
    """The addresses of the target's host, all public unless `allow_private`; else `Refused`."""
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM),
                RESOLVE_TIMEOUT,
            )
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise Refused(f"cannot resolve {target.host} ({type(exc).__name__})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise Refused(f"cannot resolve {target.host}")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise Refused(
                    f"{target.host} resolves to {address}, which is not a public address"
                    " (KEFU_WEBHOOK_ALLOW_PRIVATE=true allows it)"
                )
    return addresses
