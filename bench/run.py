"""The benchmark orchestrator: kefu vs the Python wire limit vs Django Channels, in one run.

    bench/.venv/bin/python bench/run.py           # full run, ~15 min; rewrites docs/performance.md
    bench/.venv/bin/python bench/run.py --quick    # ~2 min smoke run
    bench/.venv/bin/python bench/run.py --profile  # py-spy profile of kefu under saturation

Systems: (a) kefu with default settings (SQLite, one process), (b) relay_limit.py
(picows + uvloop, no JSON, no database), (c) Django Channels on daphne with
channels_redis groups and one ORM save per message (channels_app/).

Each system is started fresh (new database) for each scenario and repetition,
pinned to CPU 0; the load generator (loadgen.py) is pinned to CPU 1. Systems
run in alternating order (a b c, b c a, c a b, ...); the table shows medians
with min-max over repetitions. Results go to stdout and bench/results/*.json.
Traffic goes to 127.0.0.x only; every wait here has a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import perf_split
import webhook_sink

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
KEFU = ROOT / ".venv" / "bin" / "kefu"
BPY = BENCH / ".venv" / "bin" / "python"
SERVER_CPU, GEN_CPU = "0", "1"
NICE = [0]  # --nice: niceness of servers and generators (negative = ahead of other work)
WEBHOOK = [False]  # --webhook: kefu delivers every message to a local sink (webhook_sink.py)
SYSTEMS = {"a": "kefu", "b": "limit (picows relay)", "c": "Django Channels"}
TARGETS = {
    "throughput_vs_limit": 0.5,  # kefu acked msg/s >= 0.5 x (b)
    "throughput_vs_channels": 10.0,  # kefu acked msg/s >= 10 x (c)
    "p99_at_half_ms": 10.0,  # p99 user->waiter at 50% of kefu max < 10 ms
    "idle_kib_at_10k": 32.0,  # < 32 KiB RSS per idle authenticated connection at 10k
    "connect_per_s": 3000.0,  # >= 3,000 connect+auth per second
}
# Settings given to kefu on top of its defaults: only limits that would
# otherwise measure the rate limiter instead of the server.
KEFU_ENV = {"KEFU_RATE_LIMIT": "1000000", "KEFU_RATE_BURST": "1000000", "KEFU_LOG_LEVEL": "warning"}


@dataclass
class Profile:
    """How much of everything; --quick and the full run differ only here."""

    reps: int
    pairs: int
    k: int
    sat_warmup: float
    sat_seconds: float
    lat_warmup: float
    lat_seconds: float
    lat_fractions: tuple[float, ...]
    idle_levels: tuple[int, ...]
    idle_reps: int
    idle_procs: int
    connect_sessions: int
    connect_concurrency: int
    connect_reps: int
    quiet_wait: float  # at most this long, before each run, for others' load to calm down


FULL = Profile(
    reps=3,
    pairs=100,
    k=32,
    sat_warmup=3,
    sat_seconds=10,
    lat_warmup=2,
    lat_seconds=6,
    lat_fractions=(0.25, 0.5, 0.75),
    idle_levels=(1000, 5000, 10000),
    idle_reps=2,
    idle_procs=2,
    connect_sessions=3000,
    connect_concurrency=64,
    connect_reps=3,
    quiet_wait=5,
)
QUICK = Profile(
    reps=1,
    pairs=100,
    k=32,
    sat_warmup=2,
    sat_seconds=4,
    lat_warmup=1,
    lat_seconds=3,
    lat_fractions=(0.25, 0.5, 0.75),
    idle_levels=(1000, 2000),
    idle_reps=1,
    idle_procs=2,
    connect_sessions=1000,
    connect_concurrency=64,
    connect_reps=1,
    quiet_wait=3,
)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the systems under test -------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_pid(host: str = "127.0.0.1", port: int = 6379) -> int | None:
    """The local Redis server's pid (its CPU is part of (c)'s cost), from INFO."""
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"INFO server\r\n")
            data = b""
            deadline = time.monotonic() + 2
            while b"process_id:" not in data or not data.endswith(b"\r\n"):
                if time.monotonic() > deadline:
                    break
                data += s.recv(65536)
        m = re.search(rb"process_id:(\d+)", data)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Server:
    system: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def busy_cores(seconds: float) -> float:
    """How many cores the whole machine kept busy (user+nice+system) over `seconds`."""

    def busy() -> float:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return (int(fields[1]) + int(fields[2]) + int(fields[3])) / os.sysconf("SC_CLK_TCK")

    b0 = busy()
    time.sleep(seconds)
    return (busy() - b0) / seconds


def wait_quiet(limit: float = 0.3, max_wait: float = 10.0) -> float:
    """Wait (at most `max_wait` s) until others' work on this shared box uses < `limit` cores."""
    deadline = time.monotonic() + max_wait
    load = busy_cores(0.5)
    while load > limit and time.monotonic() < deadline:
        load = busy_cores(0.5)
    if load > limit:
        log(f"  the box is busy with other work ({load:.2f} cores): results will be noisy")
    return load


def start_command(
    system: str, workdir: Path, port: int, secret: str, run_id: str
) -> tuple[list[str], Path, dict[str, str]]:
    """(argv, cwd, env) of one system; (c) also gets its database migrated here."""
    env = dict(os.environ)
    if system == "a":
        env.update(KEFU_ENV, KEFU_DATABASE_URL=f"sqlite:///{workdir}/kefu.db", KEFU_SECRET=secret)
        if WEBHOOK[0]:  # the sink is on 127.0.0.1
            env["KEFU_WEBHOOK_ALLOW_PRIVATE"] = "true"
        return [str(KEFU), "serve", "--host", "127.0.0.1", "--port", str(port)], workdir, env
    if system == "b":
        return [str(BPY), str(BENCH / "relay_limit.py"), "--port", str(port)], workdir, env
    cwd = BENCH / "channels_app"
    env.update(
        DJANGO_SETTINGS_MODULE="benchsite.settings",
        BENCH_SECRET=secret,
        BENCH_DJANGO_DB=str(workdir / "channels.db"),
        BENCH_REDIS_PREFIX=f"kb{run_id}",
    )
    migrate = [str(BPY), "manage.py", "migrate", "-v0"]
    subprocess.run(migrate, cwd=cwd, env=env, check=True, timeout=120)
    daphne = str(BENCH / ".venv" / "bin" / "daphne")
    return [daphne, "-b", "127.0.0.1", "-p", str(port), "benchsite.asgi:application"], cwd, env


