"""Password hashing for console sign-in (argon2id), and the threads that check passwords.

argon2 is slow and memory-hard on purpose (~80 ms and 64 MiB per check with
argon2-cffi's defaults), so the server checks passwords on a small pool of
its own: a flood of sign-ins can then take at most `workers` threads, never
asyncio's default executor, which the store's reads use. Checks waiting for
a thread are bounded too; beyond that `check` raises `PasswordsBusy` at once
instead of queueing more work than the pool can do in a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """Checked against when there is no account or no password, so every failure costs the same."""
    return hash_password("kefu: no such account")


def _check(password_hash: str | None, password: str) -> bool:
    """In a password thread: a check that takes the argon2 time whatever the account."""
    if not password_hash:
        check_password(dummy_hash(), password)
        return False
    return check_password(password_hash, password)


class PasswordsBusy(Exception):
    """Every password thread is busy and the waiting line is full."""


class PasswordChecker:
    """Checks passwords on `workers` threads of its own, with at most `queue` checks waiting."""

    def __init__(self, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="kefu-password")
        self.capacity = workers + queue
        self.in_flight = 0  # submitted and not finished (or cancelled); only touched on the loop
        self._executor.submit(dummy_hash)  # hashed now, not on the first unknown username

    async def check(self, password_hash: str | None, password: str) -> bool:
        """True if `password` matches `password_hash` (None: no account or no password).

        Raises PasswordsBusy without hashing when the pool is full.
        """
        if self.in_flight >= self.capacity:
            raise PasswordsBusy
        loop = asyncio.get_running_loop()
        job = self._executor.submit(_check, password_hash, password)
        self.in_flight += 1
        # released when the thread is done with it (or it is cancelled before it starts),
        # not when the caller stops waiting: a caller that goes away frees no thread
        job.add_done_callback(lambda _: _call_soon(loop, self._release))
        return await asyncio.wrap_future(job)

    async def hash(self, password: str) -> str:
        """`hash_password` on the same threads, bounded the same way (PasswordsBusy)."""
        if self.in_flight >= self.capacity:
            raise PasswordsBusy
        loop = asyncio.get_running_loop()
        job = self._executor.submit(hash_password, password)
        self.in_flight += 1
        job.add_done_callback(lambda _: _call_soon(loop, self._release))
        return await asyncio.wrap_future(job)

    def _release(self) -> None:
        self.in_flight -= 1

    def close(self) -> None:
        """Drop the waiting checks; the running ones finish on their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody counts any more
        loop.call_soon_threadsafe(callback)
