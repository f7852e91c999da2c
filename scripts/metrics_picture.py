"""Draw docs/screenshots/metrics.png: the Grafana dashboard's panels, from a real kefu under load.

There is no Grafana here, so this script plays its part: it starts `kefu serve`
(from the main `.venv`) on a free port with a throw-away database, puts a
scripted day-in-a-minute on it (waiters come and go, customers queue, chat and
leave, a burst of messages, a few bad tokens and sign-ins), scrapes `/metrics`
every second, evaluates each panel's query the way Prometheus would (rates
over a short window, `histogram_quantile` with its linear interpolation) and
draws the panels of deploy/grafana-dashboard.json with matplotlib.

    python3 -m venv scripts/.venv
    scripts/.venv/bin/pip install -r scripts/metrics-requirements.txt
    scripts/.venv/bin/python scripts/metrics_picture.py [--out docs/screenshots/metrics.png]

matplotlib is this script's own requirement, not kefu's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[1]
KEFU = REPO / ".venv" / "bin" / "kefu"
DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"
RATE_WINDOW = 5.0  # seconds (the dashboard: 1 min; this run is a day squeezed into ~2 minutes)
SLOW_WINDOW = 20.0  # the queue wait (the dashboard: 5 min)

Sample = dict[tuple[str, frozenset[tuple[str, str]]], float]


# -- the server ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    port: int
    secret: str
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, side: str) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws/connect/{side}"


def start_server(workdir: Path) -> Server:
    port, secret = free_port(), secrets.token_urlsafe(48)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env.update(
        KEFU_DATABASE_URL=f"sqlite:///{workdir / 'kefu.db'}",
        KEFU_SECRET=secret,
        KEFU_MAX_USERS_PER_WAITER="3",
        KEFU_RATE_LIMIT="1000",
        KEFU_RATE_BURST="1000",
        KEFU_LOG_LEVEL="error",
    )
    log = (workdir / "kefu.log").open("wb")
    proc = subprocess.Popen(
        [str(KEFU), "serve", "--port", str(port)], env=env, cwd=workdir, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return Server(port, secret, proc)
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"kefu did not start: {(workdir / 'kefu.log').read_text()[-2000:]}")
        time.sleep(0.1)


def scrape(url: str) -> Sample:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: Sample = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


# -- the load -------------------------------------------------------------------------------------
def token(srv: Server, role: str, name: str) -> str:
    claims: dict[str, Any] = {"sub": f"demo-{name}", "role": role, "username": name}
    claims["nickname"] = name
    claims["exp"] = int(time.time() + 3600)
    return jwt.encode(claims, srv.secret, algorithm="HS256")


@dataclass
class Clock:
    end: float  # seconds of the run
    t0: float = field(default_factory=time.monotonic)
    fast: bool = False  # the message burst

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def at(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))


async def reader(ws: ClientConnection, on_frame: Callable[[dict[str, Any]], None]) -> None:
    try:
        async for raw in ws:
            on_frame(json.loads(raw))
    except Exception:  # the socket closed: the scenario goes on
        pass


async def waiter(
    srv: Server, clock: Clock, name: str, start: float, plan: list[tuple[float, str]]
) -> None:
    """A waiter: online at `start`, ready; answers each message now and then; `plan`: (t, frame)."""
    await clock.at(start)
    async with connect(srv.ws("waiter"), max_size=None) as ws:
        users: set[str] = set()

        def on_frame(frame: dict[str, Any]) -> None:
            if frame["type"] == "new_connection":
                users.add(frame["from"])
            elif frame["type"] == "disconnected":
                users.discard(frame.get("from") or "")

        task = asyncio.ensure_future(reader(ws, on_frame))
        await ws.send(
            json.dumps({"type": "auth", "payload": {"token": token(srv, "waiter", name)}})
        )
        await ws.send(json.dumps({"type": "ready"}))
        steps = list(plan)
        while clock.now() < clock.end - 1:
            while steps and clock.now() >= steps[0][0]:
                await ws.send(json.dumps({"type": steps.pop(0)[1]}))
            for user in list(users):
                if random.random() < (0.5 if clock.fast else 0.15):
                    text = {"text": "How can I help?"}
                    await ws.send(json.dumps({"type": "message_text", "to": user, "payload": text}))
            await asyncio.sleep(0.02 if clock.fast else 0.5)
        task.cancel()


async def customer(srv: Server, clock: Clock, name: str, start: float, stay: float) -> None:
    """A customer: arrives at `start`, queues, chats for `stay` seconds once served, leaves."""
    await clock.at(start)
    async with connect(srv.ws("user"), max_size=None) as ws:
        served = asyncio.Event()

        def on_frame(frame: dict[str, Any]) -> None:
            if frame["type"] == "connect_success":
                served.set()

        task = asyncio.ensure_future(reader(ws, on_frame))
        await ws.send(json.dumps({"type": "auth", "payload": {"token": token(srv, "user", name)}}))
        await ws.send(json.dumps({"type": "connect"}))
        try:
            await asyncio.wait_for(served.wait(), max(0.1, clock.end - 1 - clock.now()))
        except TimeoutError:  # still queued when the run ends
            task.cancel()
            return
        until = min(clock.now() + stay, clock.end - 1)
        n = 0
        while clock.now() < until:
            n += 1
            frame = {"type": "message_text", "op_id": f"{name}-{n}", "payload": {"text": "hello"}}
            await ws.send(json.dumps(frame))
            if random.random() < 0.01:
                await ws.send(json.dumps({"type": "message_text", "payload": {}}))  # invalid
            await asyncio.sleep(0.004 if clock.fast else random.uniform(0.4, 1.2))
        await ws.send(json.dumps({"type": "disconnect"}))
        await asyncio.sleep(0.2)
        task.cancel()


async def trouble(srv: Server, clock: Clock) -> None:
    """Bad tokens and failed sign-ins, in a few bursts."""
    for t in (35.0, 36.0, 80.0):
        if t > clock.end - 5:
            return
        await clock.at(t)
        for _ in range(4):
            async with connect(srv.ws("user")) as ws:
                await ws.send(json.dumps({"type": "auth", "payload": {"token": "not-a-token"}}))
                await ws.recv()
        body = json.dumps({"username": "nobody", "password": "guess"}).encode()
        for _ in range(3):
            req = urllib.request.Request(
                f"{srv.url}/v1/auth/login", body, {"Content-Type": "application/json"}
            )
            with contextlib.suppress(OSError):  # 401
                await asyncio.to_thread(urllib.request.urlopen, req, timeout=5)


async def burst(clock: Clock, start: float, end: float) -> None:
    await clock.at(start)
    clock.fast = True
    await clock.at(end)
    clock.fast = False


async def play(srv: Server, seconds: float) -> list[tuple[float, Sample]]:
    random.seed(7)
    clock = Clock(end=seconds)
    scrapes: list[tuple[float, Sample]] = []

    async def scraper() -> None:
        while clock.now() < seconds:
            scrapes.append((clock.now(), await asyncio.to_thread(scrape, srv.url)))
            await asyncio.sleep(max(0.0, math.ceil(clock.now()) - clock.now()))

    tasks = [
        scraper(),
        waiter(srv, clock, "alice", 2, []),
        waiter(srv, clock, "bob", 3, [(70.0, "unready"), (88.0, "ready")]),
        waiter(srv, clock, "carol", 30, []),
        trouble(srv, clock),
        burst(clock, 48, 58),
    ]
    t = 4.0
    i = 0
    while t < seconds * 0.8:
        i += 1
        tasks.append(customer(srv, clock, f"c{i}", t, random.uniform(6, 16)))
        # a rush while two waiters are on, a calm once the third comes, a second wave at the end
        t += random.expovariate(1 / (0.7 if t < 25 else 3.0 if t < 65 else 1.4))
    running = [asyncio.ensure_future(t) for t in tasks]
    _, late = await asyncio.wait(running, timeout=seconds + 30)
    for task in late:  # a client stuck on a socket must not keep the picture from being drawn
        task.print_stack(limit=3)
        task.cancel()
    return scrapes


# -- PromQL, the parts the panels use ---------------------------------------------------------
def matching(s: Sample, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    out = {}
    for (n, ls), v in s.items():
        if n == name and all((k, v2) in ls for k, v2 in labels.items()):
            out[ls] = v
    return out


def at_window(scrapes: list[tuple[float, Sample]], i: int, window: float) -> int:
    t = scrapes[i][0]
    j = i
    while j > 0 and t - scrapes[j - 1][0] <= window + 0.01:
        j -= 1
    return j


def rate(
    scrapes: list[tuple[float, Sample]],
    name: str,
    window: float,
    by: str | None = None,
    **labels: str,
) -> list[dict[str, float]]:
    """`sum by (by) (rate(name{labels}[window]))` at every scrape."""
    out: list[dict[str, float]] = []
    for i, (t, s) in enumerate(scrapes):
        j = at_window(scrapes, i, window)
        if j == i:
            out.append({})
            continue
        dt = t - scrapes[j][0]
        sums: dict[str, float] = {}
        old = matching(scrapes[j][1], name, **labels)
        for ls, v in matching(s, name, **labels).items():
            key = dict(ls).get(by, "") if by else ""
            sums[key] = sums.get(key, 0.0) + max(0.0, v - old.get(ls, 0.0)) / dt
        out.append(sums)
    return out


def quantile(
    scrapes: list[tuple[float, Sample]], name: str, q: float, window: float
) -> list[float]:
    """`histogram_quantile(q, sum by (le) (rate(name_bucket[window])))` at every scrape."""
    out: list[float] = []
    for i, (_, s) in enumerate(scrapes):
        j = at_window(scrapes, i, window)
        old = matching(scrapes[j][1], name + "_bucket")
        buckets = sorted(
            (float(dict(ls)["le"]), v - old.get(ls, 0.0))
            for ls, v in matching(s, name + "_bucket").items()
        )
        out.append(_histogram_quantile(q, buckets))
    return out


def _histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' algorithm: the bucket holding rank q*count, linear inside it."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def ratio(num: list[dict[str, float]], den: list[dict[str, float]]) -> list[float]:
    return [
        n.get("", math.nan) / d[""] if d.get("") else math.nan
        for n, d in zip(num, den, strict=True)
    ]


def gauge(
    scrapes: list[tuple[float, Sample]], name: str, by: str | None = None, **labels: str
) -> list[dict[str, float]]:
    out = []
    for _, s in scrapes:
        sums: dict[str, float] = {}
        for ls, v in matching(s, name, **labels).items():
            key = " ".join(dict(ls)[k] for k in by.split(",")) if by else ""
            sums[key] = sums.get(key, 0.0) + v
        out.append(sums)
    return out


# -- the picture ---------------------------------------------------------------------------------
Series = dict[str, list[float]]


def series(points: list[dict[str, float]], label: Callable[[str], str] = lambda k: k) -> Series:
    keys = sorted({k for p in points for k in p})
    return {label(k): [p.get(k, math.nan if not p else 0.0) for p in points] for k in keys}


def panels(scrapes: list[tuple[float, Sample]]) -> list[tuple[str, str, Series]]:
    """(dashboard title, unit, series) per drawn panel: the dashboard's queries, evaluated."""
    w, slow = RATE_WINDOW, SLOW_WINDOW
    stored = series(
        rate(scrapes, "kefu_messages_total", w, "type", result="stored"), lambda k: f"{k} stored"
    )
    for result in ("duplicate", "conflict", "failed"):
        extra = {
            result: [
                sum(p.values()) if p else math.nan
                for p in rate(scrapes, "kefu_messages_total", w, result=result)
            ]
        }
        stored.update(
            {k: v for k, v in extra.items() if any(x > 0 for x in v if not math.isnan(x))}
        )
    errors = series(rate(scrapes, "kefu_errors_total", w, "status"), lambda k: f"status {k}")
    refused = rate(scrapes, "kefu_frames_total", w, "result")
    errors.update(
        {
            k: v
            for k, v in series(
                [{r: x for r, x in p.items() if r != "accepted"} for p in refused],
                lambda k: f"frames {k}",
            ).items()
        }
    )
    failures = series(rate(scrapes, "kefu_auth_failures_total", w, "side"), lambda k: f"auth {k}")
    failures.update(
        series(rate(scrapes, "kefu_login_failures_total", w, "reason"), lambda k: f"login {k}")
    )
    return [
        (
            "Queue length",
            "users",
            series(gauge(scrapes, "kefu_queue_length"), lambda k: "users waiting"),
        ),
        (
            "Ready waiters",
            "waiters",
            series(gauge(scrapes, "kefu_waiters_ready"), lambda k: "ready"),
        ),
        (
            "Conversations",
            "open",
            series(gauge(scrapes, "kefu_conversations_active"), lambda k: "open"),
        ),
        (
            "Queue wait (p50 / p90)",
            "s",
            {
                "p50": quantile(scrapes, "kefu_queue_wait_seconds", 0.5, slow),
                "p90": quantile(scrapes, "kefu_queue_wait_seconds", 0.9, slow),
            },
        ),
        ("Messages per second", "msg/s", stored),
        (
            "Ack latency (p50 / p99)",
            "ms",
            {
                "p50": [x * 1000 for x in quantile(scrapes, "kefu_message_ack_seconds", 0.5, w)],
                "p99": [x * 1000 for x in quantile(scrapes, "kefu_message_ack_seconds", 0.99, w)],
            },
        ),
        (
            "Commit latency p99",
            "ms",
            {
                "p99": [x * 1000 for x in quantile(scrapes, "kefu_store_commit_seconds", 0.99, w)],
                "p50": [x * 1000 for x in quantile(scrapes, "kefu_store_commit_seconds", 0.5, w)],
            },
        ),
        (
            "Batch size (mean / p99)",
            "ops",
            {
                "mean": ratio(
                    rate(scrapes, "kefu_store_batch_ops_sum", w),
                    rate(scrapes, "kefu_store_batch_ops_count", w),
                ),
                "p99": quantile(scrapes, "kefu_store_batch_ops", 0.99, w),
            },
        ),
        ("Errors", "/s", errors),
        ("Sockets", "sockets", series(gauge(scrapes, "kefu_sockets", "side,state"))),
        ("Auth and sign-in failures", "/s", failures),
        ("Leader", "", series(gauge(scrapes, "kefu_leader"), lambda k: "this node")),
    ]


