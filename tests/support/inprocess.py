"""kefu served in the test's own process, as `kefu serve` serves it, so its objects can be seen.

`serving(tmp_path)` migrates a fresh SQLite database, builds the app and the
uvicorn config exactly as `kefu.server.serve.run` does (`uvicorn_config`)
and serves it on a free port until the block ends. `ping_interval` /
`ping_timeout` override the keepalive (20 s and 20 s) for tests that need
rounds within a second. This imports `kefu`: only the tests that look
inside the server use it; the others run `kefu serve` (`support.servers`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn

from kefu.server.app import create_app
from kefu.server.serve import uvicorn_config
from kefu.settings import Settings
from kefu.store.migrate import upgrade
from support.client import SECRET
from support.servers import free_port


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path,
    *,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
    **settings: Any,
) -> AsyncIterator[Settings]:
    """kefu in this process on a free port; yields its settings (`port`)."""
    values: dict[str, Any] = {
        "port": free_port(),
        "database_url": f"sqlite:///{tmp_path / 'kefu.db'}",
        "secret": SECRET,
        "resume_grace": 0,
        "rate_limit": 10_000,
        "rate_burst": 10_000,
        **settings,
    }
    config_settings = Settings(**values)
    upgrade(config_settings.database_url)
    config = uvicorn_config(create_app(config_settings), config_settings)
    if ping_interval is not None:
        config.ws_ping_interval = ping_interval
    if ping_timeout is not None:
        config.ws_ping_timeout = ping_timeout
    server = uvicorn.Server(config)
    # pytest keeps SIGINT: the server does not take the process's signals
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign, assignment]
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        assert not task.done(), task
        await asyncio.sleep(0.01)
    try:
        yield config_settings
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