# Loaded by the profiled server through PYTHONPATH (no change to kefu): logs each
# collection that stops the interpreter for more than 5 ms.
GC_PROBE = """
import gc, sys, time
_start = [0.0]
def _probe(phase, info):
    if phase == "start":
        _start[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _start[0]) * 1e3
    if ms > 5:
        sys.stderr.write(f"GC-PAUSE gen{info['generation']} {ms:.1f} ms\\n")
gc.callbacks.append(_probe)
"""


@contextlib.contextmanager
def server(
    system: str, secret: str, run_id: str, quiet_wait: float = 5.0, gc_probe: bool = False
) -> Iterator[Server]:
    """Start one system pinned to CPU 0 on a fresh database; stop it (by pid) on exit.

    With `gc_probe`, the server logs every garbage collection over 5 ms (see GC_PROBE).
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"kefu-bench-{system}-"))
    port = free_port()
    cmd, cwd, env = start_command(system, workdir, port, secret, run_id)
    if gc_probe:
        (workdir / "gcprobe").mkdir()
        (workdir / "gcprobe" / "sitecustomize.py").write_text(GC_PROBE)
        env["PYTHONPATH"] = str(workdir / "gcprobe")
    with open(workdir / "server.log", "wb") as logf:
        proc = subprocess.Popen(
            [*pinned(SERVER_CPU), *cmd], cwd=cwd, env=env, stdout=logf, stderr=logf
        )
    srv = Server(system, proc, port, workdir, {"server": proc.pid})
    if system == "c" and (rpid := redis_pid()) is not None:
        srv.pids["redis"] = rpid
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                tail = (workdir / "server.log").read_text()[-2000:]
                raise RuntimeError(f"{SYSTEMS[system]} exited: {tail}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{SYSTEMS[system]} did not start in 60 s")
            time.sleep(0.1)
        hooked = contextlib.nullcontext({})
        if system == "a" and WEBHOOK[0]:
            hooked = webhook_sink.subscribed(KEFU, env, workdir, port, pinned(GEN_CPU))
        with hooked as sink:
            wait_quiet(max_wait=quiet_wait)
            yield srv
        if sink:
            log(f"  webhook sink: {sink.get('requests')} deliveries in {sink['seconds']:.0f} s")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


# -- the load generator -----------------------------------------------------------------
def pinned(cpu: str) -> list[str]:
    """The command prefix that pins to `cpu` (and raises priority with --nice)."""
    return [*(["nice", "-n", str(NICE[0])] if NICE[0] else []), "taskset", "-c", cpu]


def loadgen_cmd(cfg: dict[str, Any]) -> list[str]:
    return [
        *pinned(GEN_CPU),
        str(BPY),
        "-W",
        "ignore",
        str(BENCH / "loadgen.py"),
        json.dumps(cfg),
    ]


def run_loadgen(cfg: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    """Run one generator to the end; its JSON lines, or an error event."""
    cfg = {**cfg, "max_seconds": timeout - 5}
    try:
        out = subprocess.run(loadgen_cmd(cfg), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [{"event": "error", "error": f"loadgen timed out after {timeout} s"}]
    events = [json.loads(line) for line in out.stdout.decode().splitlines() if line.startswith("{")]
    if out.returncode != 0 and not any(e["event"] == "error" for e in events):
        events.append({"event": "error", "error": out.stderr.decode()[-1500:]})
    for e in events:
        if e["event"] == "error":
            log(f"loadgen error: {e['error']}")
    return events


def base_cfg(srv: Server, secret: str, run_id: str) -> dict[str, Any]:
    return {
        "url": srv.url,
        "secret": secret,
        "run_id": f"{run_id}{srv.system}{secrets.token_hex(2)}",
        "pids": srv.pids,
    }


# -- scenarios ------------------------------------------------------------------------------
def rotations(systems: list[str], reps: int) -> Iterator[tuple[int, str]]:
    """(rep, system) in alternating order: a b c, b c a, c a b, ..."""
    for rep in range(reps):
        shift = rep % len(systems)
        for system in systems[shift:] + systems[:shift]:
            yield rep, system


def cpu_us_per_msg(phase: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    n = phase.get("acked") or 0
    if not n:
        return None
    cpu = sum(phase["server_cpu_s"].get(k, 0.0) for k in keys)
    return cpu / n * 1e6 * phase["wall_s"] / phase["window_s"]


def saturation(
    systems: list[str], p: Profile, secret: str, run_id: str
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rep, system in rotations(systems, p.reps):
        log(f"saturation rep {rep + 1}/{p.reps}: {SYSTEMS[system]}")
        with server(system, secret, run_id, p.quiet_wait) as srv:
            cfg = {
                **base_cfg(srv, secret, run_id),
                "mode": "pairs",
                "pairs": p.pairs,
                "phases": [
                    {"mode": "closed", "k": p.k, "warmup": p.sat_warmup, "duration": p.sat_seconds}
                ],
            }
            events = run_loadgen(cfg, 60 + p.sat_warmup + p.sat_seconds)
        phases = [e for e in events if e["event"] == "phase"]
        if phases:
            ph = phases[0]
            ph["rep"] = rep
            ph["cpu_us_per_msg"] = cpu_us_per_msg(ph, ("server",))
            ph["cpu_us_per_msg_with_redis"] = cpu_us_per_msg(ph, ("server", "redis"))
            out[system].append(ph)
            log(
                f"  {ph['rate_acked']:.0f} acked msg/s, "
                f"{ph['cpu_us_per_msg'] or 0:.0f} server CPU us/msg, "
                f"gen CPU {ph['gen_cpu']:.0%}, other load {ph['other_cpu']:.2f} cores"
            )
        else:
            out[system].append({"rep": rep, "failed": True, "events": events})
    return out


def nice_floor(x: float) -> float:
    """The largest of 1, 2, 2.5, 5 x 10^k not above x."""
    if x <= 0:
        return 0.0
    exp = 10.0 ** int(f"{x:e}".split("e")[1])
    for m in (5, 2.5, 2, 1):
        if m * exp <= x:
            return m * exp
    return exp


def rkey(rate: float) -> str:
    """A rate as a dictionary key (JSON keys are strings)."""
    return f"{float(rate):.1f}"


def latency(
    systems: list[str],
    p: Profile,
    secret: str,
    run_id: str,
    max_rates: dict[str, float],
    kefu_max: float,
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    points = [
        {"label": f"{int(f * 100)}% of kefu max", "rate": float(round(kefu_max * f, -1))}
        for f in p.lat_fractions
        if kefu_max > 0
    ]
    sustainable = [r for r in max_rates.values() if r > 0]
    if sustainable:
        points.append({"label": "common rate", "rate": nice_floor(0.5 * min(sustainable))})
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rep, system in rotations(systems, p.reps):
        own_max = max_rates.get(system, 0.0)
        runnable = sorted({pt["rate"] for pt in points if 0 < pt["rate"] <= 0.9 * own_max})
        if not runnable:
            continue
        log(f"latency rep {rep + 1}/{p.reps}: {SYSTEMS[system]} at {runnable} msg/s")
        with server(system, secret, run_id, p.quiet_wait) as srv:
            phases = [
                {
                    "mode": "open",
                    "rate": r,
                    "warmup": p.lat_warmup,
                    "duration": p.lat_seconds,
                    "max_backlog": max(2000, int(r)),
                }
                for r in runnable
            ]
            cfg = {
                **base_cfg(srv, secret, run_id),
                "mode": "pairs",
                "pairs": p.pairs,
                "phases": phases,
                "stop_when_unsustained": True,
                "pause": 1.0,
            }
            events = run_loadgen(cfg, 60 + len(runnable) * (p.lat_warmup + p.lat_seconds + 6))
        for ph in (e for e in events if e["event"] == "phase"):
            ph["rep"] = rep
            ph["cpu_us_per_msg"] = cpu_us_per_msg(ph, ("server",))
            out[system].append(ph)
            log(
                f"  {ph['target_rate']:.0f}/s: p99 user->waiter {ph['lat_dlv'].get('p99')} ms, "
                f"sustained={ph['sustained']}"
            )
    return points, out


def connect(
    systems: list[str], p: Profile, secret: str, run_id: str
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rep, system in rotations(systems, p.connect_reps):
        log(f"connect+auth rep {rep + 1}/{p.connect_reps}: {SYSTEMS[system]}")
        with server(system, secret, run_id, p.quiet_wait) as srv:
            cfg = {
                **base_cfg(srv, secret, run_id),
                "mode": "connect",
                "sessions": p.connect_sessions,
                "concurrency": p.connect_concurrency,
                "read_buffer": 4096,
                "source_addrs": [f"127.0.0.{i}" for i in range(2, 6)],
                "timeout": 150,
            }
            events = run_loadgen(cfg, 330)
        for ph in (e for e in events if e["event"] == "phase"):
            ph["rep"] = rep
            out[system].append(ph)
            log(
                f"  {ph['pass']}: {ph['rate']:.0f}/s, {ph['errors']} errors, "
                f"gen CPU {ph['gen_cpu']:.0%}"
            )
    return out


def idle(
    systems: list[str], p: Profile, secret: str, run_id: str
) -> dict[str, list[dict[str, Any]]]:
    """RSS per idle authenticated socket: (RSS at N - RSS before any) / N, at rising N."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rep, system in rotations(systems, p.idle_reps):
        log(f"idle sockets rep {rep + 1}/{p.idle_reps}: {SYSTEMS[system]} at {list(p.idle_levels)}")
        with server(system, secret, run_id, p.quiet_wait) as srv:
            result = idle_run(srv, p, secret, run_id)
        result["rep"] = rep
        out[system].append(result)
        log(
            "  "
            + ", ".join(
                f"{lv['sockets']}: {lv['kib_per_conn']:.1f} KiB/conn" for lv in result["levels"]
            )
        )
    return out


