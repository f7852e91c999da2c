"""Fixtures that run the real server (`python -m kefu serve`) in a subprocess.

* `make_server(**settings)`: a fresh server per call (own tmp dir, free port),
  settings given as keyword arguments become `KEFU_<NAME>` variables. Use it
  wherever queue state or a setting matters.
* `server`: one shared server (default settings) for tests whose state is
  their own (unique accounts per test). Before each test it must report an
  empty desk on `/v1/ws/status`; if it does not (a leak, or a crash in the
  previous test) it is replaced by a fresh one and a warning says so.

Both close every socket the test opened before the test ends, and stop
their processes (SIGTERM, then SIGKILL of the process group) at teardown.
Then their logs are scanned for the tokens and texts remembered while they
ran, JWTs and auth frames (`support.logscan`): `make_server`'s at the end of
the test, the shared server's at the end of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import logscan
from support.client import SECRET, Client, Person, open_socket, person

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 15.0

# Settings every test server gets unless the test overrides them.
# resume_grace=0: a closed socket is gone at once, so tests do not leak state;
# a high rate limit: tests send fast on purpose (test_errors covers the limit).
BASE_SETTINGS: dict[str, Any] = {
    "resume_grace": 0,
    "rate_limit": 10000,
    "rate_burst": 10000,
}
# KEFU_TEST_TRANSPORT=plain|fast serves every server's chat sockets on that transport
# (KEFU_TRANSPORT); `make test` runs a set of the e2e tests again with `plain`.
if os.environ.get("KEFU_TEST_TRANSPORT"):
    BASE_SETTINGS["transport"] = os.environ["KEFU_TEST_TRANSPORT"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kefu_env(data_dir: Path, secret: str = SECRET, **settings: Any) -> dict[str, str]:
    """The environment for any `python -m kefu` process working on `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    src = str(REPO / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["KEFU_DATABASE_URL"] = f"sqlite:///{data_dir / 'kefu.db'}"
    env["KEFU_SECRET"] = secret
    for name, value in settings.items():
        env[f"KEFU_{name.upper()}"] = str(value)
    return env


def run_kefu(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m kefu ARGS` to completion (the CLI tests)."""
    return subprocess.run(
        [sys.executable, "-m", "kefu", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Server:
    """One `kefu serve` process. `restart()` keeps the database and the port."""

    def __init__(self, data_dir: Path, settings: dict[str, Any], secret: str = SECRET) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = data_dir / "kefu.db"
        self.settings = settings
        self.secret = secret
        self.port = free_port()
        self.env = kefu_env(data_dir, secret, **settings)
        self.proc: subprocess.Popen[bytes] | None = None
        self.clients: list[Client] = []
        self._runs = 0
        self._stderr_path: Path | None = None

    # ---- addresses

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    # ---- process

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._runs += 1
        self._stderr_path = self.data_dir / f"server-{self._runs}.stderr"
        out = (self.data_dir / f"server-{self._runs}.stdout").open("wb")
        err = self._stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kefu",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env,
            cwd=self.data_dir,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: kill() reaches any children
        )
        out.close()
        err.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(trust_env=False, timeout=0.5) as http:
            while True:
                code = self.proc.poll()
                if code is not None:
                    pytest.fail(f"kefu serve exited with {code} during startup:\n{self.stderr()}")
                try:
                    if http.get(f"{self.url}/v1/ws/status").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self._kill_group()
                    pytest.fail(
                        f"kefu serve not ready within {STARTUP_TIMEOUT}s "
                        f"(GET /v1/ws/status):\n{self.stderr()}"
                    )
                time.sleep(0.05)

    def stderr(self) -> str:
        if self._stderr_path is None or not self._stderr_path.exists():
            return "(no stderr)"
        return self._stderr_path.read_text(errors="replace")[-6000:] or "(empty stderr)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, nothing gets flushed or closed."""
        self._kill_group()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM and wait for a clean exit; SIGKILL if it does not come."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                warnings.warn(f"kefu serve ignored SIGTERM for {timeout}s; killed", stacklevel=2)
        self._kill_group()

    def restart(self) -> None:
        """Stop (if running) and start again on the same database and port."""
        self.stop()
        self.start()

    def _kill_group(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return  # never signal a reaped pid: it may belong to someone else by now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    # ---- HTTP and sockets

    async def status(self) -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            resp = await http.get(f"{self.url}/v1/ws/status")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert isinstance(body, dict), body
        return body

    async def until(
        self, what: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll `/v1/ws/status` until `pred(data)` holds (e.g. the server saw a drop); the data."""
        deadline = time.monotonic() + timeout
        while True:
            data: dict[str, Any] = (await self.status())["data"]
            if pred(data):
                return data
            assert time.monotonic() < deadline, f"not within {timeout}s: {what}; status {data}"
            await asyncio.sleep(0.02)

    async def open(
        self, role: str, label: str | None = None, *, origin: str | None = None
    ) -> Client:
        """Open `/v1/ws/connect/<role>` without authenticating."""
        client = await open_socket(
            self.ws_url(f"/v1/ws/connect/{role}"),
            label or f"{role}#{len(self.clients)}",
            side=role,
            origin=origin,
        )
        self.clients.append(client)
        return client

    async def user(
        self, who: Person | None = None, label: str | None = None, **auth_extra: Any
    ) -> Client:
        """An authenticated user socket (a new account unless `who` is given)."""
        who = who or person("user")
        client = await self.open("user", label or f"user:{who.username}")
        await client.auth(who, **auth_extra)
        return client

    async def waiter(
        self, who: Person | None = None, label: str | None = None, *, ready: bool = True
    ) -> Client:
        """An authenticated waiter socket, `ready` (acked) unless told otherwise."""
        who = who or person("waiter")
        client = await self.open("waiter", label or f"waiter:{who.username}")
        await client.auth(who)
        if ready:
            await client.send({"type": "ready"})
            await client.expect("ready")
        return client

    async def close_clients(self) -> None:
        clients, self.clients = self.clients, []
        for client in clients:
            await client.close()


MakeServer = Callable[..., Server]


def _quiet(status: dict[str, Any]) -> bool:
    data = status.get("data") or {}
    return (
        data.get("online_waiter_num") == 0
        and data.get("online_user_num") == 0
        and data.get("pending_num") == 0
        and not any(data.get("matchers") or {})
    )


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[Callable[..., Server]]:
    """Factory: `make_server(max_users_per_waiter=1, ...)` -> a started fresh Server.

    `data_dir=` reuses a directory (e.g. one the CLI already wrote a database to).
    """
    servers: list[Server] = []

    def factory(data_dir: Path | None = None, secret: str = SECRET, **settings: Any) -> Server:
        srv = Server(
            data_dir or tmp_path / f"server{len(servers)}", {**BASE_SETTINGS, **settings}, secret
        )
        servers.append(srv)
        srv.start()
        return srv

    with logscan.recording() as secrets:
        yield factory
        for srv in servers:
            await srv.close_clients()
        for srv in servers:
            srv.stop()
    logscan.check([srv.data_dir for srv in servers], secrets)


class _Shared:
    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.srv: Server | None = None
        self.dirs: list[Path] = []  # of every shared server so far, for the log scan

    def fresh(self) -> Server:
        if self.srv is not None:
            self.srv.stop()
        self.srv = Server(self.factory.mktemp("shared"), dict(BASE_SETTINGS))
        self.dirs.append(self.srv.data_dir)
        self.srv.start()
        return self.srv

    async def quiet(self) -> Server:
        if self.srv is None or not self.srv.alive():
            if self.srv is not None:
                warnings.warn(
                    "the shared kefu server had died; started a new one. Its stderr:\n"
                    + self.srv.stderr(),
                    stacklevel=2,
                )
            return self.fresh()
        srv = self.srv
        deadline = time.monotonic() + 3
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                status = await srv.status()
            except (httpx.HTTPError, AssertionError) as exc:
                status = {"error": repr(exc)}
            if _quiet(status):
                return srv
            await asyncio.sleep(0.05)
        warnings.warn(
            "the shared kefu server did not report an empty desk 3 s after the previous "
            f"test closed all its sockets (last status: {status}); started a fresh one",
            stacklevel=2,
        )
        return self.fresh()

    def stop(self) -> None:
        if self.srv is not None:
            self.srv.stop()


@pytest.fixture(scope="session")
def _shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Shared]:
    shared = _Shared(tmp_path_factory)
    with logscan.recording() as secrets:
        yield shared
        shared.stop()
    logscan.check(shared.dirs, secrets)


@pytest.fixture
async def server(_shared_server: _Shared) -> AsyncIterator[Server]:
    """The shared server, with an empty desk; the test's sockets are closed afterwards."""
    srv = await _shared_server.quiet()
    yield srv
    await srv.close_clients()
