"""Both pages in Simplified Chinese and English: the catalogs, the language choice,
and a whole chat in Chinese."""

# Chinese text uses full-width punctuation (commas, colons, question marks) on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from support.client import Person
from support.servers import Server, run_kefu

from .helpers import (
    STEP,
    bubbles,
    conversation,
    expect_chatting,
    open_console,
    open_widget,
    pane,
    select,
    set_ready,
    visitor,
    waiter,
    widget_send,
)

WEB = Path(__file__).resolve().parents[2] / "src" / "kefu" / "server" / "web"
ZH = "zh-CN"
HH_MM = re.compile(r"^\d{2}:\d{2}$")  # zh-CN times: 24 hours, no AM/PM

# Keys whose languages fill in different holes on purpose: English says "number
# {place} in line", Chinese "{n} people ahead of you".
OWN_HOLES = {"widget.queue_place"}


def catalogs(page: Page, srv: Server) -> dict[str, dict[str, Any]]:
    page.goto(f"{srv.url}/v1/ws/example/user")
    return page.evaluate("async () => (await import('/static/js/i18n.js')).catalogs")  # type: ignore[no-any-return]


def used_keys() -> tuple[set[str], list[str]]:
    """Every key the pages' code and markup name, and every call to t() whose key is
    not written out (those the check below could not see)."""
    keys: set[str] = set()
    dynamic: list[str] = []
    call = re.compile(r"\b(?:t|nodes)\(\s*\"([\w.-]+)\"")
    for path in WEB.rglob("*.js"):
        text = path.read_text()
        keys.update(call.findall(text))
        if path.name != "i18n.js":  # its apply() reads keys from data-i18n attributes
            dynamic += [
                f"{path.name}: {m.group(0)}" for m in re.finditer(r"\bt\(\s*[^\"\s)]", text)
            ]
    for path in WEB.rglob("*.html"):
        keys.update(re.findall(r"data-i18n(?:-\w+)?=\"([^\"]+)\"", path.read_text()))
    return keys, dynamic


def holes(value: Any) -> set[str]:
    forms = value.values() if isinstance(value, dict) else [value]
    return {h for form in forms for h in re.findall(r"\{(\w+)\}", form)}


def test_every_key_is_in_both_catalogs(make_server, new_page):
    srv = make_server()
    cats = catalogs(new_page("catalogs"), srv)
    assert set(cats) == {"en", ZH}
    en, zh = cats["en"], cats[ZH]
    assert set(en) == set(zh), {
        "only en": sorted(set(en) - set(zh)),
        "only zh-CN": sorted(set(zh) - set(en)),
    }

    keys, dynamic = used_keys()
    assert not dynamic, f"t() with a key the check cannot see: {dynamic}"
    assert keys, "no t() calls found: the pattern no longer matches the code"
    assert not keys - set(en), f"used but in no catalog: {sorted(keys - set(en))}"
    assert not set(en) - keys, f"in the catalogs but never used: {sorted(set(en) - keys)}"

    for key in en:
        for lang, value in ((("en", en[key])), (ZH, zh[key])):
            forms = list(value.values()) if isinstance(value, dict) else [value]
            assert forms and all(isinstance(f, str) and f.strip() for f in forms), (lang, key)
            if isinstance(value, dict):
                assert "other" in value, (lang, key)
        if key not in OWN_HOLES:
            assert holes(en[key]) == holes(zh[key]), (key, en[key], zh[key])
    # Chinese is Chinese: most texts have Han characters (not an English copy).
    han = [
        k for k, v in zh.items() if re.search(r"[\u4e00-\u9fff]", json.dumps(v, ensure_ascii=False))
    ]
    assert len(han) > 0.85 * len(zh), sorted(set(zh) - set(han))


def test_a_missing_key_is_an_error_on_the_page(make_server, new_page):
    """The conftest fails a test on console errors, so a key missing at run time is caught."""
    srv = make_server()
    page = new_page("missing")
    page.kefu_log.allow_console += ('no zh-CN text for "no.such.key"',)
    page.goto(f"{srv.url}/v1/ws/example/user")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    got = page.evaluate(
        """async () => {
            const m = await import('/static/js/i18n.js');
            const zh = new m.I18n('zh-CN');
            const en = new m.I18n('en');
            return [
                zh.t('no.such.key'), zh.t('console.queue', {n: 3}), zh.t('widget.stars', {n: 2}),
                en.t('widget.stars', {n: 1}), en.t('widget.stars', {n: 2}),
                zh.t('widget.queue_place', {n: 0, place: 1}),
                zh.t('widget.queue_place', {n: 2, place: 3}),
            ];
        }"""
    )
    assert got == [
        "no.such.key",
        "排队中：3 人",
        "2 星",
        "1 star",
        "2 stars",
        "排队中，下一位就是您",
        "排队中，您前面还有 2 位",
    ]
    assert any('no zh-CN text for "no.such.key"' in e for e in errors), errors