def idle_run(srv: Server, p: Profile, secret: str, run_id: str) -> dict[str, Any]:
    pid = srv.pids["server"]
    gens = []
    for g in range(p.idle_procs):  # several processes, several source addresses: fds and ports
        cfg = {
            **base_cfg(srv, secret, run_id),
            "mode": "idle",
            "concurrency": 32,
            "read_buffer": 1024,
            "run_id": f"{run_id}{srv.system}g{g}{secrets.token_hex(2)}",
            "source_addrs": [f"127.0.0.{2 + g * 4 + i}" for i in range(4)],
            "max_seconds": 900,
        }
        proc = subprocess.Popen(
            loadgen_cmd(cfg), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        gens.append(proc)

    def read_event(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = (
                proc.stdout.readline()
            )  # the generator always answers or exits (its own deadline)
            if not line:
                raise RuntimeError("idle generator exited")
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError("idle generator timed out")

    levels = []
    errors = 0
    try:
        for proc in gens:
            read_event(proc, 30)
        time.sleep(1.0)
        base = rss_kib(pid)
        held = 0
        for level in p.idle_levels:
            add = level - held
            shares = [
                add // len(gens) + (1 if i < add % len(gens) else 0) for i in range(len(gens))
            ]
            t0 = time.monotonic()
            for proc, share in zip(gens, shares, strict=True):
                assert proc.stdin is not None
                proc.stdin.write(f"open {share}\n")
                proc.stdin.flush()
            alive = 0
            for proc in gens:
                ev = read_event(proc, 320)
                errors += ev["errors"]
                alive += ev["alive"]
            opened_s = time.monotonic() - t0
            held = level
            time.sleep(2.0)  # let the server settle (no new allocations in flight)
            rss = rss_kib(pid)
            levels.append(
                {
                    "sockets": level,
                    "alive": alive,
                    "rss_kib": rss,
                    "base_rss_kib": base,
                    "kib_per_conn": (rss - base) / level,
                    "open_s": round(opened_s, 2),
                }
            )
    finally:
        for proc in gens:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.write("close\n")
                proc.stdin.flush()
        for proc in gens:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    return {"levels": levels, "errors": errors}


# -- reporting ---------------------------------------------------------------------------------
def med(values: list[float]) -> tuple[float, float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def fmt(stat: tuple[float, float, float] | None, digits: int = 0, unit: str = "") -> str:
    if stat is None:
        return "-"
    m, lo, hi = stat
    if lo == hi:
        return f"{m:,.{digits}f}{unit}"
    return f"{m:,.{digits}f}{unit} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join(lines)


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """Medians per system and scenario, and the target ratios."""
    s: dict[str, Any] = {"saturation": {}, "latency": {}, "idle": {}, "connect": {}}
    for system, phases in res.get("saturation", {}).items():
        ok = [ph for ph in phases if not ph.get("failed")]
        s["saturation"][system] = {
            "rate": med([ph["rate_acked"] for ph in ok]),
            "cpu_us": med([ph["cpu_us_per_msg"] for ph in ok]),
            "cpu_us_redis": med([ph["cpu_us_per_msg_with_redis"] for ph in ok])
            if system == "c"
            else None,
            "server_cores": med([ph["server_cpu_s"]["server"] / ph["wall_s"] for ph in ok]),
            "gen_cpu": med([ph["gen_cpu"] for ph in ok]),
            "other_cpu": med([ph["other_cpu"] for ph in ok]),
            "p50": med([ph["lat_dlv"].get("p50") for ph in ok]),
            "p99": med([ph["lat_dlv"].get("p99") for ph in ok]),
            "errors": sum(ph["errors"] + ph["bad"] for ph in ok),
            "undrained": sum(ph["lost"] for ph in ok),
            "generator_bound": any(ph["gen_cpu"] > 0.85 for ph in ok),
            "reps": len(ok),
        }
    for system, phases in res.get("latency", {}).items():
        by_rate: dict[float, list[dict[str, Any]]] = defaultdict(list)
        for ph in phases:
            by_rate[ph["target_rate"]].append(ph)
        s["latency"][system] = {
            rkey(rate): {
                "achieved": med([ph["rate_acked"] for ph in phs]),
                **{
                    f"{d}_{q}": med([ph[f"lat_{d}"].get(q) for ph in phs])
                    for d in ("dlv", "ack")
                    for q in ("p50", "p99", "p999")
                },
                "lag_p99": med([ph["send_lag"].get("p99") for ph in phs]),
                "sustained": f"{sum(ph['sustained'] for ph in phs)}/{len(phs)}",
                "gen_cpu": med([ph["gen_cpu"] for ph in phs]),
                "other_cpu": med([ph["other_cpu"] for ph in phs]),
                "cores": med([ph["server_cpu_s"]["server"] / ph["wall_s"] for ph in phs]),
            }
            for rate, phs in sorted(by_rate.items())
        }
    for system, runs in res.get("idle", {}).items():
        levels: dict[int, list[float]] = defaultdict(list)
        for run in runs:
            for lv in run["levels"]:
                if lv["alive"] >= lv["sockets"] * 0.99:
                    levels[lv["sockets"]].append(lv["kib_per_conn"])
        s["idle"][system] = {str(n): med(v) for n, v in sorted(levels.items())}
    for system, phases in res.get("connect", {}).items():
        s["connect"][system] = {
            label: {
                "rate": med([ph["rate"] for ph in phases if ph["pass"] == label]),
                "p99": med([ph["lat"].get("p99") for ph in phases if ph["pass"] == label]),
                "errors": sum(ph["errors"] for ph in phases if ph["pass"] == label),
                "gen_cpu": med([ph["gen_cpu"] for ph in phases if ph["pass"] == label]),
            }
            for label in ("new", "returning")
        }
    s["targets"] = targets(s, res)
    return s


def targets(s: dict[str, Any], res: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, ok: bool | None, note: str = "") -> None:
        rows.append({"target": name, "value": value, "goal": goal, "met": ok, "note": note})

    sat = s["saturation"]
    a = sat.get("a", {}).get("rate")
    for other, key, label in (
        ("b", "throughput_vs_limit", "limit relay (b)"),
        ("c", "throughput_vs_channels", "Channels (c)"),
    ):
        o = sat.get(other, {}).get("rate")
        if a and o and o[0] > 0:
            ratio = a[0] / o[0]
            goal = TARGETS[key]
            notes = []
            if other == "b" and sat[other]["generator_bound"]:
                notes.append("(b) generator-bound: its true max is higher")
            cpu_a, cpu_o = sat["a"].get("cpu_us"), sat[other].get("cpu_us")
            if cpu_a and cpu_o:
                notes.append(f"by CPU per message: {cpu_o[0] / cpu_a[0]:.2f}x")
            note = "; ".join(notes)
            add(f"kefu acked msg/s vs {label}", ratio, f">= {goal:g}x", ratio >= goal, note)
    half = next(
        (pt["rate"] for pt in res.get("latency_points", []) if pt["label"].startswith("50%")), None
    )
    lat_a = s["latency"].get("a", {}).get(rkey(half)) if half else None
    if lat_a and lat_a["dlv_p99"]:
        p99 = lat_a["dlv_p99"][0]
        add(
            f"p99 user->waiter at 50% of kefu max ({half:,.0f}/s), ms",
            p99,
            f"< {TARGETS['p99_at_half_ms']:g} ms",
            p99 < TARGETS["p99_at_half_ms"],
        )
    idle_a = s["idle"].get("a", {})
    top = max((int(n) for n in idle_a), default=0)
    if top:
        kib = idle_a[str(top)][0]
        add(
            f"RSS per idle authenticated connection at {top:,}, KiB",
            kib,
            f"< {TARGETS['idle_kib_at_10k']:g} KiB",
            kib < TARGETS["idle_kib_at_10k"],
            "" if top >= 10000 else "measured below 10k (--quick)",
        )
    con = s["connect"].get("a", {})
    for label in ("new", "returning"):
        if con.get(label, {}).get("rate"):
            rate = con[label]["rate"][0]
            add(
                f"connect+auth per second ({label} accounts)",
                rate,
                f">= {TARGETS['connect_per_s']:,.0f}/s",
                rate >= TARGETS["connect_per_s"],
            )
    return rows


def report(res: dict[str, Any], s: dict[str, Any]) -> str:
    p = res["profile"]
    systems = [x for x in "abc" if x in res["systems"]]
    out = []
    out.append(
        f"Relay saturation: closed loop, {p['pairs']} user/waiter pairs, "
        f"{p['k']} frames in flight per "
        f"user, {p['sat_seconds']:g} s windows; median (min-max) of {p['reps']} runs"
    )
    rows = []
    for x in systems:
        r = s["saturation"].get(x)
        if not r or not r["rate"]:
            rows.append([SYSTEMS[x], "failed", "-", "-", "-", "-", "-", "-"])
            continue
        cpu = fmt(r["cpu_us"], 1)
        if x == "c" and r["cpu_us_redis"]:
            cpu += f"; with Redis {r['cpu_us_redis'][0]:.0f}"
        flags = []
        if r["generator_bound"]:
            flags.append("generator-bound")
        if r["errors"]:
            flags.append(f"{r['errors']} errors or out-of-order")
        if r["undrained"]:
            flags.append(f"{r['undrained']} still in flight after the drain")
        if r["other_cpu"] and r["other_cpu"][0] > 0.15:
            flags.append(f"other load {r['other_cpu'][0]:.2f} cores")
        rows.append(
            [
                SYSTEMS[x],
                fmt(r["rate"]),
                cpu,
                f"{1e6 / r['cpu_us'][0]:,.0f}" if r["cpu_us"] else "-",
                fmt(r["server_cores"], 2),
                fmt(r["gen_cpu"], 2),
                f"{r['p50'][0]:.1f} / {r['p99'][0]:.1f}" if r["p50"] else "-",
                ", ".join(flags),
            ]
        )
    out.append(
        table(
            [
                "system",
                "acked msg/s",
                "server CPU us/msg",
                "msg/s per core",
                "server cores",
                "generator cores",
                "user->waiter p50/p99 ms",
                "flags",
            ],
            rows,
        )
    )

    out.append("")
    out.append(
        f"Latency: open loop, sends at scheduled times, latency from the scheduled time (ms); "
        f"{p['lat_seconds']:g} s windows, median of runs"
    )
    rows = []
    for pt in res.get("latency_points", []):
        for x in systems:
            r = s["latency"].get(x, {}).get(rkey(pt["rate"]))
            if r is None:
                rows.append(
                    [
                        f"{pt['rate']:,.0f} ({pt['label']})",
                        SYSTEMS[x],
                        "not run: above its max",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                    ]
                )
                continue
            dl = "/".join(
                f"{r[f'dlv_{q}'][0]:.2f}" if r[f"dlv_{q}"] else "-" for q in ("p50", "p99", "p999")
            )
            ak = "/".join(
                f"{r[f'ack_{q}'][0]:.2f}" if r[f"ack_{q}"] else "-" for q in ("p50", "p99", "p999")
            )
            rows.append(
                [
                    f"{pt['rate']:,.0f} ({pt['label']})",
                    SYSTEMS[x],
                    fmt(r["achieved"]),
                    dl,
                    ak,
                    r["sustained"],
                    fmt(r["cores"], 2),
                    f"{r['lag_p99'][0]:.2f}" if r["lag_p99"] else "-",
                    fmt(r["other_cpu"], 2),
                ]
            )
    out.append(
        table(
            [
                "rate msg/s",
                "system",
                "achieved",
                "user->waiter p50/p99/p99.9",
                "user->ack p50/p99/p99.9",
                "sustained",
                "server cores",
                "send lag p99",
                "other load",
            ],
            rows,
        )
    )

    out.append("")
    levels = sorted({int(n) for x in systems for n in s["idle"].get(x, {})})
    out.append(
        "Idle authenticated sockets: server RSS growth per socket, KiB ((RSS(N) - RSS(0)) / N)"
    )
    rows = [
        [SYSTEMS[x], *(fmt(s["idle"].get(x, {}).get(str(n)), 1) for n in levels)] for x in systems
    ]
    out.append(table(["system", *(f"{n:,} sockets" for n in levels)], rows))

    out.append("")
    out.append(
        f"Connect + auth: {p['connect_sessions']:,} sessions, "
        f"{p['connect_concurrency']} at a time, "
        "each opened, authenticated, closed; first use of the accounts, then again"
    )
    rows = []
    for x in systems:
        c = s["connect"].get(x, {})
        rows.append(
            [
                SYSTEMS[x],
                *(fmt(c.get(lb, {}).get("rate")) for lb in ("new", "returning")),
                *(fmt(c.get(lb, {}).get("p99"), 1) for lb in ("new", "returning")),
                str(sum(c.get(lb, {}).get("errors", 0) for lb in ("new", "returning"))),
                fmt(c.get("new", {}).get("gen_cpu"), 2),
            ]
        )
    out.append(
        table(
            [
                "system",
                "new /s",
                "returning /s",
                "new p99 ms",
                "returning p99 ms",
                "errors",
                "generator cores",
            ],
            rows,
        )
    )

    out.append("")
    out.append("Targets (kefu)")
    rows = [
        [
            t["target"],
            f"{t['value']:,.2f}" if t["value"] is not None else "-",
            t["goal"],
            {True: "met", False: "MISSED", None: "-"}[t["met"]],
            t["note"],
        ]
        for t in s["targets"]
    ]
    out.append(table(["target", "value", "goal", "", "note"], rows))
    return "\n".join(out)


# -- machine and versions ---------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()

    def versions(python: Path, names: list[str]) -> dict[str, str]:
        code = (
            "import importlib.metadata as m, json, sys\nout = {}\nfor n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n    except Exception: pass\nprint(json.dumps(out))"
        )
        try:
            return json.loads(
                subprocess.run(
                    [str(python), "-c", code, *names], capture_output=True, text=True, timeout=30
                ).stdout
            )
        except Exception:
            return {}

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True
        ).stdout.strip()
    )
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ulimit_n": subprocess.run(
            ["sh", "-c", "ulimit -n"], capture_output=True, text=True
        ).stdout.strip(),
        "kefu_commit": commit + ("+dirty" if dirty else ""),
        "kefu_stack": versions(
            ROOT / ".venv" / "bin" / "python",
            ["kefu", "uvicorn", "websockets", "starlette", "uvloop", "httptools", "msgspec"],
        ),
        "bench_stack": versions(
            BPY,
            [
                "picows",
                "aiofastnet",
                "uvloop",
                "django",
                "channels",
                "channels-redis",
                "daphne",
                "twisted",
                "autobahn",
                "redis",
            ],
        ),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['cpu']}, {m['nproc']} CPUs, {m['memory']} RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, "
        f"kefu {m['kefu_commit']}; kefu: "
        + ", ".join(f"{k} {v}" for k, v in m["kefu_stack"].items())
        + "; bench: "
        + ", ".join(f"{k} {v}" for k, v in m["bench_stack"].items())
    )