def draw(scrapes: list[tuple[float, Sample]], out: Path) -> None:
    board = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in board["panels"]}
    t = [s[0] for s in scrapes]
    drawn = panels(scrapes)
    missing = [title for title, _, _ in drawn if title not in titles]
    assert not missing, f"panels not in the dashboard: {missing}"
    fig, axes = plt.subplots(3, 4, figsize=(20, 11.5), constrained_layout=True)
    fig.patch.set_facecolor("#111217")
    for ax, (title, unit, data) in zip(axes.flat, drawn, strict=True):
        ax.set_facecolor("#181b1f")
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.tick_params(colors="#9fa7b3", labelsize=9)
        ax.grid(color="#2c3235", linewidth=0.6)
        ax.set_title(title, color="#d8d9da", fontsize=12, loc="left")
        ax.set_ylabel(unit, color="#9fa7b3", fontsize=9)
        shown = {k: v for k, v in data.items() if any(x > 0 for x in v)} or data
        for name, values in shown.items():  # all-zero series only as the panel's only one
            ax.plot(t, values, linewidth=1.8, label=name)
        ax.set_ylim(bottom=0)
        if title == "Leader":
            ax.set_ylim(0, 1.2)
        if data:
            legend = ax.legend(fontsize=8, loc="upper left", frameon=False, ncol=2)
            for text in legend.get_texts():
                text.set_color("#c7d0d9")
        ax.set_xlim(0, t[-1] if t else 1)
    for ax in axes[-1]:
        ax.set_xlabel("seconds", color="#9fa7b3", fontsize=9)
    fig.suptitle(
        "kefu — deploy/grafana-dashboard.json, drawn from /metrics of one node under a scripted"
        f" load (rates over {RATE_WINDOW:g} s, queue wait over {SLOW_WINDOW:g} s)",
        color="#d8d9da",
        fontsize=13,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots" / "metrics.png")
    ap.add_argument("--seconds", type=float, default=120)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kefu-metrics-") as tmp:
        srv = start_server(Path(tmp))
        try:
            scrapes = asyncio.run(play(srv, args.seconds))
        finally:
            srv.proc.send_signal(signal.SIGTERM)
            srv.proc.wait(15)
    draw(scrapes, args.out)
    print(f"{len(scrapes)} scrapes -> {args.out}")


if __name__ == "__main__":
    main()
