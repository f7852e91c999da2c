"""What the admin and records commands (`admin`, `users`, `records`) borrow from `kefu.cli.main`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol, TypeVar

if TYPE_CHECKING:
    from kefu.settings import Settings
    from kefu.store.base import Store

T = TypeVar("T")


class Runner(Protocol):
    def __call__(self, settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T: ...


@dataclass(frozen=True)
class CliTools:
    """What the admin and records commands borrow from `kefu.cli.main`."""

    settings: Callable[[], Settings]
    run: Runner  # migrate, then run work(store) with a started store
    fail: Callable[[str, int], NoReturn]