def test_language_from_the_browser(make_server, new_page):
    srv = make_server()
    page = new_page("languages")
    page.goto(f"{srv.url}/v1/ws/example/user")
    got = page.evaluate(
        """async () => {
            const {chooseLanguage: c} = await import('/static/js/i18n.js');
            return [
                c('', ['zh-TW', 'en']), c('', ['zh']), c('', ['en-GB', 'zh-CN']),
                c('', ['fr-FR', 'zh-CN']), c('', []), c('zh_CN', ['en']), c('EN', ['zh-CN']),
                c('klingon', ['zh-CN']),
            ];
        }"""
    )
    assert got == [ZH, ZH, "en", "en", "en", ZH, "en", ZH]


# ---------------------------------------------------------------- a chat in Chinese


def create_account(srv: Server, username: str, password: str, nickname: str) -> None:
    args = ["users", "create", username, "--role", "waiter", "--password", password]
    done = run_kefu([*args, "--nickname", nickname], srv.env, srv.data_dir)
    assert done.returncode == 0, done.stderr


def test_widget_in_chinese(make_server, new_page):
    srv = make_server(max_users_per_waiter=1)
    w = waiter("王小明")
    console = open_console(new_page("console"), srv, w, ready=False)
    first, second = visitor("李雷"), visitor("韩梅梅")
    page = open_widget(new_page("first", locale=ZH), srv, first)
    expect(page.locator("html")).to_have_attribute("lang", ZH)
    expect(page.locator(".kefu")).to_have_attribute("lang", ZH)
    expect(page.get_by_role("heading", name="订单有疑问？")).to_be_visible()  # the demo page too
    expect(page.locator(".card.queue")).to_contain_text("排队中，下一位就是您", timeout=STEP)
    expect(page.locator(".subtitle")).to_have_text("正在等待客服")
    expect(page.get_by_role("button", name="退出排队")).to_be_visible()
    expect(page.locator(".launcher")).to_have_attribute("aria-label", "收起聊天窗口")
    other = open_widget(new_page("second", locale=ZH), srv, second)
    expect(other.locator(".card.queue")).to_contain_text("排队中，您前面还有 1 位", timeout=STEP)
    expect(other.locator(".queue-num")).to_have_text("2")

    # Written while waiting, sent when the agent comes.
    box = page.get_by_role("textbox", name="输入消息", exact=True)
    expect(box).to_have_attribute("placeholder", "排队期间可以先写下您的问题…")
    box.fill("你好，我的订单还没到 😊")
    box.press("Enter")
    held = page.locator(".msg.mine", has_text="你好，我的订单还没到")
    expect(held.locator(".state")).to_have_text("等待客服接入…")

    set_ready(console, True)
    expect(page.locator(".head .title")).to_have_text("王小明", timeout=STEP)
    expect(page.locator(".subtitle")).to_have_text("在线", timeout=STEP)
    expect(page.locator(".notice", has_text="已为您接通客服 王小明。")).to_be_visible()
    expect(page.locator(".head").get_by_role("button", name="结束对话")).to_be_visible()
    expect(held).to_have_attribute("data-state", "sent", timeout=STEP)
    expect(held.locator("time")).to_have_text(HH_MM)

    p = pane(console, first)
    expect(bubbles(p, "你好，我的订单还没到 😊")).to_have_text(
        "你好，我的订单还没到 😊", timeout=STEP
    )
    reply = p.get_by_role("textbox", name="Reply to 李雷")
    reply.fill("您好！请提供订单号，我马上为您查询。")
    reply.press("Enter")
    got = page.locator(".msg.theirs .bubble").last
    expect(got).to_have_text("您好！请提供订单号，我马上为您查询。", timeout=STEP)
    expect(page.locator(".msg.theirs time").last).to_have_text(HH_MM)
    expect(p.locator(".msg.mine .state").last).to_have_text("Seen", timeout=STEP)

    # The agent is typing; the agent asks for a rating; the stars are in Chinese.
    reply.press_sequentially("稍等", delay=20)
    expect(page.locator(".typing")).to_have_text("王小明 正在输入…", timeout=STEP)
    p.get_by_role("button", name="Ask for rating").click()
    card = page.get_by_role("group", name="评价本次对话")
    expect(card).to_contain_text("王小明 想了解：您对本次服务满意吗？", timeout=STEP)
    card.get_by_role("button", name="5 星").click()
    expect(
        page.locator(".notice", has_text="感谢您的评价！您给本次对话打了 5 星（满分 5 星）。")
    ).to_be_visible(timeout=STEP)
    expect(page.locator(".card.ended")).to_contain_text("本次对话已结束")
    expect(page.get_by_role("button", name="开始新的对话")).to_be_visible()


