"""Load generator for the chat benchmark: asyncio + picows (+ uvloop), one process, one clock.

The process owns both sockets of every user/waiter pair, so the user-to-waiter
latency is read from one monotonic clock. It speaks kefu's frames (auth,
connect/ready pairing, message_text), which the other two systems under test
speak too. Run by bench/run.py as

    python loadgen.py '<json config>'

and prints one JSON object per line on stdout (progress and results). Modes:

* ``pairs``: open P pairs, then run the phases in order:
  ``closed`` (K frames in flight per user, for saturation) or
  ``open`` (sends at scheduled times at a fixed total rate; latency is
  measured from the *scheduled* time, so a stalled server cannot hide its
  queueing delay: no coordinated omission).
* ``connect``: open N sessions (connect + auth, then close), C at a time;
  run twice with the same tokens: first use (accounts new to the server)
  and returning.
* ``idle``: open authenticated sockets and hold them; commands on stdin
  (``open N`` / ``close``) so the orchestrator can sample the server's RSS.

Every phase is bounded in count and time; the whole process has a deadline
(``max_seconds``) after which it exits whatever it is doing. The generator
reports its own CPU use (fraction of one core) so that a run where it, not
the server, was the bottleneck can be marked.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import resource
import secrets
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import jwt
import orjson
import uvloop
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

TEXT = WSMsgType.TEXT
CLK_TCK = os.sysconf("SC_CLK_TCK")
now = time.perf_counter


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# -- CPU accounting ---------------------------------------------------------------
def proc_cpu(pid: int) -> float:
    """utime+stime of a whole process (all threads), in seconds, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def machine_busy() -> float:
    """Seconds all CPUs spent in user+nice+system mode (softirq/irq excluded), from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()
    return (int(fields[1]) + int(fields[2]) + int(fields[3])) / CLK_TCK


class CpuWindow:
    """CPU seconds used by the servers, by this process and by everything else over a window.

    `other_cpu` (in cores) is the machine's busy time that is neither the
    servers' nor the generator's: other people's work on a shared box. A
    window with much of it is noisy and is marked so by the orchestrator.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = now()
        self.gen0 = self_cpu()
        self.busy0 = machine_busy()
        self.srv0 = {name: proc_cpu(pid) for name, pid in pids.items()}

    def result(self) -> dict[str, Any]:
        wall = now() - self.t0
        gen = self_cpu() - self.gen0
        srv = {name: round(proc_cpu(pid) - self.srv0[name], 3) for name, pid in self.pids.items()}
        other = machine_busy() - self.busy0 - gen - sum(srv.values())
        return {
            "wall_s": round(wall, 3),
            "gen_cpu": round(gen / wall, 3),
            "server_cpu_s": srv,
            "other_cpu": round(max(0.0, other) / wall, 3),
        }


# -- statistics ---------------------------------------------------------------------
def summary(values: list[float]) -> dict[str, Any]:
    """Percentiles in milliseconds (values are seconds)."""
    if not values:
        return {"n": 0}
    values.sort()
    n = len(values)

    def q(p: float) -> float:
        return round(values[min(n - 1, max(0, math.ceil(p * n) - 1))] * 1e3, 3)

    return {
        "n": n,
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "p999": q(0.999),
        "max": round(values[-1] * 1e3, 3),
        "mean": round(sum(values) / n * 1e3, 3),
    }


