"""What the admin and records commands (`admin`, `users`, `records`) borrow from `kefu.cli.main`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol, TypeVar

if TYPE_CHECKING:
    from kefu.core.model import Role
    from kefu.settings import Settings
    from kefu.store.base import Store

T = TypeVar("T")

USAGE = 2  # exit code of a wrong command line or setting; 1 for every other failure


class Runner(Protocol):
    def __call__(self, settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T: ...


@dataclass(frozen=True)
class CliTools:
    """What the admin and records commands borrow from `kefu.cli.main`."""

    settings: Callable[[], Settings]
    run: Runner  # migrate, then run work(store) with a started store
    fail: Callable[[str, int], NoReturn]


def parse_role(role: str, fail: Callable[[str, int], NoReturn]) -> Role:
    """`--role`'s value as a Role; a usage failure for any other word."""
    from kefu.core.model import Role

    names = [r.value for r in Role]
    if role not in names:
        fail(f"--role must be one of {', '.join(names)}, not {role!r}", USAGE)
    return Role(role)
