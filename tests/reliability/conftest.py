"""Fixtures of the reliability suite: the e2e servers of tests/server, plus bookkeeping.

* `make_server` / `Server` come from `tests/support/servers.py` (imported, not copied).
* `kefu_server(**settings)`: `make_server` under the name these tests use. Its
  servers' logs are scanned when they stop, at the end of each test, for the
  tokens and message texts remembered meanwhile (`support.logscan.remember`).
* `KEFU_SLOW_TESTS=1` (`SLOW`): the chaos, fuzz and conformance runs at full
  size, and the tests marked `slow`, which are skipped otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.logscan import remember  # noqa: F401  (some tests import it from here)
from support.servers import BASE_SETTINGS, MakeServer, Server, make_server  # noqa: F401

SLOW = os.environ.get("KEFU_SLOW_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SLOW:
        return
    skip = pytest.mark.skip(reason="long run: set KEFU_SLOW_TESTS=1")
    for item in items:
        if item.get_closest_marker("slow") is not None:  # not `keywords`: a test id may say "slow"
            item.add_marker(skip)


@pytest.fixture
def kefu_server(make_server: MakeServer) -> MakeServer:  # noqa: F811
    """`make_server` (which scans its servers' logs at the end of the test)."""
    return make_server


def server_logs(srv: Server) -> str:
    """Everything the server wrote to stdout/stderr so far, all runs."""
    parts = []
    for path in sorted(srv.data_dir.glob("server-*.std*")):
        parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
