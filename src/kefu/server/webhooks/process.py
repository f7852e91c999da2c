"""`ProcessSender`: the delivery worker's side of the sender process (`child.py`).

`send(delivery)` writes the job to the child's stdin and waits for its
answer. The child is started on the first send and again after it ended (a
crash: the attempts it had are answered as failed, and made again later by
the worker); one that gives no answer well past its own timeout is killed
and replaced; `close` ends it by closing its stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time

from kefu.server.webhooks.sender import MAX_LINE, TIMEOUT, Attempt
from kefu.store.webhooks import DueDelivery

log = logging.getLogger("kefu.webhooks")

NICE = 19  # added to the child's niceness (the most): the chat's process gets the CPU first
RESTART_AFTER = 1.0  # seconds at least between two starts of the child
ANSWER_SLACK = 10.0  # seconds beyond the HTTP timeout before a child's silence means it hangs


class ProcessSender:
    def __init__(
        self, allow_private: bool, concurrency: int, timeout: float = TIMEOUT, nice: int = NICE
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "kefu.server.webhooks.child",
            "--concurrency",
            str(concurrency),
            "--timeout",
            str(timeout),
            "--nice",
            str(nice),
            *(["--allow-private"] if allow_private else []),
        ]
        self.timeout = timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Attempt]] = {}
        self._n = 0
        self._started = 0.0
        self._lock = asyncio.Lock()

    async def _child(self) -> asyncio.subprocess.Process:
        async with self._lock:
            proc = self._proc
            if proc is not None and proc.returncode is None:
                return proc
            wait = self._started + RESTART_AFTER - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=MAX_LINE,
            )
            self._proc = proc
            self._reader = asyncio.get_running_loop().create_task(self._answers(proc))
            return proc

    async def _answers(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                answer = json.loads(line)
                future = self._waiting.pop(answer["n"], None)
                if future is not None and not future.done():
                    future.set_result(Attempt(answer["ok"], answer["status"], answer["error"]))
        finally:
            code = await proc.wait()
            if self._waiting:
                log.warning("the webhook sender process ended (%s); retrying later", code)
            for future in self._waiting.values():
                if not future.done():
                    future.set_result(Attempt(False, error="the sender process ended"))
            self._waiting.clear()

    async def send(self, delivery: DueDelivery) -> Attempt:
        proc = await self._child()
        assert proc.stdin is not None
        self._n += 1
        n = self._n
        future: asyncio.Future[Attempt] = asyncio.get_running_loop().create_future()
        self._waiting[n] = future
        job = {
            "n": n,
            "id": delivery.id,
            "url": delivery.url,
            "secret": delivery.secret,
            "event": delivery.event,
            "body": delivery.body,
        }
        try:
            proc.stdin.write(json.dumps(job).encode() + b"\n")
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError):
            self._waiting.pop(n, None)
            return Attempt(False, error="the sender process ended")
        try:
            async with asyncio.timeout(self.timeout + ANSWER_SLACK):
                return await future
        except TimeoutError:
            # the child has its own timeout per attempt: no answer means it hangs; a new one
            # takes over (the attempts it had are answered as failed, and made again later)
            log.warning("webhook sender process did not answer; restarting it")
            if proc.returncode is None:
                proc.kill()
            return Attempt(False, error="no answer from the sender process")
        finally:
            self._waiting.pop(n, None)

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