# -- sockets --------------------------------------------------------------------------
class Sock(WSListener):
    """One WebSocket. Frames go to `on_data` when set (the hot path), else to an inbox."""

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.on_data: Callable[[bytes], None] | None = None
        self.inbox: deque[bytes] = deque()
        self.wakeup: asyncio.Future[None] | None = None
        self.closed = False
        self.sid = ""  # the server's id for this socket (`to` of auth_success)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is TEXT or kind is WSMsgType.BINARY:
            data = frame.get_payload_as_bytes()
            if self.on_data is not None:
                self.on_data(data)
                return
            self.inbox.append(data)
            if self.wakeup is not None and not self.wakeup.done():
                self.wakeup.set_result(None)
        elif kind is WSMsgType.CLOSE:
            self.closed = True
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.send(TEXT, data)

    async def recv(self, timeout: float) -> dict[str, Any]:
        """The next frame, parsed (setup only; the hot path never parses JSON)."""
        deadline = now() + timeout
        while not self.inbox:
            if self.closed:
                raise ConnectionError("socket closed")
            left = deadline - now()
            if left <= 0:
                raise TimeoutError("no frame in time")
            self.wakeup = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.wakeup, left)
            except TimeoutError:
                pass
            finally:
                self.wakeup = None
        return orjson.loads(self.inbox.popleft())

    async def expect(self, types: tuple[str, ...], timeout: float) -> dict[str, Any]:
        """Skip frames until one of `types` comes; an `error` frame raises."""
        deadline = now() + timeout
        for _ in range(1000):
            frame = await self.recv(max(0.001, deadline - now()))
            if frame.get("type") in types:
                return frame
            if frame.get("type") == "error":
                raise RuntimeError(f"server error: {frame.get('payload')}")
        raise RuntimeError(f"no {types} frame")

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            try:
                self.transport.send_close(WSCloseCode.OK)  # picows' default (0) is not a valid code
            finally:
                self.transport.disconnect()