def write_docs(text: str, m: dict[str, Any], json_path: Path, command: str, started: str) -> None:
    doc = ROOT / "docs" / "performance.md"
    body = f"""# Performance

The benchmark in `bench/` (see `bench/README.md`) measures kefu against (b) the
Python wire limit, a picows + uvloop relay with the same topology and no JSON
or database, and (c) what a team would otherwise build, Django Channels on
daphne with channels_redis groups and one ORM save per message. This page
keeps the latest full run; `make bench` refreshes it (and keeps the sections
below it, which other benchmarks write).

Reproduce: `{command}` (the full run takes 12-15 minutes, `--quick` 2-4).

Ran {started.replace("T", " ").replace("Z", " UTC")} on: {machine_line(m)}.
Server pinned to CPU 0, load generator to CPU 1. Raw results: `{json_path.relative_to(ROOT)}`
(not kept in git).

```
{text}
```

How to read it: "server CPU us/msg" is the server process's CPU time (all
threads, from /proc) over the window divided by the messages acked in it;
for (c) "with Redis" adds the Redis server's CPU. "generator-bound"
means the load generator used more than 85% of its core, so the system's
true maximum is higher than shown. "other load" is CPU used on the machine
by neither the server nor the generator during the window (a shared box):
such rows are noisier. Latency "from the scheduled time" includes any delay
in sending (no coordinated omission); "send lag" is that delay alone.
"""
    # sections written by other benchmarks (## Restart storm, from restart_storm.py) stay
    old = doc.read_text() if doc.exists() else ""
    kept = old.find("\n## ")
    doc.write_text(body + (old[kept:] if kept >= 0 else ""))
    log(f"wrote {doc}")


