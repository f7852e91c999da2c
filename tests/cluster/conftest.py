"""Fixtures that run a real cluster: `kefu serve` processes on PostgreSQL and Redis.

`make_cluster(n, **settings)` starts `n` nodes (separate processes, one
machine) on a fresh database (`kefu_test_<random>`, dropped afterwards) and a
fresh Redis key prefix (wiped afterwards), and waits until they agree on a
leader. With `proxied=True` the nodes reach PostgreSQL and Redis through
`TcpProxy`s, so a test can take either service down and up again.

Settings every node gets (tests may override them): short lease and
heartbeat TTLs (2 s), so failover fits in a CI run; a high rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from support.client import SECRET, Client, Person, open_socket, person
from support.proxy import TcpProxy, free_port
from support.services import (
    REDIS_URL,
    create_database,
    drop_database,
    in_thread,
    redis_prefix,
    require_postgres,
    require_redis,
    wipe_redis,
)

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0

BASE_SETTINGS: dict[str, Any] = {
    "lease_ttl": 2,
    "node_ttl": 2,
    "resume_grace": 2,
    "rate_limit": 10000,
    "rate_burst": 10000,
    "log_level": "warning",
}


class Node:
    """One `kefu serve` process of the cluster."""

    def __init__(self, index: int, data_dir: Path, env: dict[str, str]) -> None:
        self.index = index
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.name: str | None = None  # the node's cluster name, from its status
        self.clients: list[Client] = []
        self._runs = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._runs += 1
        out = (self.data_dir / f"node-{self._runs}.stdout").open("wb")
        err = (self.data_dir / f"node-{self._runs}.stderr").open("wb")
        argv = [sys.executable, "-m", "kefu", "serve", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*argv, "--port", str(self.port)],
            env=self.env,
            cwd=self.data_dir,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        out.close()
        err.close()

    def stderr(self) -> str:
        path = self.data_dir / f"node-{self._runs}.stderr"
        return path.read_text(errors="replace")[-5000:] if path.exists() else "(none)"

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        async with httpx.AsyncClient(trust_env=False, timeout=1) as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    pytest.fail(f"node {self.index} exited during startup:\n{self.stderr()}")
                with contextlib.suppress(httpx.HTTPError):
                    resp = await http.get(f"{self.url}/v1/ws/status")
                    if resp.status_code == 200:
                        self.name = resp.json()["data"]["node"]
                        return
                if time.monotonic() > deadline:
                    pytest.fail(f"node {self.index} not ready:\n{self.stderr()}")
                await asyncio.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, closed or released."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(8)
        except subprocess.TimeoutExpired:
            self.kill()

    async def status(self) -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            resp = await http.get(f"{self.url}/v1/ws/status")
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        assert isinstance(data, dict)
        return data

    async def open(self, role: str, label: str) -> Client:
        client = await open_socket(
            f"ws://127.0.0.1:{self.port}/v1/ws/connect/{role}", label, side=role
        )
        self.clients.append(client)
        return client

    async def user(
        self, who: Person | None = None, label: str | None = None, **extra: Any
    ) -> Client:
        who = who or person("user")
        client = await self.open("user", label or f"n{self.index}:{who.username}")
        await client.auth(who, **extra)
        return client

    async def waiter(
        self, who: Person | None = None, label: str | None = None, *, ready: bool = True
    ) -> Client:
        who = who or person("waiter")
        client = await self.open("waiter", label or f"n{self.index}:{who.username}")
        await client.auth(who)
        if ready:
            await client.send({"type": "ready"})
            await client.expect("ready")
        return client

    async def close_clients(self) -> None:
        clients, self.clients = self.clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2)


class Cluster:
    def __init__(self, nodes: list[Node], database_url: str, prefix: str) -> None:
        self.nodes = nodes
        self.database_url = database_url
        self.prefix = prefix
        self.pg_proxy: TcpProxy | None = None
        self.redis_proxy: TcpProxy | None = None

    def __getitem__(self, i: int) -> Node:
        return self.nodes[i]

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.alive()]

    async def wait_for(
        self,
        check: Callable[[dict[str, Any]], bool],
        timeout: float = 10.0,
        nodes: list[Node] | None = None,
        what: str = "condition",
    ) -> dict[str, Any]:
        """Poll the status of `nodes` (default: all alive) until `check` holds on every one."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while True:
            ok = True
            for node in nodes or self.alive():
                try:
                    last = await node.status()
                except (httpx.HTTPError, AssertionError) as exc:
                    last, ok = {"error": repr(exc)}, False
                    break
                if not check(last):
                    ok = False
                    break
            if ok:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last status: {last}")
            await asyncio.sleep(0.05)

    async def leader(self, timeout: float = 10.0) -> Node:
        """The node that holds the lease, once every alive node agrees."""
        alive = self.alive()
        names = {n.name for n in alive}
        status = await self.wait_for(
            lambda s: s.get("leader") in names and set(s.get("nodes", {})) >= names,
            timeout,
            what="a leader every node reports",
        )
        return next(n for n in alive if n.name == status["leader"])

    def by_name(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def sql(self, query: str, *args: Any) -> list[Any]:
        async def run() -> list[Any]:
            import asyncpg

            conn = await asyncpg.connect(self.database_url, timeout=5)
            try:
                return list(await conn.fetch(query, *args))
            finally:
                await conn.close()

        return in_thread(run)


MakeCluster = Callable[..., Awaitable[Cluster]]


async def start_cluster(
    base: Path,
    cleanup: list[Callable[[], None]],
    n: int = 3,
    *,
    proxied: bool = False,
    **settings: Any,
) -> Cluster:
    """Start `n` nodes on a fresh database and Redis prefix; undo with `cleanup` (in reverse)."""
    name, db_url = create_database("kefu_test_cluster")
    cleanup.append(lambda: drop_database(name))
    prefix = redis_prefix()
    cleanup.append(lambda: wipe_redis(prefix))
    node_db, node_redis = db_url, REDIS_URL
    pg_proxy = redis_proxy = None
    if proxied:
        pg = urlsplit(db_url)
        pg_proxy = TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432)
        node_db = db_url.replace(f"{pg.hostname}:{pg.port or 5432}", f"127.0.0.1:{pg_proxy.port}")
        rd = urlsplit(REDIS_URL)
        redis_proxy = TcpProxy(rd.hostname or "127.0.0.1", rd.port or 6379)
        node_redis = REDIS_URL.replace(
            f"{rd.hostname}:{rd.port or 6379}", f"127.0.0.1:{redis_proxy.port}"
        )
        cleanup.extend((pg_proxy.close, redis_proxy.close))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    src = str(REPO / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["KEFU_DATABASE_URL"] = node_db
    env["KEFU_BROKER_URL"] = node_redis
    env["KEFU_BROKER_PREFIX"] = prefix
    env["KEFU_SECRET"] = SECRET
    for key, value in {**BASE_SETTINGS, **settings}.items():
        env[f"KEFU_{key.upper()}"] = str(value)
    nodes = [Node(i + 1, base / f"node{i + 1}", dict(env)) for i in range(n)]
    cluster = Cluster(nodes, db_url, prefix)
    cluster.pg_proxy, cluster.redis_proxy = pg_proxy, redis_proxy

    def stop_nodes() -> None:
        for node in nodes:
            node.stop()

    cleanup.append(stop_nodes)
    for node in nodes:
        node.start()
    await asyncio.gather(*(node.wait_ready() for node in nodes))
    await cluster.leader(timeout=15)
    return cluster


@pytest.fixture
async def make_cluster(tmp_path: Path) -> AsyncIterator[MakeCluster]:
    require_postgres()
    require_redis()
    clusters: list[Cluster] = []
    cleanup: list[Callable[[], None]] = []

    async def factory(n: int = 3, *, proxied: bool = False, **settings: Any) -> Cluster:
        base = tmp_path / f"cluster{len(clusters)}"
        cluster = await start_cluster(base, cleanup, n, proxied=proxied, **settings)
        clusters.append(cluster)
        return cluster

    yield factory
    for cluster in clusters:
        for node in cluster.nodes:
            await node.close_clients()
    for fn in reversed(cleanup):
        with contextlib.suppress(Exception):
            fn()
