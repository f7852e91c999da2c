"""The webhook sender process: the HTTP attempts, off the CPU time of the chat.

An attempt through httpx costs about a millisecond of CPU here (the chat
spends some 25 microseconds on a message), so the delivery worker does not
make them on the event loop that serves the chat sockets: it starts this
process (`ProcessSender`, `python -m kefu.server.webhooks.child`), which
lowers its own priority (`nice`) so that the kernel gives the chat's process
the CPU first. The worker keeps the database side (what is due, what each
attempt got) in its own process, so nothing here holds a database lock.

The pipe: one JSON object per line each way. A job on stdin, `{"n", "id",
"url", "secret", "event", "body"}`; its answer on stdout, `{"n", "ok",
"status", "error"}`, in whatever order the attempts finish, at most
`--concurrency` at once. The process ends when stdin closes: its parent
stopped, or died (then nothing is left behind). It logs nothing; a secret or
a body only ever crosses the pipe.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from typing import Any

from kefu.server.webhooks.sender import MAX_LINE, Attempt, Sender
from kefu.store.webhooks import DueDelivery


async def serve(sender: Sender, concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def attempt(job: dict[str, Any]) -> None:
        async with slots:
            delivery = DueDelivery(
                id=job["id"],
                webhook_id="",
                subject="",
                event=job["event"],
                body=job["body"],
                attempts=0,
                created_at=0.0,
                url=job["url"],
                secret=job["secret"],
            )
            try:
                result = await sender.send(delivery)
            except Exception as exc:
                result = Attempt(False, error=f"internal error ({type(exc).__name__})")
        answer = {"n": job["n"], "ok": result.ok, "status": result.status, "error": result.error}
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()

    try:
        while line := await reader.readline():
            task = loop.create_task(attempt(json.loads(line)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--allow-private", action="store_true")
    parser.add_argument("--nice", type=int, default=19)
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):  # a lower priority is always allowed; just in case
        os.nice(args.nice)
    sender = Sender(args.allow_private, args.concurrency, args.timeout)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(serve(sender, args.concurrency))


if __name__ == "__main__":
    main()