def test_console_in_chinese(make_server, new_page):
    srv = make_server()
    create_account(srv, "xiaohong", "正确的密码", "张小红")
    page = new_page("console", locale=ZH)
    page.kefu_log.allow_console += ("status of 401",)  # the wrong password, on purpose
    page.goto(f"{srv.url}/console")
    expect(page.locator("html")).to_have_attribute("lang", ZH)
    expect(page).to_have_title("登录 · kefu 客服工作台")
    expect(page.get_by_role("heading", name="登录客服工作台")).to_be_visible()
    expect(page.get_by_label("用户名")).to_be_focused()
    page.get_by_label("用户名").fill("xiaohong")
    page.get_by_label("密码").fill("错的")
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("alert")).to_have_text("用户名或密码错误")
    page.get_by_label("密码").fill("正确的密码")
    page.get_by_label("密码").press("Enter")

    expect(page.locator("#conn-text")).to_have_text("已连接", timeout=STEP)
    expect(page).to_have_title("kefu 客服工作台")
    expect(page.locator("#me")).to_contain_text("张小红")
    expect(page.locator("#queue-text")).to_have_text("排队中：0 人", timeout=STEP)
    switch = page.get_by_role("switch", name="接待新顾客")
    expect(switch).to_have_text("暂停")
    expect(page.get_by_role("tab", name="历史会话")).to_be_visible()
    switch.click()
    expect(switch).to_have_text("就绪", timeout=STEP)
    expect(page.locator("#chat-empty-text")).to_have_text("您已就绪，排队中的新顾客会显示在这里。")

    v = visitor("周杰")
    widget = open_widget(new_page("visitor", locale=ZH), srv, v)
    expect(widget.locator(".subtitle")).to_have_text("在线", timeout=STEP)
    p = pane(page, v)
    expect(p.locator(".notice", has_text="周杰 加入了对话。")).to_be_visible(timeout=STEP)
    for name in ("更早的消息", "邀请评价", "结束对话", "发送图片链接"):
        expect(p.get_by_role("button", name=name)).to_be_visible()
    expect(p.locator(".pane-sub")).to_contain_text("开始 · 在线")

    box = widget.get_by_role("textbox", name="输入消息", exact=True)
    box.fill("请问可以开发票吗？\n抬头是公司名称。")
    box.press("Enter")
    expect(bubbles(p, "请问可以开发票吗？")).to_have_text(
        "请问可以开发票吗？\n抬头是公司名称。", timeout=STEP
    )
    expect(p.locator(".msg.theirs time").last).to_have_text(HH_MM)
    item = conversation(page, v)
    expect(item.locator(".item-wait")).to_have_text(re.compile(r"^等待 \d+:\d\d$"))

    reply = p.get_by_role("textbox", name="回复 周杰")
    expect(reply).to_have_attribute("placeholder", "输入回复…")
    reply.fill("可以的，请发一下纳税人识别号。")
    reply.press("Enter")
    expect(bubbles(widget, "可以的，请发一下纳税人识别号。")).to_be_visible(timeout=STEP)
    expect(p.locator(".msg.mine .state").last).to_have_text("已读", timeout=STEP)
    expect(item.locator(".item-preview")).to_have_text("我：可以的，请发一下纳税人识别号。")

    p.get_by_role("button", name="结束对话").click()
    expect(p.locator(".notice", has_text="您结束了对话。")).to_be_visible(timeout=STEP)
    expect(item).to_contain_text("已结束")
    expect(reply).to_have_attribute("placeholder", "对话已结束")
    p.get_by_role("button", name="关闭对话").click()
    expect(item).to_have_count(0)
    expect(page.get_by_role("heading", name="选择一个对话")).to_be_visible()


# ---------------------------------------------------------------- the explicit choice


