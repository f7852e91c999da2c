"""A webhook sink for `run.py --webhook`: answers every POST with 204, counts them.

    python bench/webhook_sink.py PORT

Keep-alive HTTP/1.1, Content-Length bodies (what kefu's sender sends); no
signature check (the tests do that). On SIGTERM it prints one JSON line,
`{"event": "sink", "requests": N, "bytes": B}`, and exits.

`subscribed(...)` is run.py's side: it starts the sink beside a kefu server
and registers it through the admin API as a webhook for `message.created`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COUNT = {"requests": 0, "bytes": 0}


async def read_body(reader: asyncio.StreamReader) -> bytes:
    """The body of the next request on a keep-alive connection (Content-Length bodies)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return await reader.readexactly(length)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            length = len(await read_body(reader))
            COUNT["requests"] += 1
            COUNT["bytes"] += length
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    except asyncio.CancelledError:  # the sink is stopping
        return
    finally:
        writer.close()


async def main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    print(json.dumps({"event": "ready", "port": port}), flush=True)
    await stop.wait()
    server.close()
    print(json.dumps({"event": "sink", **COUNT}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def subscribed(
    kefu: Path, env: dict[str, str], workdir: Path, kefu_port: int, prefix: list[str]
) -> Iterator[dict[str, Any]]:
    """A sink (started with `prefix`, e.g. pinned) subscribed to kefu's `message.created`.

    Yields a dict that gets the sink's counts once the block ends.
    """
    port = _free_port()
    argv = [*prefix, sys.executable, str(Path(__file__).resolve()), str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    stats: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready", ready
        made = subprocess.run(
            [str(kefu), "api-keys", "create", f"bench-{port}"],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        key = made.stdout.strip().splitlines()[-1]
        body = {"url": f"http://127.0.0.1:{port}/hook", "events": ["message.created"]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{kefu_port}/v1/api/webhooks",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 201, resp.read()
        started = time.monotonic()
        yield stats
        stats["seconds"] = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            out, _ = proc.communicate(timeout=10)
            for line in out.splitlines():
                if line.startswith('{"event": "sink"'):
                    stats.update(json.loads(line))
        if proc.poll() is None:
            proc.kill()
