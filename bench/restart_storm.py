"""Restart storm: every client of a busy server reconnects at once after a restart.

    bench/.venv/bin/python bench/restart_storm.py              # 1,000 sockets
    bench/.venv/bin/python bench/restart_storm.py --sockets 10000

N authenticated sockets in conversations (N/2 users, each served by its own
waiter: `KEFU_MAX_USERS_PER_WAITER=1`), each pair having exchanged messages,
some of them still arriving. Then kefu gets SIGTERM (its sockets close with
1012) and starts again on the same database. Every client reconnects with
capped exponential backoff and full jitter (as the widget does) and resumes
with `auth` + `last_id`: the server replays what it missed and re-attaches
its conversation (`connect_success` for a user, `new_connection` with
`resumed` for a waiter). Measured:

* time from SIGTERM until the old process has exited (every socket closed),
  until the new one listens (started as soon as the old one is gone, as a
  supervisor does), and until every socket is back in its conversation (its
  user has its `connect_success`, its waiter its `new_connection`);
* messages lost: acked to the sender before the restart but never received
  by the other side, live or replayed (must be 0), and received twice;
* the new server's CPU time and peak RSS during the storm (from /proc), and the
  clients' own CPU time (they share one core: near the storm's length means
  the clients, not the server, set the pace);
* then one more message each way per pair, to show the desk works.

kefu runs pinned to CPU 0 and the clients to CPU 1, as in bench/run.py.
Prints a JSON object with the figures; `--markdown` prints a table row too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
import uvloop
from loadgen import Env, Sock, proc_cpu

BENCH = Path(__file__).resolve().parent
KEFU = BENCH.parent / ".venv" / "bin" / "kefu"
now = time.perf_counter


# -- the server, restarted on one database -------------------------------------------------
class Kefu:
    def __init__(self, workdir: Path, port: int, secret: str, cpu: str) -> None:
        self.workdir, self.port, self.cpu = workdir, port, cpu
        self.env = {
            **os.environ,
            "KEFU_DATABASE_URL": f"sqlite:///{workdir}/kefu.db",
            "KEFU_SECRET": secret,
            "KEFU_MAX_USERS_PER_WAITER": "1",
            "KEFU_RESUME_GRACE": "120",
            "KEFU_RATE_LIMIT": "1000000",
            "KEFU_RATE_BURST": "1000000",
            # the storm comes from a few client addresses: let them all wait for `auth` at once
            "KEFU_MAX_UNAUTHENTICATED_PER_ADDRESS": "20000",
            "KEFU_MAX_UNAUTHENTICATED": "20000",
            "KEFU_LOG_LEVEL": "warning",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> float:
        """Start and wait until it listens; the seconds that took."""
        self.runs += 1
        started = now()
        log = (self.workdir / f"server-{self.runs}.log").open("wb")
        cmd = ["taskset", "-c", self.cpu, str(KEFU), "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.workdir, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError((self.workdir / f"server-{self.runs}.log").read_text()[-2000:])
            with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return now() - started
            if time.monotonic() > deadline:
                raise RuntimeError("kefu did not start in 60 s")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def peak_rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return proc_cpu(self.proc.pid)


@contextmanager
def kefu(cpu: str) -> Iterator[Kefu]:
    workdir = Path(tempfile.mkdtemp(prefix="kefu-storm-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Kefu(workdir, port, secrets.token_urlsafe(32), cpu)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- one client: a socket that comes back ----------------------------------------------------
class Client:
    """One user or waiter: its token, its current socket, what it has received."""

    def __init__(self, env: Env, side: str, name: str) -> None:
        self.env, self.side, self.name = env, side, name
        self.token = env.token(side, name)
        self.sock: Sock | None = None
        self.uuid = ""
        self.peer = ""  # the other side's socket UUID, as last told
        self.received: dict[str, int] = {}  # message id -> times received
        self.last_id = ""
        self.back_at = 0.0  # when it was back in its conversation after the restart
        self.attempts = 0

    def note(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message_text" and "id" in frame:
            mid = frame["id"]
            self.received[mid] = self.received.get(mid, 0) + 1
            self.last_id = max(self.last_id, mid)

    async def open(self, last_id: str | None = None) -> None:
        sock = await self.env.open(self.side)
        payload: dict[str, Any] = {"token": self.token}
        if last_id:
            payload["last_id"] = last_id
        sock.send(orjson.dumps({"type": "auth", "payload": payload}))
        self.uuid = (await sock.expect(("auth_success",), 30))["to"]
        self.sock = sock

    async def drain(self, until: tuple[str, ...], timeout: float) -> dict[str, Any]:
        """Read frames (noting messages) until one of `until` comes."""
        assert self.sock is not None
        while True:
            frame = await self.sock.recv(timeout)
            self.note(frame)
            if frame.get("type") in until:
                return frame

    async def come_back(self, base: float, cap: float, t0: float) -> None:
        """Reconnect with capped exponential backoff and full jitter, then resume."""
        delay = base
        while True:
            await asyncio.sleep(random.uniform(0, delay))
            self.attempts += 1
            try:
                await self.open(self.last_id or None)
                back = ("connect_success",) if self.side == "user" else ("new_connection",)
                frame = await self.drain(back, 60)
                self.peer = frame.get("from", "")
                self.back_at = now() - t0
                return
            except (OSError, TimeoutError, ConnectionError, RuntimeError):
                if self.sock is not None:
                    self.sock.close()
                    self.sock = None
                delay = min(cap, delay * 2)


async def say(sender: Client, receiver: Client, text: str) -> str:
    """Send one text and wait for its ack; the id it was stored under."""
    assert sender.sock is not None
    frame: dict[str, Any] = {"type": "message_text", "payload": {"text": text}}
    if sender.side == "waiter":
        frame["to"] = sender.peer  # its user's socket, as its last new_connection said
    sender.sock.send(orjson.dumps(frame))
    ack = await sender.drain(("message_text_success",), 30)
    return str(ack["id"])


async def pair_up(env: Env, i: int) -> tuple[Client, Client]:
    waiter = Client(env, "waiter", f"storm-w{i}-{env.run_id}")
    user = Client(env, "user", f"storm-u{i}-{env.run_id}")
    await waiter.open()
    assert waiter.sock is not None
    waiter.sock.send(b'{"type":"ready"}')
    await waiter.drain(("ready",), 30)
    await user.open()
    assert user.sock is not None
    user.sock.send(b'{"type":"connect"}')
    user.peer = (await user.drain(("connect_success",), 30))["from"]
    waiter.peer = (await waiter.drain(("new_connection",), 30))["from"]
    return user, waiter


async def gather_bounded(coros: list[Any], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with gate:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def storm(args: argparse.Namespace, server: Kefu) -> dict[str, Any]:
    env = Env(
        {
            "url": f"ws://127.0.0.1:{server.port}",
            "secret": server.env["KEFU_SECRET"],
            "source_addrs": [f"127.0.0.{i}" for i in range(2, 10)],
        }
    )
    # one pair at a time, so that each user is served by the waiter made with it
    pairs = [await pair_up(env, i) for i in range(args.sockets // 2)]
    acked: dict[int, list[str]] = {}  # pair -> ids acked to either side before the restart

    async def chat(i: int, user: Client, waiter: Client) -> None:
        ids = [await say(user, waiter, f"before {i} a"), await say(waiter, user, f"before {i} b")]
        ids.append(await say(user, waiter, f"before {i} c"))
        acked[i] = ids

    await gather_bounded([chat(i, u, w) for i, (u, w) in enumerate(pairs)], 64)
    # the last message of each pair may still be on its way to the receiver: the restart
    # cuts it off, and the resume must replay it
    clients = [c for pair in pairs for c in pair]

    rss_before = server.rss_kib()
    t0, client_cpu0 = now(), time.process_time()
    # SIGTERM: every socket gets 1012
    stopping = asyncio.ensure_future(asyncio.to_thread(server.stop))

    async def restart() -> tuple[float, float]:
        """As a supervisor does: start again as soon as the old process is gone."""
        await stopping
        exited = now() - t0
        await asyncio.to_thread(server.start)
        return exited, now() - t0

    async def lose_and_return(c: Client) -> None:
        """Read until the server's close (what arrived counts as received), then come back."""
        assert c.sock is not None
        with suppress(Exception):
            while True:
                c.note(await c.sock.recv(60))
        c.sock.close()
        c.sock = None
        await c.come_back(args.base, args.cap, t0)

    restarting = asyncio.ensure_future(restart())
    await asyncio.gather(*(lose_and_return(c) for c in clients))
    all_back = now() - t0
    client_cpu = time.process_time() - client_cpu0  # one core for all clients: are they the limit?
    exited, listening = await restarting
    cpu_storm = server.cpu_seconds()  # the new process's CPU since it started
    peak = server.peak_rss_kib()
    rss_after = server.rss_kib()

    lost = duplicated = 0
    for i, (user, waiter) in enumerate(pairs):
        to_waiter = [acked[i][0], acked[i][2]]
        to_user = [acked[i][1]]
        # replays arrive after the reattachment frame: give them a moment
        for c, expected in ((waiter, to_waiter), (user, to_user)):
            deadline = now() + 10
            while any(mid not in c.received for mid in expected) and now() < deadline:
                with suppress(TimeoutError):
                    c.note(await c.sock.recv(0.2))  # type: ignore[union-attr]
            lost += sum(1 for mid in expected if mid not in c.received)
            duplicated += sum(1 for mid in expected if c.received.get(mid, 0) > 1)

    async def after(user: Client, waiter: Client) -> None:
        await say(user, waiter, "after")
        await say(waiter, user, "after too")

    t_after = now()
    await gather_bounded([after(u, w) for u, w in pairs], 64)
    for c in clients:
        if c.sock is not None:
            c.sock.close()
    backs = sorted(c.back_at for c in clients)
    return {
        "sockets": len(clients),
        "old_server_exited_s": round(exited, 3),
        "listening_again_s": round(listening, 3),
        "all_back_s": round(all_back, 3),
        "back_p50_s": round(backs[len(backs) // 2], 3),
        "back_p99_s": round(backs[int(len(backs) * 0.99) - 1], 3),
        "attempts_per_socket": round(sum(c.attempts for c in clients) / len(clients), 2),
        "lost": lost,
        "received_twice": duplicated,
        "server_cpu_s_start_and_storm": round(cpu_storm, 3),
        "client_cpu_s_storm": round(client_cpu, 3),
        "rss_mib_before_sigterm": round(rss_before / 1024, 1),
        "peak_rss_mib_new_process": round(peak / 1024, 1),
        "rss_mib_after_storm": round(rss_after / 1024, 1),
        "after_round_trip_s": round(now() - t_after, 3),
        "backoff": {"base_s": args.base, "cap_s": args.cap, "jitter": "full"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=1000, help="users + waiters (even)")
    parser.add_argument("--base", type=float, default=0.25, help="first backoff cap, s")
    parser.add_argument("--cap", type=float, default=5.0, help="largest backoff, s")
    parser.add_argument("--markdown", action="store_true", help="also print a table row")
    args = parser.parse_args()
    if shutil.which("taskset") is None:
        sys.exit("needs taskset (util-linux)")
    os.sched_setaffinity(0, {1})
    with kefu("0") as server:
        result = uvloop.run(storm(args, server))
    print(json.dumps(result))
    if args.markdown:
        r = result
        print(
            f"| {r['sockets']:,} | {r['old_server_exited_s']} / {r['listening_again_s']} | "
            f"{r['back_p50_s']} / "
            f"{r['back_p99_s']} / {r['all_back_s']} | {r['lost']} | {r['received_twice']} | "
            f"{r['server_cpu_s_start_and_storm']} | {r['rss_mib_before_sigterm']} / "
            f"{r['peak_rss_mib_new_process']} / {r['rss_mib_after_storm']} |"
        )


if __name__ == "__main__":
    main()