# -- profiling ----------------------------------------------------------------------------------
# Frames that mean "this thread is waiting, not running": py-spy --native cannot
# always tell an idle thread, so samples with one of these are dropped.
IDLE_MARKERS = (
    "PyThread_acquire_lock_timed",
    "epoll_wait",
    "epoll_pwait",
    "sem_clockwait",
    "sem_timedwait",
    "pthread_cond_",
    "select (",
    "poll (",
    "__futex",
    "futex_wait",
)
SYSCALLS = (
    "write",
    "writev",
    "read",
    "readv",
    "send",
    "sendto",
    "sendmsg",
    "recv",
    "recvfrom",
    "recvmsg",
    "pwrite64",
    "pread64",
    "fdatasync",
    "fsync",
    "getpid",
    "epoll_ctl",
    "close",
    "accept4",
    "openat",
    "fcntl",
    "lseek",
    "ioctl",
    "clock_gettime",
    "gettimeofday",
)
CATEGORIES = [  # (label, patterns matched against "function (file)"), innermost match wins
    ("SQLAlchemy Core (account and history queries)", ("sqlalchemy/",)),
    ("sqlite (C library + kefu store backend)", ("sqlite",)),
    ("kefu store (writer batching, thread handoff, queries)", ("kefu/store",)),
    ("JSON encode/decode (msgspec)", ("msgspec",)),
    ("kefu frames out (encode, rfc3339 dates)", ("kefu/protocol",)),
    ("WebSocket framing + ASGI (uvicorn, websockets)", ("uvicorn/", "websockets/", "httptools")),
    ("Starlette WebSocket wrappers", ("starlette/",)),
    ("kefu gateway / runtime / connections", ("kefu/server",)),
    ("kefu core (switchboard), ids, tokens", ("kefu/core", "kefu/ids", "kefu/tokens")),
    ("asyncio Queue/Event/Task hops", ("asyncio/", "_asynciomodule")),
    ("event loop (uvloop, C)", ("loop.c", "uvloop", "libuv", "core.c", "uv__")),
    ("threads / concurrent.futures", ("threading.py", "/queue.py", "concurrent/", "_queuemodule")),
]


