"""Sign-in attempts counted per username and per client address, before the password is checked.

An attempt is recorded when it is let through to the (slow) password check,
not when the check has failed: otherwise every request of a concurrent burst
would see a clean slate and be checked. So at most `limit` checks per
username and per address run within any `window` seconds; the rest are
refused with the time until the oldest recorded attempt leaves the window.

A success forgets the failures of its own username and gives back its own
slot of the address (a shared office address is not locked out by people
signing in), but never resets the address's count or another username's.
An attempt that was not checked after all (the password pool was full) is
given back to both.

Memory is bounded: each key keeps at most `limit` times, keys whose latest
attempt has left the window are dropped, and beyond `max_keys` live keys the
least recently tried one is dropped.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass
from typing import Generic, TypeVar

Key = TypeVar("Key", str, bytes)

# Per table. A key costs 200-400 bytes, so a full table is 10-20 MB; in practice the
# password pool's pace (a few dozen checks a second) keeps far fewer keys live.
MAX_KEYS = 50_000


class Throttled(Exception):
    """Too many recent attempts: try again in `retry_after` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"throttled for {wait:.1f}s")
        self.retry_after = max(1, math.ceil(wait))


class Window(Generic[Key]):
    """Times of recent attempts per key, in a sliding window."""

    def __init__(self, limit: int, window: float, max_keys: int = MAX_KEYS) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        # insertion order = order of the latest attempt: the first key is the stalest
        self._times: dict[Key, list[float]] = {}

    def __len__(self) -> int:
        return len(self._times)

    def wait(self, key: Key, now: float) -> float:
        """Seconds until `key` may try again (0 if it may now)."""
        times = self._times.get(key)
        if times is None:
            return 0.0
        cutoff = now - self.window
        while times and times[0] <= cutoff:
            del times[0]
        if not times:
            del self._times[key]
            return 0.0
        if len(times) < self.limit:
            return 0.0
        return times[-self.limit] + self.window - now

    def add(self, key: Key, now: float) -> None:
        times = self._times.pop(key, None) or []
        times.append(now)
        self._times[key] = times  # to the end: the most recently tried key
        self._prune(now)

    def remove(self, key: Key, when: float) -> None:
        """Give back one attempt recorded at `when`."""
        times = self._times.get(key)
        if times is None or when not in times:
            return
        times.remove(when)
        if not times:
            del self._times[key]

    def clear(self, key: Key) -> None:
        self._times.pop(key, None)

    def _prune(self, now: float) -> None:
        cutoff = now - self.window
        while self._times:
            key = next(iter(self._times))
            times = self._times[key]
            if len(self._times) <= self.max_keys and times and times[-1] > cutoff:
                return  # the stalest key is live, so every key is
            del self._times[key]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One sign-in attempt let through to the password check."""

    username: bytes
    address: str
    time: float


class LoginThrottle:
    """The sign-in attempts of one process, per username and per client address."""

    def __init__(self, limit: int, window: float, max_keys: int = MAX_KEYS) -> None:
        self.usernames: Window[bytes] = Window(limit, window, max_keys)
        self.addresses: Window[str] = Window(limit, window, max_keys)

    def check_address(self, address: str, now: float) -> None:
        """Raise Throttled if `address` has used its attempts (before reading any body)."""
        wait = self.addresses.wait(address, now)
        if wait > 0:
            raise Throttled(wait)

    def begin(self, username: str, address: str, now: float) -> Attempt:
        """Record an attempt for `username` from `address`, or raise Throttled."""
        name = username_key(username)
        wait = max(self.usernames.wait(name, now), self.addresses.wait(address, now))
        if wait > 0:
            raise Throttled(wait)
        self.usernames.add(name, now)
        self.addresses.add(address, now)
        return Attempt(name, address, now)

    def succeeded(self, attempt: Attempt) -> None:
        self.usernames.clear(attempt.username)
        self.addresses.remove(attempt.address, attempt.time)

    def not_checked(self, attempt: Attempt) -> None:
        self.usernames.remove(attempt.username, attempt.time)
        self.addresses.remove(attempt.address, attempt.time)


def username_key(username: str) -> bytes:
    """A fixed-size key: a sprayed 4 KiB username costs no more memory than a short one."""
    return hashlib.blake2b(username.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def address_key(address: str) -> str:
    """The client address as counted: IPv6 clients by their /64 (one subscriber's network)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