class Env:
    """Connection settings shared by all modes."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.url = cfg["url"].rstrip("/")
        self.secret = cfg["secret"]
        self.sources = cfg.get("source_addrs") or ["127.0.0.1"]
        self.run_id = cfg.get("run_id") or secrets.token_hex(4)
        self.counter = itertools.count()
        self.read_buffer = int(cfg.get("read_buffer", 16384))

    def token(self, role: str, name: str) -> str:
        t = int(time.time())
        claims = {"sub": name, "role": role, "username": name, "iat": t, "exp": t + 86400}
        return jwt.encode(claims, self.secret, algorithm="HS256")

    async def open(self, side: str, timeout: float = 10.0) -> Sock:
        src = self.sources[next(self.counter) % len(self.sources)]
        _, sock = await asyncio.wait_for(
            ws_connect(
                Sock,
                f"{self.url}/v1/ws/connect/{side}",
                local_addr=(src, 0),
                read_buffer_init_size=self.read_buffer,
                websocket_handshake_timeout=timeout,
            ),
            timeout,
        )
        assert isinstance(sock, Sock)
        return sock

    async def open_authed(self, side: str, token: str, timeout: float = 10.0) -> Sock:
        sock = await self.open(side, timeout)
        try:
            sock.send(orjson.dumps({"type": "auth", "payload": {"token": token}}))
            sock.sid = (await sock.expect(("auth_success",), timeout))["to"]
        except BaseException:
            sock.close()
            raise
        return sock


# -- pairs: the message path -------------------------------------------------------------
class Stats:
    """Latencies of the messages *scheduled* inside the measurement window."""

    def __init__(self) -> None:
        self.t_start = math.inf
        self.t_end = math.inf
        self.ack: list[float] = []
        self.dlv: list[float] = []
        self.lag: list[float] = []  # open loop: actual send time - scheduled time
        self.acked = 0  # acks received inside the window (throughput)
        self.delivered = 0
        self.errors = 0
        self.bad = 0  # a delivery that was not the next expected message
        self.samples: list[str] = []

    def in_window(self, t: float) -> bool:
        return self.t_start <= t < self.t_end


class Pair:
    __slots__ = (
        "acks",
        "closed_loop",
        "dlvs",
        "done_acks",
        "done_dlvs",
        "gen",
        "k",
        "prefix",
        "seq",
        "stats",
        "user",
        "waiter",
    )

    def __init__(self, gen: PairGen, index: int, user: Sock, waiter: Sock) -> None:
        self.gen = gen
        self.user = user
        self.waiter = waiter
        self.stats = gen.stats
        self.seq = 0
        self.done_acks = 0
        self.done_dlvs = 0
        self.acks: deque[float] = deque()  # scheduled send times, oldest first
        self.dlvs: deque[tuple[int, float]] = deque()
        self.prefix = b"%s%06x" % (gen.op_prefix, index)
        self.k = 0  # closed loop: frames in flight; 0 = open loop
        user.on_data = self.on_ack
        waiter.on_data = self.on_delivery

    def send(self, t_sched: float) -> None:
        seq = self.seq
        self.seq = seq + 1
        self.user.send(
            b'{"type":"message_text","op_id":"%s%06x","payload":{"text":"hello from bench #%d#"}}'
            % (self.prefix, seq & 0xFFFFFF, seq)
        )
        self.acks.append(t_sched)
        self.dlvs.append((seq, t_sched))

    def in_flight(self) -> int:
        return self.seq - min(self.done_acks, self.done_dlvs)

    def refill(self) -> None:
        k = self.k
        if k and self.gen.running:
            while self.seq - min(self.done_acks, self.done_dlvs) < k:
                self.send(now())

    def on_ack(self, data: bytes) -> None:
        t = now()
        stats = self.stats
        if b"_success" not in data:
            if b"error" in data:  # anything else (a late setup frame) is not about messages
                stats.errors += 1
                if len(stats.samples) < 5:
                    stats.samples.append(data[:300].decode(errors="replace"))
            return
        if not self.acks:
            stats.bad += 1
            return
        t0 = self.acks.popleft()
        self.done_acks += 1
        if stats.t_start <= t0 < stats.t_end:
            stats.ack.append(t - t0)
        if stats.t_start <= t < stats.t_end:
            stats.acked += 1
        if self.k:
            self.refill()

    def on_delivery(self, data: bytes) -> None:
        t = now()
        stats = self.stats
        if not self.dlvs:
            stats.bad += 1
            return
        seq, t0 = self.dlvs[0]
        if b"#%d#" % seq not in data:
            if b"hello from bench #" not in data:
                return  # a late setup frame (new_connection, ready ack)
            stats.bad += 1  # lost, duplicated or reordered: this pair stalls from here on
            if len(stats.samples) < 5:
                stats.samples.append("waiter got: " + data[:300].decode(errors="replace"))
            return
        self.dlvs.popleft()
        self.done_dlvs += 1
        if stats.t_start <= t0 < stats.t_end:
            stats.dlv.append(t - t0)
        if stats.t_start <= t < stats.t_end:
            stats.delivered += 1
        if self.k:
            self.refill()


class PairGen:
    def __init__(self, env: Env, cfg: dict[str, Any]) -> None:
        self.env = env
        self.cfg = cfg
        self.pairs: list[Pair] = []
        self.stats = Stats()
        self.running = False
        self.op_prefix = str(uuid.uuid4())[:24].encode()  # + 6 hex pair + 6 hex seq = a uuid

    async def setup(self, n: int, concurrency: int = 50) -> None:
        env = self.env
        sem = asyncio.Semaphore(concurrency)
        run = env.run_id

        async def waiter(i: int) -> Sock:
            async with sem:
                sock = await env.open_authed("waiter", env.token("waiter", f"bw-{run}-{i}"))
                sock.send(b'{"type":"ready"}')
                return sock

        async def user(i: int) -> Sock:
            async with sem:
                sock = await env.open_authed("user", env.token("user", f"bu-{run}-{i}"))
                sock.send(b'{"type":"connect"}')
                frame = await sock.expect(("connect_success",), 20.0)
                sock.inbox.clear()
                return sock, frame["from"]

        waiters = await asyncio.gather(*(waiter(i) for i in range(n)))
        await asyncio.sleep(0.2)  # let the `ready`s land before the users ask
        by_sid = {w.sid: w for w in waiters}
        users = await asyncio.gather(*(user(i) for i in range(n)))
        for i, (u, waiter_sid) in enumerate(users):
            w = by_sid.pop(waiter_sid, None)
            if w is None:
                raise RuntimeError(f"user {i} paired with unknown or shared waiter {waiter_sid}")
            w.inbox.clear()
            self.pairs.append(Pair(self, i, u, w))
        for w in by_sid.values():
            w.close()
        await asyncio.sleep(0.2)
        for p in self.pairs:  # drop setup leftovers (new_connection, ready acks)
            p.waiter.inbox.clear()

    def outstanding(self) -> int:
        return sum(p.in_flight() for p in self.pairs)

    async def drain(self, timeout: float) -> int:
        deadline = now() + timeout
        while now() < deadline and self.outstanding():
            await asyncio.sleep(0.01)
        return self.outstanding()

    def fresh_stats(self) -> Stats:
        self.stats = Stats()
        for p in self.pairs:
            p.stats = self.stats
        return self.stats

    def result(self, phase: dict[str, Any], stats: Stats, cpu: dict[str, Any]) -> dict[str, Any]:
        window = max(1e-3, stats.t_end - stats.t_start)  # > 0 even if stopped in warm-up
        return {
            "event": "phase",
            **phase,
            "pairs": len(self.pairs),
            "window_s": round(window, 3),
            "acked": stats.acked,
            "delivered": stats.delivered,
            "rate_acked": round(stats.acked / window, 1),
            "rate_delivered": round(stats.delivered / window, 1),
            "lat_ack": summary(stats.ack),
            "lat_dlv": summary(stats.dlv),
            "send_lag": summary(stats.lag),
            "errors": stats.errors,
            "bad": stats.bad,
            "error_samples": stats.samples,
            **cpu,
        }

    async def closed(
        self, k: int, warmup: float, duration: float, pids: dict[str, int]
    ) -> dict[str, Any]:
        stats = self.fresh_stats()
        self.running = True
        for p in self.pairs:
            p.k = k
            p.refill()
        await asyncio.sleep(warmup)
        stats.t_start = now()
        stats.t_end = stats.t_start + duration
        cpu = CpuWindow(pids)
        await asyncio.sleep(duration)
        cpu_result = cpu.result()
        self.running = False
        for p in self.pairs:
            p.k = 0
        rate = max(1.0, stats.acked / duration)  # a slow system needs longer to drain K x P
        left = await self.drain(min(30.0, 5.0 + self.outstanding() / rate))
        return self.result({"mode": "closed", "k": k, "lost": left}, stats, cpu_result)

    async def open(
        self, rate: float, warmup: float, duration: float, pids: dict[str, int], max_backlog: int
    ) -> dict[str, Any]:
        stats = self.fresh_stats()
        pairs = self.pairs
        npairs = len(pairs)
        total = int(rate * (warmup + duration))
        t0 = now() + 0.01
        stats.t_start = t0 + warmup
        stats.t_end = stats.t_start + duration
        cpu: CpuWindow | None = None
        cpu_result: dict[str, Any] = {}
        sent = 0
        overloaded = False
        lag = stats.lag
        while sent < total:
            t = now()
            if cpu is None and t >= stats.t_start:
                cpu = CpuWindow(pids)
            due = min(total, int((t - t0) * rate) + 1)
            while sent < due:
                t_sched = t0 + sent / rate
                pairs[sent % npairs].send(t_sched)
                if stats.t_start <= t_sched < stats.t_end:
                    lag.append(t - t_sched)
                sent += 1
            if self.outstanding() > max_backlog:
                overloaded = True
                break
            next_t = t0 + sent / rate
            # event-loop timers tick in milliseconds: sleep at least one tick rather than
            # spin; a message sent late still counts its latency from its scheduled time
            await asyncio.sleep(max(0.001, next_t - now()))
        if cpu is None:
            cpu = CpuWindow(pids)
        wait_end = stats.t_end - now()
        if wait_end > 0 and not overloaded:
            await asyncio.sleep(wait_end)
        cpu_result = cpu.result()
        left = await self.drain(3.0 if not overloaded else 1.0)
        achieved = stats.acked / duration
        sustained = (
            not overloaded
            and left == 0
            and achieved >= 0.97 * rate
            and stats.errors == 0
            and stats.bad == 0
        )
        if overloaded:
            stats.t_end = min(stats.t_end, now())
        return self.result(
            {
                "mode": "open",
                "target_rate": rate,
                "lost": left,
                "overloaded": overloaded,
                "sustained": sustained,
            },
            stats,
            cpu_result,
        )


async def run_pairs(env: Env, cfg: dict[str, Any]) -> None:
    gen = PairGen(env, cfg)
    t = now()
    await gen.setup(int(cfg["pairs"]))
    emit({"event": "ready", "pairs": len(gen.pairs), "setup_s": round(now() - t, 3)})
    pids = {k: int(v) for k, v in cfg.get("pids", {}).items()}
    for phase in cfg["phases"]:
        if phase["mode"] == "closed":
            result = await gen.closed(int(phase["k"]), phase["warmup"], phase["duration"], pids)
        else:
            result = await gen.open(
                float(phase["rate"]),
                phase["warmup"],
                phase["duration"],
                pids,
                int(phase.get("max_backlog", 20000)),
            )
        emit(result)
        if phase["mode"] == "open" and not result["sustained"] and cfg.get("stop_when_unsustained"):
            emit({"event": "stopped", "reason": f"rate {phase['rate']} not sustained"})
            break
        await asyncio.sleep(float(cfg.get("pause", 0.5)))
    for p in gen.pairs:
        p.user.close()
        p.waiter.close()


# -- connect + auth -------------------------------------------------------------------------
async def connect_pass(env: Env, tokens: list[str], conc: int) -> tuple[list[float], list[str]]:
    """Open, authenticate and close one session per token, `conc` at a time."""
    times: list[float] = []
    errors: list[str] = []
    nexti = itertools.count()

    async def worker() -> None:
        for i in iter(nexti.__next__, None):
            if i >= len(tokens):
                return
            t = now()
            try:
                sock = await env.open_authed("user", tokens[i], 10.0)
            except Exception as exc:  # counted, never retried
                if len(errors) < 1000:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            times.append(now() - t)
            sock.close()

    await asyncio.gather(*(worker() for _ in range(conc)))
    return times, errors


async def run_connect(env: Env, cfg: dict[str, Any]) -> None:
    n, conc = int(cfg["sessions"]), int(cfg.get("concurrency", 64))
    tokens = [env.token("user", f"bc-{env.run_id}-{i}") for i in range(n)]
    pids = {k: int(v) for k, v in cfg.get("pids", {}).items()}
    for label in cfg.get("passes", ["new", "returning"]):
        cpu = CpuWindow(pids)
        t0 = now()
        times, errors = await asyncio.wait_for(
            connect_pass(env, tokens, conc), float(cfg.get("timeout", 120))
        )
        wall = now() - t0
        emit(
            {
                "event": "phase",
                "mode": "connect",
                "pass": label,
                "sessions": n,
                "concurrency": conc,
                "ok": len(times),
                "errors": len(errors),
                "error_samples": sorted(set(errors))[:5],
                "rate": round(len(times) / wall, 1),
                "lat": summary(times),
                **cpu.result(),
            }
        )
        await asyncio.sleep(float(cfg.get("pause", 1.0)))


# -- idle sockets -----------------------------------------------------------------------------
async def open_idle(env: Env, n: int, conc: int, first: int, socks: list[Sock]) -> list[str]:
    """Open and authenticate `n` more sockets, `conc` at a time; they stay open in `socks`."""
    errors: list[str] = []
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> None:
        async with sem:
            try:
                token = env.token("user", f"bi-{env.run_id}-{i}")
                sock = await env.open_authed("user", token, 20.0)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            sock.inbox.clear()
            sock.on_data = _ignore
            socks.append(sock)

    await asyncio.gather(*(one(first + i) for i in range(n)))
    return errors


async def run_idle(env: Env, cfg: dict[str, Any]) -> None:
    conc = int(cfg.get("concurrency", 64))
    socks: list[Sock] = []
    opened = 0
    loop = asyncio.get_running_loop()
    emit({"event": "ready"})
    for _ in range(100):  # bounded number of commands
        line = await loop.run_in_executor(None, sys.stdin.readline)
        cmd = line.split()
        if not cmd or cmd[0] == "close":
            break
        if cmd[0] != "open":
            continue
        n = int(cmd[1])
        t0 = now()
        errors = await asyncio.wait_for(
            open_idle(env, n, conc, opened, socks), float(cfg.get("timeout", 300))
        )
        opened += n
        alive = sum(1 for s in socks if not s.closed)
        emit(
            {
                "event": "opened",
                "added": n,
                "alive": alive,
                "errors": len(errors),
                "error_samples": sorted(set(errors))[:3],
                "seconds": round(now() - t0, 3),
            }
        )
    for s in socks:
        s.close()
    await asyncio.sleep(0.5)


def _ignore(data: bytes) -> None:
    pass


async def main(cfg: dict[str, Any]) -> None:
    env = Env(cfg)
    mode = cfg["mode"]
    work = {"pairs": run_pairs, "connect": run_connect, "idle": run_idle}[mode](env, cfg)
    try:
        await asyncio.wait_for(work, float(cfg.get("max_seconds", 600)))
    except TimeoutError:
        emit({"event": "error", "error": "deadline reached"})
    except Exception as exc:
        emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        raise


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: loadgen.py '<json config>'")
    uvloop.run(main(json.loads(sys.argv[1])))
