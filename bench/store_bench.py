"""CPU per message of the SQLite write path, by batch size, through the real store API.

Creates a fresh migrated database in a temporary folder (`kefu.store.migrate.upgrade`),
opens `SqliteStore` as the server does (synchronous=NORMAL by default: the writer
runs on the event loop, WAL checkpoints in a thread), creates accounts and open
conversations, then appends messages with `store.append(message, done)` like
`Runtime.post_message`: N appends without yielding to the loop, wait until all
N `done` callbacks ran, repeat. N appends queued together are one batch (one
transaction), so N is the group-commit batch size. Each message goes to a
random conversation, from its user or its waiter, with a random uuid4 op_id.

For each batch size, the median of `--repeat` runs of `--rows` messages:
rows/s (wall clock), µs of process CPU per row (`time.process_time`, every
thread: the checkpointer's copying is counted, waiting for fsync is not), that
CPU split into user and kernel time (getrusage), and write syscalls and KiB
written per row (/proc/self/io: WAL frames and checkpoint copies). Only
appending and waiting are timed, not building the messages. Sizes run in a
different order in every repeat, and the WAL is emptied between runs (see
`settle`; `--sustained` keeps it).

    .venv/bin/python bench/store_bench.py
    .venv/bin/python bench/store_bench.py --sizes 1,20,300 --rows 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kefu.core.commands import OpenConversation
from kefu.ids import IdGenerator
from kefu.store.base import Account, Appended, NewMessage
from kefu.store.migrate import upgrade
from kefu.store.sqlite import SqliteStore


async def setup(
    store: SqliteStore, new_id: IdGenerator, conversations: int
) -> list[tuple[str, str, str]]:
    """Accounts and open conversations: (conversation id, user id, waiter id)."""
    waiters = max(1, conversations // 5)  # 5 users each: KEFU_MAX_USERS_PER_WAITER
    for w in range(waiters):
        await store.upsert_account(Account(id=f"w{w:04d}", username=f"waiter{w}", role="waiter"))
    routes = []
    for u in range(conversations):
        user, waiter = f"u{u:05d}", f"w{u % waiters:04d}"
        await store.upsert_account(Account(id=user, username=f"user{u}", role="user"))
        cid = new_id()
        store.write(OpenConversation(cid, user, waiter, time.time()))
        routes.append((cid, user, waiter))
    await store.flush()
    return routes


def build(
    new_id: IdGenerator,
    routes: list[tuple[str, str, str]],
    n: int,
    rng: random.Random,
    text: int = 0,
) -> list[NewMessage]:
    """`n` messages, each to a random conversation; `text` pads every text by that many bytes."""
    padding = b" " + b"x" * (text - 1) if text > 0 else b""
    out = []
    for _ in range(n):
        cid, user, waiter = rng.choice(routes)
        sender, receiver = (user, waiter) if rng.random() < 0.5 else (waiter, user)
        payload = b'{"text":"hello%s #%d#"}' % (padding, rng.randrange(1_000_000))
        out.append(
            NewMessage(
                id=new_id(),
                conversation_id=cid,
                type="message_text",
                sender_id=sender,
                receiver_id=receiver,
                payload=payload,
                op_id=str(uuid.uuid4()),
                created=round(time.time(), 6),
            )
        )
    return out


class BatchDone:
    """The `done` callback of a batch: resolves `finished` once every message is settled."""

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.failures: list[object] = []
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done(self, result: Appended | BaseException) -> None:
        if not isinstance(result, Appended) or result.duplicate or result.conflict:
            self.failures.append(result)
        self.pending -= 1
        if self.pending == 0:
            self.finished.set_result(None)


def io_counters() -> tuple[int, int]:
    """(write syscalls, bytes written) by this process so far, every thread (Linux)."""
    try:
        with open("/proc/self/io") as f:
            fields = dict(line.split(": ") for line in f.read().splitlines())
    except OSError:
        return 0, 0
    return int(fields["syscw"]), int(fields["wchar"])


@dataclass
class Run:
    rows: int
    wall: float  # seconds
    cpu: float  # seconds of process CPU (time.process_time)
    user: float  # the same split by getrusage into user and kernel time
    system: float
    writes: int  # write syscalls
    written: int  # bytes

    def per_row(self, value: float) -> float:
        return value / self.rows


async def run_size(
    store: SqliteStore,
    new_id: IdGenerator,
    routes: list[tuple[str, str, str]],
    size: int,
    rows: int,
    rng: random.Random,
    text: int = 0,
) -> Run:
    """`rows` messages appended in batches of `size`; the messages are built before timing."""
    batches = [build(new_id, routes, size, rng, text) for _ in range(max(1, rows // size))]
    writes0, written0 = io_counters()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0, w0 = time.process_time(), time.perf_counter()
    for batch in batches:
        settled = BatchDone(len(batch))
        for m in batch:
            store.append(m, settled.done)
        await settled.finished
        if settled.failures:
            raise SystemExit(f"append failed: {settled.failures[0]!r}")
    c1, w1 = time.process_time(), time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    writes1, written1 = io_counters()  # the checkpointer's writes meanwhile included
    return Run(
        rows=len(batches) * size,
        wall=w1 - w0,
        cpu=c1 - c0,
        user=r1.ru_utime - r0.ru_utime,
        system=r1.ru_stime - r0.ru_stime,
        writes=writes1 - writes0,
        written=written1 - written0,
    )


async def settle(store: SqliteStore, sustained: bool) -> None:
    """Between runs: commit everything and, unless `sustained`, empty the WAL.

    Under a steady stream of commits the checkpointer's PASSIVE checkpoints
    never catch up with the writer, so the WAL is never restarted and grows
    for as long as the stream lasts; emptying it here makes every run start
    from the same state.
    """
    await store.flush()
    if sustained:
        return

    def truncate() -> None:
        con = sqlite3.connect(store.path, timeout=10)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()

    await asyncio.to_thread(truncate)


async def main(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(args.seed)
    new_id = IdGenerator(node=1)
    with tempfile.TemporaryDirectory(prefix="kefu-store-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'kefu.db'}"
        upgrade(url)
        store = SqliteStore(url, synchronous=args.synchronous)
        await store.start()
        try:
            routes = await setup(store, new_id, args.conversations)
            if args.warmup:
                await run_size(store, new_id, routes, 300, args.warmup, rng, args.text)
            await settle(store, args.sustained)
            results: dict[int, list[Run]] = {s: [] for s in sizes}
            for r in range(args.repeat):
                for size in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:
                    rows = max(size, args.rows // size * size)
                    results[size].append(
                        await run_size(store, new_id, routes, size, rows, rng, args.text)
                    )
                    await settle(store, args.sustained)
            stats = store.writer.stats
        finally:
            await store.close()
    print(
        f"SQLite {sqlite3.sqlite_version}, synchronous={args.synchronous},"
        f" {args.conversations} conversations, {args.warmup} rows before timing,"
        f" WAL {'kept' if args.sustained else 'emptied'} between runs,"
        f" {args.rows} rows per size and run, median of {args.repeat} runs;"
        f" {stats.commits} commits"
    )
    print(
        f"{'batch':>6} {'rows/s':>9} {'CPU us/row':>11} {'(min..max)':>13}"
        f" {'user':>6} {'sys':>6} {'writes/row':>11} {'KiB/row':>8}"
    )
    for size in sizes:
        runs = results[size]
        cpu = [r.per_row(r.cpu) * 1e6 for r in runs]
        spread = f"({min(cpu):.1f}..{max(cpu):.1f})"
        print(
            f"{size:>6} {statistics.median(r.rows / r.wall for r in runs):>9,.0f}"
            f" {statistics.median(cpu):>11.1f} {spread:>13}"
            f" {statistics.median(r.per_row(r.user) * 1e6 for r in runs):>6.1f}"
            f" {statistics.median(r.per_row(r.system) * 1e6 for r in runs):>6.1f}"
            f" {statistics.median(r.per_row(r.writes) for r in runs):>11.1f}"
            f" {statistics.median(r.per_row(r.written) / 1024 for r in runs):>8.1f}"
        )


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sizes", default="1,5,20,100,300", help="batch sizes, comma-separated")
    p.add_argument("--rows", type=int, default=10_000, help="messages per batch size and run")
    p.add_argument("--repeat", type=int, default=5, help="runs of every size (median shown)")
    p.add_argument("--conversations", type=int, default=100, help="open conversations")
    p.add_argument("--warmup", type=int, default=100_000, help="messages stored before timing")
    p.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"])
    p.add_argument("--text", type=int, default=0, help="bytes added to every message text")
    p.add_argument("--sustained", action="store_true", help="do not empty the WAL between runs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio instead of uvloop")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse(sys.argv[1:])
    if args.no_uvloop:
        asyncio.run(main(args))
    else:
        import uvloop  # what uvicorn runs the server on

        uvloop.run(main(args))
