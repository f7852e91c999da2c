"""Webhook lag: how far behind the chat `message.created` deliveries are, by message rate.

    bench/.venv/bin/python bench/webhook_lag.py                  # 200, 1,000, 5,000 msg/s
    bench/.venv/bin/python bench/webhook_lag.py --rates 200,2000 --seconds 20

kefu (SQLite, pinned to CPU 0) with one webhook for `message.created` to a
sink in this process (pinned to CPU 1 with the clients; it answers 204 at
once). Pairs of a user and a waiter send texts at a fixed total rate, open
loop, for a while. For each rate: the deliveries the sink got while the
messages were being sent (per second), how long after its event each
delivery arrived (p50 / p99 / max, from the body's `created_at`), and how
long after the last message every delivery was in. Prints a JSON object per
rate; `--markdown` prints a table row too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import uvloop
from loadgen import Env
from restart_storm import KEFU, Kefu, pair_up
from webhook_sink import read_body

now = time.perf_counter


class Sink:
    """An HTTP/1.1 keep-alive server that answers 204 and notes each delivery's lag."""

    def __init__(self) -> None:
        self.lags: list[tuple[float, float]] = []  # (arrival, seconds after the event)
        self.seen: set[str] = set()  # the message ids delivered

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                body = orjson.loads(await read_body(reader))
                arrived = time.time()
                made = datetime.fromisoformat(body["created_at"]).timestamp()
                self.lags.append((now(), arrived - made))
                self.seen.add(str(body["data"]["id"]))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def measure(args: argparse.Namespace, server: Kefu) -> list[dict[str, Any]]:
    sink = Sink()
    listener = await asyncio.start_server(sink.serve, "127.0.0.1", 0)
    sink_port = listener.sockets[0].getsockname()[1]
    made = subprocess.run(
        [str(KEFU), "api-keys", "create", "lag-bench"],
        env=server.env,
        cwd=server.workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip().splitlines()[-1]
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/v1/api/webhooks",
        data=json.dumps(
            {"url": f"http://127.0.0.1:{sink_port}/hook", "events": ["message.created"]}
        ).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 201, resp.read()

    env = Env({"url": f"ws://127.0.0.1:{server.port}", "secret": server.env["KEFU_SECRET"]})
    pairs = [await pair_up(env, i) for i in range(args.pairs)]
    for user, _waiter in pairs:
        assert user.sock is not None
        user.sock.on_data = lambda _data: None  # acks are not read: the sink is the measure
    for _user, waiter in pairs:
        assert waiter.sock is not None
        waiter.sock.on_data = lambda _data: None

    results = []
    for rate in args.rates:
        first = len(sink.lags)
        sent = 0
        start = now()
        end = start + args.seconds
        while (t := now()) < end:
            due = int((t - start) * rate)
            while sent < due:
                user = pairs[sent % len(pairs)][0]
                assert user.sock is not None
                user.sock.send(orjson.dumps({"type": "message_text", "payload": {"text": "hi"}}))
                sent += 1
            await asyncio.sleep(0.001)
        during = [lag for at, lag in sink.lags[first:] if at <= end]
        wanted = first + sent
        deadline = end + args.catch_up
        while len(sink.lags) < wanted and now() < deadline:
            await asyncio.sleep(0.05)
        caught_up = sink.lags[-1][0] - end if len(sink.lags) >= wanted else None
        lags = [lag for _at, lag in sink.lags[first:]]
        results.append(
            {
                "rate": rate,
                "sent": sent,
                "delivered_during_per_s": round(len(during) / args.seconds, 1),
                "delivered": len(sink.lags) - first,
                "lag_p50_s": round(pct(lags, 0.5), 3),
                "lag_p99_s": round(pct(lags, 0.99), 3),
                "lag_max_s": round(max(lags), 3) if lags else None,
                "all_in_after_last_s": round(caught_up, 2) if caught_up is not None else None,
            }
        )
    listener.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="200,1000,5000", help="messages per second, in order")
    parser.add_argument("--seconds", type=float, default=10, help="sending, per rate")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--catch-up", type=float, default=120, help="wait at most, per rate")
    parser.add_argument("--markdown", action="store_true", help="also print table rows")
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    os.sched_setaffinity(0, {1})
    workdir = Path(tempfile.mkdtemp(prefix="kefu-webhook-lag-"))
    server = Kefu(workdir, 0, secrets.token_urlsafe(32), "0")
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        server.port = s.getsockname()[1]
    server.env["KEFU_WEBHOOK_ALLOW_PRIVATE"] = "true"
    server.env["KEFU_MAX_USERS_PER_WAITER"] = "1"
    try:
        server.start()
        results = uvloop.run(measure(args, server))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for r in results:
        print(json.dumps(r))
    if args.markdown:
        for r in results:
            print(
                f"| {r['rate']:,} | {r['delivered_during_per_s']:,} | {r['lag_p50_s']} / "
                f"{r['lag_p99_s']} / {r['lag_max_s']} | {r['all_in_after_last_s']} |"
            )


if __name__ == "__main__":
    main()
