"""Background tasks that must run until their owner stops them: an early end is logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("kefu.tasks")


def spawn(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Start `work` as a task whose failure or unexpected return is logged at once.

    Without this a loop that dies keeps its exception until the task is
    collected, and the node goes on without it, silently.
    """
    task = asyncio.get_running_loop().create_task(work, name=name)
    task.add_done_callback(_ended)
    return task


def _ended(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.critical("%s failed", task.get_name(), exc_info=error)
    else:
        log.error("%s ended", task.get_name())


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` (if any) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