def _name(frame: str) -> str:
    return frame.split(" (", 1)[0]


def layer(frames: list[str]) -> str:
    """The layer of a sample: a syscall or GC by its leaf, else its innermost known frame."""
    leaf = _name(frames[-1])
    if leaf in SYSCALLS or leaf.startswith("__libc_") or leaf.lstrip("_") in SYSCALLS:
        return f"syscall: {leaf.lstrip('_')}"
    if "gc_collect" in frames[-1] or any("gc_collect" in f for f in frames[-4:]):
        return "Python GC"
    for f in reversed(frames):
        if f.startswith("Runner.run (asyncio/runners.py"):  # Python-only stacks: in uvloop's C loop
            return "event loop (uvloop, C)"
        low = f.lower()
        for label, pats in CATEGORIES:
            if any(p in low for p in pats):
                return label
    return "other (interpreter, libc)"


def flat_profile(raw: Path, cpu: dict[str, float] | None = None, top: int = 25) -> str:
    """A text summary of py-spy's collapsed stacks: CPU by layer, thread and function.

    Samples are wall-clock snapshots of running threads, so a thread blocked in
    disk I/O still counts. With `cpu` (thread name -> CPU seconds, from /proc),
    each thread's layer shares are also weighted by the CPU it really used.
    """
    selfs: dict[str, int] = defaultdict(int)
    incl: dict[str, int] = defaultdict(int)
    cats: dict[str, int] = defaultdict(int)
    threads: dict[str, int] = defaultdict(int)
    by_thread: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    total = idle_n = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = ""
        while frames and frames[0].startswith(("thread ", "process ")):
            if frames[0].startswith("thread "):
                thread = re.sub(r"\(\d+\)", "", frames[0]).replace("thread ", "").strip(": ")
            frames = frames[1:]
        if not frames:
            continue
        if any(m in f for f in frames for m in IDLE_MARKERS):
            idle_n += n
            continue
        total += n
        thread = re.sub(r"_\d+$", "_N", thread) or "?"
        threads[thread] += n
        selfs[frames[-1]] += n
        cats[layer(frames)] += n
        by_thread[thread][layer(frames)] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return "no samples"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    lines = [
        f"{total} busy samples ({idle_n} idle samples dropped: threads waiting on a lock, "
        "queue or epoll)",
        "",
    ]
    if cpu:
        known = {t: c for t, c in cpu.items() if t in by_thread and c > 0}
        wsum = sum(known.values()) or 1.0
        shares: dict[str, float] = defaultdict(float)
        for t, c in known.items():
            tn = sum(by_thread[t].values())
            for label, n in by_thread[t].items():
                shares[label] += c / wsum * n / tn
        lines += ["Share of server CPU by layer (each thread's samples weighted by its /proc CPU):"]
        lines += [
            f"  {100 * v:5.1f}%  {label}"
            for label, v in sorted(shares.items(), key=lambda kv: -kv[1])
        ]
        lines += [""]
    lines += ["Samples by layer (a sample goes to its leaf syscall, GC, or innermost known frame):"]
    lines += [f"  {pct(n)}  {label}" for label, n in sorted(cats.items(), key=lambda kv: -kv[1])]
    lines += ["", "CPU by thread:"] + [
        f"  {pct(n)}  {t}" for t, n in sorted(threads.items(), key=lambda kv: -kv[1])
    ]
    lines += ["", f"Top {top} functions by self time:"]
    lines += [f"  {pct(n)}  {f}" for f, n in sorted(selfs.items(), key=lambda kv: -kv[1])[:top]]
    lines += [
        "",
        f"Top {top} functions by inclusive time (kefu, uvicorn, websockets, starlette, asyncio):",
    ]
    keep = ("kefu/", "uvicorn/", "websockets/", "starlette/", "asyncio/", "msgspec", "sqlite")
    ranked = [
        (f, n)
        for f, n in sorted(incl.items(), key=lambda kv: -kv[1])
        if any(k in f for k in keep)
        and not f.startswith(("serve (kefu/cli", "run (kefu/server/serve"))
    ]
    lines += [f"  {pct(n)}  {f}" for f, n in ranked[:top]]
    return "\n".join(lines)


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds so far of each thread of a process, by thread id, from /proc."""
    out: dict[int, tuple[float, float]] = {}
    tck = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (int(fields[11]) / tck, int(fields[12]) / tck)
    return out


def thread_names(raw: Path) -> dict[int, str]:
    """Thread id -> Python thread name, from py-spy's --threads frames."""
    names: dict[int, str] = {}
    for m in re.finditer(r"thread \((?:0x)?([0-9a-fA-F]+)\): ([^;]+)", raw.read_text()):
        with contextlib.suppress(ValueError):
            names[int(m.group(1), 16 if m.group(0).startswith("thread (0x") else 10)] = m.group(
                2
            ).strip()
    return names


