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

With `--duration S` every run instead appends for S seconds at its batch size,
with the WAL kept for the whole run (it is emptied before each run), and
reports what steady load does to the WAL and to latency: rows/s, µs of CPU per
row (and, of that, the event loop thread's, where the writer runs), the WAL
file's largest and final size, the latency of a batch (from its first `append`
to its last `done`) at p50, p99 and max, pooled over the repeats, and what the
checkpointer did (`SqliteStore.checkpoint_stats`): WAL restarts, held passes
and the longest hold. By default each batch is appended as soon as the
previous one is done (the writer never idles); `--rate R` appends a batch
every size/R seconds instead, whether or not the previous one is done, like a
moderate load. All the messages of a run are built before it (for a closed
loop: 1.5 times what a short untimed run's rate would take) and kept out of
garbage collection while it runs; a run that uses them up ends early.

    .venv/bin/python bench/store_bench.py
    .venv/bin/python bench/store_bench.py --sizes 1,20,300 --rows 20000 --repeat 3
    .venv/bin/python bench/store_bench.py --sizes 5,20,100 --duration 15 --repeat 1
    .venv/bin/python bench/store_bench.py --sizes 5,20 --duration 15 --rate 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from kefu.core.commands import OpenConversation
from kefu.core.model import AccountKind
from kefu.ids import IdGenerator
from kefu.store.base import Account, Appended, NewMessage
from kefu.store.migrate import upgrade
from kefu.store.sqlite import SqliteStore


def external(id_: str, username: str, role: str) -> Account:
    """An account as a host application's token makes it (the only kind `upsert_account` takes)."""
    return Account(id_, username, role, kind=AccountKind.EXTERNAL, external_id=id_)


async def setup(
    store: SqliteStore, new_id: IdGenerator, conversations: int
) -> list[tuple[str, str, str]]:
    """Accounts and open conversations: (conversation id, user id, waiter id)."""
    waiters = max(1, conversations // 5)  # 5 users each: KEFU_MAX_USERS_PER_WAITER
    for w in range(waiters):
        await store.upsert_account(external(f"w{w:04d}", f"waiter{w}", "waiter"))
    routes = []
    for u in range(conversations):
        user, waiter = f"u{u:05d}", f"w{u % waiters:04d}"
        await store.upsert_account(external(user, f"user{u}", "user"))
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
        self.at = 0.0  # time.perf_counter() when the last message was settled

    def done(self, result: Appended | BaseException) -> None:
        if not isinstance(result, Appended) or result.duplicate or result.conflict:
            self.failures.append(result)
        self.pending -= 1
        if self.pending == 0:
            self.at = time.perf_counter()
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


@dataclass
class Sustained:
    rows: int
    wall: float  # seconds appending and waiting
    cpu: float  # seconds of process CPU meanwhile
    loop_cpu: float  # of which the event loop's thread (the writer's)
    wal_max: int  # bytes: the largest WAL file seen (sampled every 2 ms at most)
    wal_end: int  # bytes: the WAL file once the run is over
    latencies: list[float]  # seconds from a batch's first append to its last done
    restarts: int = 0  # times the checkpointer saw the WAL started over
    holds: int = 0  # held passes of the checkpointer (the writer kept from starting batches)
    longest_hold: float = 0.0  # seconds


def wal_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


async def run_sustained(
    store: SqliteStore, batches: list[list[NewMessage]], duration: float, rate: float
) -> Sustained:
    """Append `batches` for at most `duration` seconds; see the module docstring."""
    wal = store.path + "-wal"
    out = Sustained(0, 0.0, 0.0, 0.0, wal_size(wal), 0, [])
    checkpoints = store.checkpoint_stats
    restarts, holds = checkpoints.restarts, checkpoints.holds
    checkpoints.longest_hold = 0.0  # from this run on
    size = len(batches[0])
    interval = size / rate if rate > 0 else 0.0
    pending: list[tuple[float, BatchDone]] = []
    gc.collect()
    gc.freeze()  # no collection walks the prebuilt messages while timing
    try:
        c0, t0 = time.process_time(), time.thread_time()
        w0 = sample = time.perf_counter()
        for i, batch in enumerate(batches):
            if interval:
                delay = w0 + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            settled = BatchDone(len(batch))
            start = time.perf_counter()
            for m in batch:
                store.append(m, settled.done)
            pending.append((start, settled))
            if not interval:
                await settled.finished
            now = time.perf_counter()
            if now >= sample:
                out.wal_max = max(out.wal_max, wal_size(wal))
                sample = now + 0.002
            if now - w0 >= duration:
                break
        await asyncio.gather(*(settled.finished for _, settled in pending))
        out.cpu = time.process_time() - c0
        out.loop_cpu = time.thread_time() - t0
        out.wall = time.perf_counter() - w0
    finally:
        gc.unfreeze()
    for start, settled in pending:
        if settled.failures:
            raise SystemExit(f"append failed: {settled.failures[0]!r}")
        out.latencies.append(settled.at - start)
        out.rows += size
    out.wal_max = max(out.wal_max, wal_size(wal))
    out.wal_end = wal_size(wal)
    out.restarts = checkpoints.restarts - restarts
    out.holds = checkpoints.holds - holds
    out.longest_hold = checkpoints.longest_hold
    return out


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank `p` percentile of `values` (0 < p <= 100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def settle(store: SqliteStore, sustained: bool) -> None:
    """Between runs: commit everything and, unless `sustained`, empty the WAL.

    Under a steady stream of commits the WAL fills up and starts over as the
    store's checkpointer goes (see `kefu.store.sqlite.checkpointer.Checkpointer`);
    emptying it here makes every run start from the same state.
    """
    await store.flush()
    if sustained:
        return

    def truncate() -> bool:
        con = sqlite3.connect(store.path, timeout=10)
        try:
            busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            con.close()
        return not busy

    # busy while the store's checkpointer is in a pass (that lock has no busy handler)
    for _ in range(100):
        if await asyncio.to_thread(truncate):
            return
        await asyncio.sleep(0.01)
    raise SystemExit("could not empty the WAL")


@contextlib.asynccontextmanager
async def warmed_store(
    args: argparse.Namespace, new_id: IdGenerator, rng: random.Random
) -> AsyncIterator[tuple[SqliteStore, list[tuple[str, str, str]]]]:
    """A fresh migrated store in a temporary folder, its conversations, `--warmup` rows in."""
    with tempfile.TemporaryDirectory(prefix="kefu-store-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'kefu.db'}"
        upgrade(url)
        store = SqliteStore(url, synchronous=args.synchronous)
        await store.start()
        try:
            routes = await setup(store, new_id, args.conversations)
            if args.warmup:
                await run_size(store, new_id, routes, 300, args.warmup, rng, args.text)
            yield store, routes
        finally:
            await store.close()


async def main(args: argparse.Namespace) -> None:
    if args.duration > 0:
        await main_sustained(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(args.seed)
    new_id = IdGenerator(node=1)
    async with warmed_store(args, new_id, rng) as (store, routes):
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


async def main_sustained(args: argparse.Namespace) -> None:
    """`--duration`: each run appends for that long at one batch size, the WAL kept."""
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(args.seed)
    new_id = IdGenerator(node=1)
    async with warmed_store(args, new_id, rng) as (store, routes):
        results: dict[int, list[Sustained]] = {s: [] for s in sizes}
        for r in range(args.repeat):
            for size in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:
                if args.rate > 0:
                    rows = args.rate * args.duration + size
                else:  # how many rows the run could take: 1.5 times a short run's rate
                    probe = await run_size(store, new_id, routes, size, 5000, rng, args.text)
                    rows = 1.5 * probe.rows / probe.wall * args.duration
                batches = [
                    build(new_id, routes, size, rng, args.text)
                    for _ in range(max(1, int(rows) // size))
                ]
                await settle(store, sustained=False)  # every run starts from an empty WAL
                # not timed: the first commit into the emptied WAL syncs its new header
                # and waits while the file system frees the old WAL's blocks
                await run_size(store, new_id, routes, size, size, rng, args.text)
                results[size].append(await run_sustained(store, batches, args.duration, args.rate))
                del batches
        await store.flush()
        stats = store.writer.stats
    load = f"a batch every size/{args.rate:g} s" if args.rate > 0 else "closed loop"
    print(
        f"SQLite {sqlite3.sqlite_version}, synchronous={args.synchronous},"
        f" {args.conversations} conversations, {args.warmup} rows before timing,"
        f" {args.duration:g} s per run ({load}), WAL kept during a run,"
        f" median of {args.repeat} runs (WAL max: the largest; latency: every batch);"
        f" {stats.commits} commits"
    )
    print(
        f"{'batch':>6} {'secs':>5} {'rows/s':>9} {'CPU us/row':>11} {'(loop)':>7}"
        f" {'WAL max MiB':>12}"
        f" {'end MiB':>8}"
        f" {'batch latency p50 / p99 / max ms':>33} {'restarts':>8} {'holds':>6}"
        f" {'longest hold ms':>15}"
    )
    mib = 1024 * 1024
    for size in sizes:
        runs = results[size]
        lat = [x * 1e3 for run in runs for x in run.latencies]
        latency = f"{percentile(lat, 50):.2f} / {percentile(lat, 99):.2f} / {max(lat):.2f}"
        print(
            f"{size:>6} {statistics.median(r.wall for r in runs):>5.1f}"
            f" {statistics.median(r.rows / r.wall for r in runs):>9,.0f}"
            f" {statistics.median(r.cpu / r.rows * 1e6 for r in runs):>11.1f}"
            f" {statistics.median(r.loop_cpu / r.rows * 1e6 for r in runs):>7.1f}"
            f" {max(r.wal_max for r in runs) / mib:>12.1f}"
            f" {statistics.median(r.wal_end for r in runs) / mib:>8.1f} {latency:>33}"
            f" {sum(r.restarts for r in runs):>8} {sum(r.holds for r in runs):>6}"
            f" {max(r.longest_hold for r in runs) * 1e3:>15.2f}"
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
    p.add_argument(
        "--duration", type=float, default=0.0, help="seconds per run of steady load (WAL kept)"
    )
    p.add_argument(
        "--rate", type=float, default=0.0, help="with --duration: rows/s (0: closed loop)"
    )
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
