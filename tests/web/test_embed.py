"""The widget on another site: one script tag, a token from the site's own URL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from .helpers import (
    STEP,
    bubbles,
    expect_chatting,
    open_console,
    pane,
    visitor,
    waiter,
    widget_send,
)


class Shop:
    """A tiny site on its own origin (http://localhost:PORT) that embeds the widget."""

    def __init__(self) -> None:
        self.page = ""
        self.token = ""
        self.token_calls = 0
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/api/kefu-token":
                    shop.token_calls += 1
                    self._send("application/json", json.dumps({"token": shop.token}))
                else:
                    self._send("text/html; charset=utf-8", shop.page)

            def _send(self, kind: str, body: str) -> None:
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def shop() -> Iterator[Shop]:
    site = Shop()
    yield site
    site.close()


def test_widget_embedded_on_another_origin_with_a_token_url(make_server, new_page, shop):
    srv = make_server(allowed_origins=shop.origin)
    w, v = waiter("Wendy Waiter"), visitor("Cross Site")
    shop.token = v.token()
    shop.page = f"""<!doctype html><html><head><title>Shop</title></head><body>
        <h1>A shop on another origin</h1>
        <script src="{srv.url}/widget.js" data-kefu-token-url="/api/kefu-token"
                data-kefu-title="Shop help" async></script>
    </body></html>"""
    console = open_console(new_page("console"), srv, w)
    page = new_page("shop")
    page.goto(f"{shop.origin}/")
    launcher = page.locator(".launcher")
    expect(launcher).to_be_visible(timeout=STEP)
    expect(page.locator(".head .title")).to_have_text("Shop help")
    launcher.click()
    expect_chatting(page, w)
    assert shop.token_calls == 1
    widget_send(page, "hello from another site")
    expect(bubbles(pane(console, v), "hello from another site")).to_have_count(1, timeout=STEP)
    # The host page's own styles are left alone; the page can drive the widget.
    assert page.evaluate("getComputedStyle(document.body).margin") == "8px"
    page.evaluate("window.Kefu.close()")
    expect(page.locator(".panel")).to_be_hidden()


def test_widget_refused_on_an_origin_that_is_not_allowed(make_server, new_page, shop):
    srv = make_server()  # KEFU_ALLOWED_ORIGINS empty: same host only
    shop.token = visitor().token()
    shop.page = f"""<!doctype html><html><body>
        <script src="{srv.url}/widget.js" data-kefu-token-url="/api/kefu-token"></script>
    </body></html>"""
    page = new_page("shop")
    page.kefu_log.allow_console += ("403",)  # the refused WebSocket handshake
    page.goto(f"{shop.origin}/")
    expect(page.locator(".launcher")).to_be_visible(timeout=STEP)
    page.locator(".launcher").click()
    expect(page.locator(".subtitle")).to_have_text("Reconnecting…", timeout=STEP)