def test_console_lang_parameter_wins_and_is_remembered(make_server, new_page):
    srv = make_server()
    zh_browser = new_page("zh browser", locale=ZH)
    zh_browser.goto(f"{srv.url}/console?lang=en")
    expect(zh_browser.locator("html")).to_have_attribute("lang", "en")
    expect(zh_browser.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    zh_browser.goto(f"{srv.url}/console")  # no parameter: the choice was remembered
    expect(zh_browser.get_by_role("heading", name="Sign in to the console")).to_be_visible()

    # The picker switches, and that is remembered too.
    zh_browser.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(zh_browser.get_by_role("heading", name="登录客服工作台")).to_be_visible(timeout=STEP)
    assert "lang=zh-CN" in zh_browser.url
    zh_browser.goto(f"{srv.url}/console")
    expect(zh_browser.get_by_role("heading", name="登录客服工作台")).to_be_visible()

    en_browser = new_page("en browser")
    en_browser.goto(f"{srv.url}/console")
    expect(en_browser.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    w = waiter("Wu Wei")
    en_browser.goto(f"{srv.url}/console?lang=zh-CN#token={w.token()}")
    expect(en_browser.locator("#conn-text")).to_have_text("已连接", timeout=STEP)
    expect(en_browser.get_by_role("switch", name="接待新顾客")).to_be_visible()
    expect(en_browser.get_by_role("combobox", name="语言")).to_have_value(ZH)
    assert "token" not in en_browser.url and "lang=zh-CN" in en_browser.url


class Site:
    """Pages on another origin (http://localhost:PORT) that embed the widget."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = site.pages.get(self.path, "").encode()
                self.send_response(200 if data else 204)  # 204: the browser's favicon.ico
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def embed(self, path: str, srv: Server, who: Person, lang: str) -> str:
        self.pages[path] = f"""<!doctype html><html lang="xx"><head><title>Shop</title></head>
            <body><script src="{srv.url}/widget.js" data-kefu-token="{who.token()}"
            data-kefu-lang="{lang}" data-kefu-open="true" async></script></body></html>"""
        return f"{self.origin}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


def test_widget_lang_attribute_wins(make_server, new_page, site):
    srv = make_server(allowed_origins=site.origin)
    w = waiter()
    open_console(new_page("console"), srv, w)

    chinese = new_page("en browser, zh widget")
    chinese.goto(site.embed("/zh", srv, visitor("Zhao"), ZH))
    expect(chinese.locator(".kefu")).to_have_attribute("lang", ZH, timeout=STEP)
    expect(chinese.locator(".head .title")).to_have_text("Wendy Waiter", timeout=STEP)
    expect(chinese.locator(".subtitle")).to_have_text("在线", timeout=STEP)
    expect(chinese.get_by_role("textbox", name="输入消息")).to_be_visible()
    expect(chinese.locator("html")).to_have_attribute("lang", "xx")  # the site's page is its own

    english = new_page("zh browser, en widget", locale=ZH)
    english.goto(site.embed("/en", srv, visitor("Qian"), "en"))
    expect(english.locator(".kefu")).to_have_attribute("lang", "en", timeout=STEP)
    expect_chatting(english, w)
    expect(english.get_by_role("button", name="Minimize chat")).to_be_visible()

    # Without the attribute the browser's language decides.
    plain = new_page("zh browser, no attribute", locale=ZH)
    plain.goto(site.embed("/plain", srv, visitor("Sun"), ""))
    expect(plain.locator(".kefu")).to_have_attribute("lang", ZH, timeout=STEP)
    expect(plain.get_by_role("button", name="最小化聊天窗口")).to_be_visible()


def test_demo_page_lang_parameter(make_server, new_page):
    srv = make_server()
    page = new_page("demo", locale=ZH)
    page.goto(f"{srv.url}/v1/ws/example/user?lang=en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Questions about your order?")).to_be_visible()
    expect(page.locator("#token-missing")).to_contain_text("Run kefu demo and open")
    page.goto(f"{srv.url}/v1/ws/example/user")
    expect(page.locator("#token-missing code").first).to_have_text("kefu demo")
    expect(page.locator("#token-missing")).to_contain_text("此页面地址中没有令牌。请运行 kefu demo")


# ---------------------------------------------------------------- one message row module


def test_widget_and_console_share_the_message_row_module(make_server, new_page):
    srv = make_server()
    w, v = waiter(), visitor()
    loaded: dict[str, list[str]] = {"console": [], "widget": []}
    console = new_page("console")
    console.on("request", lambda r: loaded["console"].append(r.url))
    open_console(console, srv, w)
    widget = new_page("visitor")
    widget.on("request", lambda r: loaded["widget"].append(r.url))
    open_widget(widget, srv, v)
    expect_chatting(widget, w)
    widget_send(widget, "one row")
    expect(bubbles(select(console, v), "one row")).to_have_count(1, timeout=STEP)
    shared = [
        "/static/js/message-row.js",
        "/static/js/message-log.js",
        "/static/js/composer.js",
        "/static/js/i18n.js",
        "/static/css/message.css",
        "/static/css/base.css",
    ]
    for side, urls in loaded.items():
        paths = {u.removeprefix(srv.url) for u in urls}
        missing = [s for s in shared if s not in paths]
        assert not missing, (side, missing, sorted(paths))
    # And the rows on both sides are that module's: same markup.
    for pg in (console, widget):
        row = pg.locator(".msg").first
        expect(row.locator(".bubble")).to_have_count(1)
        expect(row.locator(".meta time.time")).to_have_count(1)
        expect(row.locator(".meta .state")).to_have_count(1)
