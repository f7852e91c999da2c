"""Browser tests: real `kefu serve` processes and Debian's Chromium driven by Playwright.

* `browser`: one Chromium per test module (`/usr/bin/chromium`, or `KEFU_CHROMIUM`).
  Playwright's own browser download is never used. In CI (`support.ci.in_ci`) a missing
  Chromium or a missing `playwright` package fails the run; locally a missing
  Chromium skips these tests (run `bash scripts/browser-deps.sh`).
* `make_server(**settings)`: a fresh server (the `Server` of tests/support/servers.py)
  on a free port with its own database; stopped at teardown.
* `new_page(viewport=..., locale=...)`: a page in a fresh browser context (its own
  storage, so two pages are two people), in English (en-US) unless `locale` says
  otherwise (it sets navigator.languages and Accept-Language). Console errors,
  page errors and dialogs are recorded; a test fails at teardown if any page had
  a page error, a Content-Security-Policy violation, or an unexpected console
  error (the pages log one for a text missing from a language's catalog).

The tests are plain sync functions (Playwright's sync API). Playwright's sync
API keeps its own event loop marked as running while it is started, which would
break the asyncio tests of other directories, so it is started per module and
stopped when the module is done.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.ci import in_ci
from support.servers import BASE_SETTINGS, Server

CHROMIUM = os.environ.get("KEFU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Console messages that are not errors of the pages: the browser's own note
# when a WebSocket cannot connect (the restart test stops the server on purpose).
EXPECTED_CONSOLE = ("WebSocket connection to", "ERR_CONNECTION_REFUSED", "favicon")


def _chromium_available() -> bool:
    path = Path(CHROMIUM)
    return (path.is_file() and os.access(path, os.X_OK)) or shutil.which(CHROMIUM) is not None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the `playwright` package is missing: pip install -e '.[dev]' "
            "(never `playwright install`: the tests use Debian's chromium)"
        )
    if not _chromium_available():
        message = f"{CHROMIUM} not found: run `bash scripts/browser-deps.sh`"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        pw.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def factory(**settings: Any) -> Server:
        srv = Server(tmp_path / f"server{len(servers)}", {**BASE_SETTINGS, **settings})
        servers.append(srv)
        srv.start()
        return srv

    yield factory
    for srv in servers:
        srv.stop()


@dataclass
class PageLog:
    """What a page said: console errors, page errors, CSP violations, dialogs."""

    name: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    allow_console: tuple[str, ...] = EXPECTED_CONSOLE

    def problems(self) -> list[str]:
        out = [f"[{self.name}] page error: {e}" for e in self.page_errors]
        out += [f"[{self.name}] dialog opened: {d}" for d in self.dialogs]
        for text in self.console_errors:
            if "Content Security Policy" in text or "Content-Security-Policy" in text:
                out.append(f"[{self.name}] CSP violation: {text}")
            elif not any(a in text for a in self.allow_console):
                out.append(f"[{self.name}] console error: {text}")
        return out


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []
    logs: list[PageLog] = []

    def factory(
        name: str = "page", viewport: tuple[int, int] = (1280, 800), locale: str = "en-US"
    ) -> Any:
        context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            locale=locale,
            timezone_id="UTC",
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        log = PageLog(name)
        logs.append(log)
        page.kefu_log = log
        page.on(
            "console",
            lambda m: log.console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: log.page_errors.append(str(e)))

        def on_dialog(dialog: Any) -> None:
            log.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        return page

    yield factory
    problems = [p for log in logs for p in log.problems()]
    for context in contexts:
        context.close()
    assert not problems, "\n".join(problems)
