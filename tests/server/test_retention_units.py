"""The retention loop's schedule, without a database: its first check, then every interval."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.server import retention
from kefu.settings import Settings
from kefu.store.records import Purged


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("interval", "first"), [(3600.0, 60.0), (5.0, 5.0)])
async def test_the_first_check_comes_soon_then_one_every_interval(
    monkeypatch: pytest.MonkeyPatch, interval: float, first: float
) -> None:
    slept: list[float] = []
    checks: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 3:
            raise _Stop

    class Store:
        async def purge_batch(self, before: float, **_: Any) -> Purged:
            checks.append(before)
            return Purged()

    monkeypatch.setattr(retention.asyncio, "sleep", sleep)
    settings = Settings(retention_days=2, retention_interval=interval)
    loop = retention.Retention(Store(), settings, clock=lambda: 1_000_000.0)  # type: ignore[arg-type]
    with pytest.raises(_Stop):
        await loop.run()
    # a restart does not put the first purge a whole interval (a day by default) away
    assert slept == [first, interval, interval, interval]
    assert checks == [1_000_000.0 - 2 * 86_400.0] * 3