def pyspy_record(pid: int, seconds: float, out: Path, native: bool, fmt: str) -> None:
    """py-spy record, on the generator's CPU. Native stacks need the process paused per sample."""
    pyspy = BENCH / ".venv" / "bin" / "py-spy"
    cmd = ["taskset", "-c", GEN_CPU, str(pyspy), "record", "--pid", str(pid), "--rate", "100"]
    cmd += ["--duration", str(int(seconds)), "--threads", "--format", fmt, "-o", str(out)]
    cmd += ["--native"] if native else ["--nonblocking"]
    subprocess.run(cmd, check=fmt == "raw", timeout=seconds + 60, capture_output=True)


def profile_cfg(
    p: Profile, srv: Server, secret: str, run_id: str, scenario: str, seconds: float, rate: float
) -> dict[str, Any]:
    """The generator's config for a profile: `seconds` of load after its warm-up, and some over."""
    cfg: dict[str, Any] = {**base_cfg(srv, secret, run_id), "max_seconds": seconds + 90}
    if scenario == "connect":
        return cfg | {
            "mode": "connect",
            "sessions": int(seconds * 2000),
            "concurrency": 64,
            "read_buffer": 4096,
            "passes": ["new"],
            "timeout": seconds + 60,
            "source_addrs": [f"127.0.0.{i}" for i in range(2, 10)],
        }
    if scenario == "latency":
        phase = {"mode": "open", "rate": rate, "warmup": 3, "duration": seconds + 12}
    else:
        phase = {"mode": "closed", "k": p.k, "warmup": 3, "duration": seconds + 12}
    return cfg | {"mode": "pairs", "pairs": p.pairs, "phases": [phase]}


@contextlib.contextmanager
def under_load(
    p: Profile,
    scenario: str,
    seconds: float,
    rate: float,
    gc_probe: bool = False,
    system: str = "a",
) -> Iterator[tuple[Server, Callable[[], list[str]]]]:
    """`system` ("a", kefu, or "b", the relay) under the profile's load (see `profile_cfg`).

    Yields the server and a function that waits for the generator to end and
    returns its output lines.
    """
    secret = secrets.token_hex(32)
    run_id = secrets.token_hex(3)
    RESULTS.mkdir(exist_ok=True)
    with server(system, secret, run_id, p.quiet_wait, gc_probe=gc_probe) as srv:
        cfg = profile_cfg(p, srv, secret, run_id, scenario, seconds, rate)
        gen = subprocess.Popen(loadgen_cmd(cfg), stdout=subprocess.PIPE, text=True)

        def finish() -> list[str]:
            try:
                out, _ = gen.communicate(timeout=seconds + 90)
            except subprocess.TimeoutExpired:
                gen.kill()
                out, _ = gen.communicate()
            return out.splitlines()

        try:
            time.sleep(6 if scenario == "saturation" else 3)  # accounts, pairs, warm-up
            yield srv, finish
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()


def perf_profile(p: Profile, scenario: str, seconds: float, rate: float, system: str) -> None:
    """Load `system` as `profile` does and sample it with Linux perf (`perf_split`)."""
    name = SYSTEMS[system].split()[0]  # kefu, limit
    data = RESULTS / f"{name}-perf-{time.strftime('%Y%m%d-%H%M%S')}-{scenario}.data"
    with under_load(p, scenario, seconds, rate, system=system) as (srv, finish):
        pid = srv.pids["server"]
        log(f"perf recording {seconds:g} s of {SYSTEMS[system]} ({scenario})")
        t0, cpu0 = time.monotonic(), thread_cpu(pid)
        perf_split.record(pid, seconds, data, GEN_CPU)
        wall, cpu1 = time.monotonic() - t0, thread_cpu(pid)
        lines = finish()
    phases = [json.loads(x) for x in lines if x.startswith('{"event": "phase"')]
    rate_done = float(phases[0].get("rate_acked", phases[0].get("rate", 0))) if phases else 0.0
    cores = sum(u + k - sum(cpu0.get(t, (0.0, 0.0))) for t, (u, k) in cpu1.items()) / wall
    per_unit = cores / rate_done * 1e6 if rate_done else None
    unit = "connect+auth" if scenario == "connect" else "acked message"
    head = f"{SYSTEMS[system]} (kefu {machine()['kefu_commit']}), {scenario}: {cores:.2f} cores"
    if per_unit:
        head += f" over the recording, {rate_done:.0f} {unit}s/s, {per_unit:.1f} CPU us each"
    text = (
        head
        + "\n"
        + perf_split.report(data, pid, per_unit, "session" if scenario == "connect" else "msg")
    )
    print(text)
    log(f"perf data: {data} (perf report -i {data})")


