"""Everything a person typed is text; the pages run under a same-origin-only CSP."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
from playwright.sync_api import expect

from .helpers import (
    STEP,
    bubbles,
    console_send,
    conversation,
    open_console,
    open_widget,
    pane,
    person,
    select,
    start_chat,
    waiter,
    widget_send,
)

XSS = "<img src=x onerror=alert(1)>"
PAGES = ("/v1/ws/example/user", "/v1/ws/example/waiter", "/console")


def test_html_in_messages_and_names_is_shown_as_text(make_server, new_page):
    srv = make_server()
    w = waiter("<b>Boss</b><img src=x onerror=alert(2)>")
    v = person("user", nickname="<script>alert(3)</script>Mallory", avatar="javascript:alert(4)")
    console = open_console(new_page("console"), srv, w)
    page = open_widget(new_page("visitor"), srv, v)
    expect(page.locator(".head .title")).to_have_text(
        "<b>Boss</b><img src=x onerror=alert(2)>", timeout=STEP
    )
    expect(conversation(console, v)).to_contain_text("<script>alert(3)</script>Mallory")

    widget_send(page, XSS)
    p = pane(console, v)
    expect(bubbles(p, XSS)).to_have_text(XSS, timeout=STEP)
    console_send(console, v, f"echo {XSS}")
    expect(bubbles(page, f"echo {XSS}")).to_have_text(f"echo {XSS}", timeout=STEP)

    for pg in (page, console):
        assert pg.locator(".bubble img").count() == 0
        assert pg.locator("img[src='x']").count() == 0
        assert pg.locator(".avatar img").count() == 0  # javascript: avatar URL never used
        assert pg.evaluate("typeof window.__xss") == "undefined"
    # The conftest fails the test if any page opened a dialog (alert).
    assert not page.kefu_log.dialogs and not console.kefu_log.dialogs


def test_only_http_urls_become_images_or_links(make_server, new_page):
    srv = make_server()
    page = new_page("visitor")
    page.goto(f"{srv.url}/v1/ws/example/user")
    result = page.evaluate(
        """async () => {
            const m = await import('/static/js/dom.js');
            const div = document.createElement('div');
            m.appendText(div, 'see javascript:alert(1) and https://example.com/a?b=1. ok');
            return {
                js: m.safeHttpUrl('javascript:alert(1)'),
                data: m.safeHttpUrl('data:image/png;base64,AAAA'),
                rel: m.safeHttpUrl('/static/x.png'),
                creds: m.safeHttpUrl('https://u:p@example.com/x.png'),
                ok: m.safeHttpUrl('https://example.com/x.png'),
                links: [...div.querySelectorAll('a')].map(a => a.href),
                text: div.textContent,
            };
        }"""
    )
    assert result["js"] is None and result["data"] is None and result["rel"] is None
    assert result["creds"] is None
    assert result["ok"] == "https://example.com/x.png"
    assert result["links"] == ["https://example.com/a?b=1"]
    assert result["text"] == "see javascript:alert(1) and https://example.com/a?b=1. ok"


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if "style" in names:
            self.problems.append(f"style attribute on <{tag}>")
        self.problems += [f"{k} handler on <{tag}>" for k in names if k.startswith("on")]


def test_pages_have_a_strict_csp_and_no_inline_code(make_server):
    srv = make_server()
    with httpx.Client(base_url=srv.url, trust_env=False) as http:
        for path in PAGES:
            resp = http.get(path)
            assert resp.status_code == 200, path
            csp = resp.headers["content-security-policy"]
            directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
            assert directives["script-src"] == "'self'", csp
            assert directives["style-src"] == "'self'", csp
            assert "unsafe" not in csp, csp
            assert resp.headers["x-content-type-options"] == "nosniff"
            parser = _Inline()
            parser.feed(resp.text)
            assert not parser.problems, (path, parser.problems)
        widget = http.get("/widget.js")
        assert widget.status_code == 200
        assert widget.headers["content-type"].startswith("text/javascript")
        assert widget.headers["access-control-allow-origin"] == "*"
        module = http.get("/static/js/widget.js")
        assert module.headers["content-type"].startswith("text/javascript")
        assert module.headers["access-control-allow-origin"] == "*"
        # The pages themselves are not reachable without their CSP.
        assert http.get("/static/user.html").status_code == 404


def test_no_code_assigns_html():
    """The web code never builds DOM from HTML strings."""
    from pathlib import Path

    import kefu.server.pages as pages

    web = Path(pages.__file__).parent / "web"
    pattern = re.compile(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|\beval\(")
    offenders = [
        f"{path.relative_to(web)}:{n}: {line.strip()}"
        for path in web.rglob("*.js")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


def test_no_csp_violations_while_chatting(make_server, new_page):
    """A whole chat under the real CSP: the conftest fails on any violation report."""
    _, _, v, console, page = start_chat(make_server, new_page, "Csp Check")
    widget_send(page, "hello")
    select(console, v)
    console_send(console, v, "hi")
    violations = page.evaluate(
        """() => new Promise(resolve => {
            const seen = [];
            document.addEventListener(
                'securitypolicyviolation', e => seen.push(e.violatedDirective));
            setTimeout(() => resolve(seen), 300);
        })"""
    )
    assert violations == []