def profile(p: Profile, scenario: str, seconds: float, native: bool, rate: float) -> None:
    """Load kefu (saturation: closed loop; connect: a connect+auth storm), record it with py-spy."""
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{scenario}"
    raw = RESULTS / f"kefu-profile-{stamp}.txt"
    svg = RESULTS / f"kefu-profile-{stamp}.svg"
    with under_load(p, scenario, seconds, rate, gc_probe=True) as (srv, finish):
        pid = srv.pids["server"]
        log(f"py-spy recording {seconds:g} s of kefu ({scenario}{', native' if native else ''})")
        t0, cpu0 = time.monotonic(), thread_cpu(pid)
        pyspy_record(pid, seconds, raw, native, "raw")
        wall, cpu1 = time.monotonic() - t0, thread_cpu(pid)
        pyspy_record(pid, min(seconds, 5), svg, False, "flamegraph")
        lines = finish()
        pauses = [
            float(x.split()[2])
            for x in (srv.workdir / "server.log").read_text().splitlines()
            if x.startswith("GC-PAUSE")
        ]
    head = [f"kefu {machine()['kefu_commit']}, {scenario}, py-spy {'--native' if native else ''}"]
    for ph in (json.loads(x) for x in lines if x.startswith('{"event": "phase"')):
        achieved = ph.get("rate_acked", ph.get("rate", 0))
        done = ph.get("acked", ph.get("ok", 0))
        head.append(
            f"load: {achieved:.0f}/s "
            f"({'connect+auth' if scenario == 'connect' else 'acked msgs'}), "
            + (f"p99 user->waiter {ph['lat_dlv'].get('p99')} ms, " if "lat_dlv" in ph else "")
            + f"{ph['server_cpu_s']['server'] / max(1, done) * 1e6:.0f} server CPU us each "
            f"(whole window, profiler included), other load on the box {ph['other_cpu']:.2f} cores"
        )
    head.append(
        f"GC pauses over 5 ms during the whole run: {len(pauses)}"
        + (f", longest {max(pauses):.0f} ms, total {sum(pauses):.0f} ms" if pauses else "")
    )
    names = thread_names(raw)
    split: dict[str, float] = defaultdict(float)
    system: dict[str, float] = defaultdict(float)
    for tid, (user, sys_) in cpu1.items():
        name = re.sub(r"_\d+$", "_N", names.get(tid, "other threads"))
        u0, s0 = cpu0.get(tid, (0.0, 0.0))
        split[name] += user - u0 + sys_ - s0
        system[name] += sys_ - s0
    total = sum(split.values()) or 1.0
    head.append(
        f"server CPU by thread over the {wall:.0f} s recording (from /proc; in the kernel, i.e. "
        "syscalls + loopback TCP, in brackets): "
        + ", ".join(
            f"{k} {v / wall:.2f} cores = {100 * v / total:.0f}%"
            f" [kernel {100 * system[k] / total:.0f}%]"
            for k, v in sorted(split.items(), key=lambda kv: -kv[1])
            if v > 0
        )
    )
    text = "\n".join(head) + "\n\n" + flat_profile(raw, dict(split))
    print(text)
    flat = RESULTS / f"kefu-profile-{stamp}-flat.txt"
    flat.write_text(text + "\n")
    log(f"raw stacks: {raw}; flame graph: {svg}; flat profile: {flat}")


# -- main -----------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description="kefu benchmark (see bench/README.md)")
    ap.add_argument(
        "--quick", action="store_true", help="a ~2 minute smoke run (1 repetition, short windows)"
    )
    ap.add_argument("--systems", default="abc", help="subset of a (kefu), b (limit), c (Channels)")
    ap.add_argument("--scenarios", default="saturation,latency,idle,connect")
    ap.add_argument("--reps", type=int, help="override the number of repetitions")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run servers and generators at this niceness (e.g. -10 on a shared box; needs root)",
    )
    ap.add_argument(
        "--no-docs", action="store_true", help="do not rewrite docs/performance.md (full runs do)"
    )
    ap.add_argument(
        "--webhook",
        action="store_true",
        help="kefu gets a webhook for message.created to a local sink (webhook_sink.py)",
    )
    ap.add_argument(
        "--profile",
        nargs="?",
        const="saturation",
        choices=["saturation", "latency", "connect"],
        help="only profile kefu with py-spy: saturated (default), at a fixed --profile-rate "
        "(open loop), or in a connect+auth storm",
    )
    ap.add_argument("--profile-rate", type=float, default=7500, help="msg/s for --profile latency")
    ap.add_argument("--profile-seconds", type=float, default=20)
    ap.add_argument("--python-only", action="store_true", help="profile without py-spy --native")
    ap.add_argument(
        "--perf",
        action="store_true",
        help="profile with Linux perf instead: CPU by library and kernel time by syscall; "
        "with --systems b, the limit relay instead of kefu (same load, for comparison)",
    )
    args = ap.parse_args()

    p = QUICK if args.quick else FULL
    NICE[0] = args.nice
    WEBHOOK[0] = args.webhook
    if args.reps:
        p.reps = p.idle_reps = p.connect_reps = args.reps
    if args.profile:
        if args.systems not in ("abc", "a", "b") or (args.systems == "b" and not args.perf):
            ap.error("--profile records kefu (--systems a), or the relay with --perf --systems b")
        if args.perf:
            system = "b" if args.systems == "b" else "a"
            perf_profile(p, args.profile, args.profile_seconds, args.profile_rate, system)
        else:
            profile(p, args.profile, args.profile_seconds, not args.python_only, args.profile_rate)
        return
    systems = [x for x in "abc" if x in args.systems]
    scenarios = args.scenarios.split(",")
    secret = secrets.token_hex(32)
    run_id = secrets.token_hex(3)
    RESULTS.mkdir(exist_ok=True)
    started = time.time()
    m = machine()
    log(f"machine: {machine_line(m)}")
    if float(m["loadavg_at_start"][0]) > 0.5:
        log(
            f"warning: load average {m['loadavg_at_start'][0]} at start: "
            "other work on this box skews results"
        )
    res: dict[str, Any] = {
        "nice": args.nice,
        "machine": m,
        "profile": p.__dict__,
        "systems": systems,
        "kefu_env": KEFU_ENV,
        "webhook": args.webhook,
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

    if "saturation" in scenarios or "latency" in scenarios:
        res["saturation"] = saturation(systems, p, secret, run_id)
    if "latency" in scenarios:
        maxes = {
            x: (med([ph["rate_acked"] for ph in phs if not ph.get("failed")]) or (0, 0, 0))[0]
            for x, phs in res["saturation"].items()
        }
        points, lat = latency(systems, p, secret, run_id, maxes, maxes.get("a", 0.0))
        res["latency_points"], res["latency"] = points, lat
    if "connect" in scenarios:
        res["connect"] = connect(systems, p, secret, run_id)
    if "idle" in scenarios:
        res["idle"] = idle(systems, p, secret, run_id)

    res["elapsed_s"] = round(time.time() - started, 1)
    path = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(res, indent=1, default=str))  # raw results first, whatever follows
    s = summarize(res)
    res["summary"] = s
    text = report(res, s)
    path.write_text(json.dumps(res, indent=1, default=str))
    print()
    print(f"kefu benchmark, {res['started']}, {res['elapsed_s']:.0f} s; {machine_line(m)}")
    print()
    print(text)
    print(f"\nraw results: {path}")
    full = not args.quick and systems == list("abc") and len(scenarios) == 4 and not args.webhook
    if full and not args.no_docs:
        extra = " ".join(sys.argv[1:])
        command = "make bench" + (f' BENCH_ARGS="{extra}"' if extra else "")
        write_docs(text, m, path, command, res["started"])


if __name__ == "__main__":
    main()
