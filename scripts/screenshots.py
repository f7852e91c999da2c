"""Take the screenshots in docs/screenshots/ from the real pages.

Starts `kefu serve` on a free port with a throw-away database, plays a few
customers and agents in Chromium (Debian's, at /usr/bin/chromium; see
scripts/browser-deps.sh, which also installs the CJK and emoji fonts), and saves
PNGs of the visitor widget and the waiter console at desktop and phone sizes, in
English and in Simplified Chinese (browsers whose language is zh-CN).

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--chromium PATH]
"""

# The Chinese texts use full-width punctuation on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt
from playwright.sync_api import Browser, Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]
DESKTOP = {"width": 1440, "height": 900}
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def kefu_server(secret: str) -> Iterator[str]:
    """A `kefu serve` on a free port and a temporary database; yields its base URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kefu-shots-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
        env.update(
            KEFU_DATABASE_URL=f"sqlite:///{tmp}/kefu.db",
            KEFU_SECRET=secret,
            KEFU_MAX_USERS_PER_WAITER="3",
            NO_PROXY="127.0.0.1,localhost",
        )
        cmd = [sys.executable, "-m", "kefu", "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(cmd, env=env, cwd=tmp)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/v1/ws/status", timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("kefu serve did not start") from None
                    time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def token(secret: str, username: str, nickname: str, role: str = "user") -> str:
    """A token as a host site signs one for its own user (README: "Accounts and tokens")."""
    claims = {
        "sub": f"shot-{username}",
        "role": role,
        "username": username,
        "nickname": nickname,
        "exp": int(time.time()) + 3600,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def new_page(browser: Browser, viewport: dict[str, int], locale: str) -> Page:
    context = browser.new_context(viewport=viewport, device_scale_factor=1, locale=locale)
    return context.new_page()


def console_page(
    browser: Browser, url: str, tok: str, viewport: dict[str, int], locale: str = "en-US"
) -> Page:
    page = new_page(browser, viewport, locale)
    page.goto(f"{url}/v1/ws/example/waiter#token={tok}")
    expect(page.locator("#conn[data-state='open']")).to_be_visible()
    return page


def visitor_page(
    browser: Browser, url: str, tok: str, viewport: dict[str, int], locale: str = "en-US"
) -> Page:
    page = new_page(browser, viewport, locale)
    page.goto(f"{url}/v1/ws/example/user#token={tok}")
    page.locator(".launcher").click()
    expect(page.locator(".panel")).to_be_visible()
    return page


def say(page: Page, text: str, state: str = "sent") -> None:
    box = page.locator(".composer .input")
    box.fill(text)
    box.press("Enter")
    expect(page.locator(".msg.mine", has_text=text).last).to_have_attribute("data-state", state)


def reply(console: Page, name: str, text: str) -> None:
    console.locator("#chat-list li", has_text=name).get_by_role("button").click()
    box = console.locator(".pane:not([hidden]) .composer .input")
    box.fill(text)
    box.press("Enter")
    expect(console.locator(".pane:not([hidden]) .msg.mine", has_text=text).last).to_have_attribute(
        "data-state", "sent"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--chromium", default=os.environ.get("KEFU_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)

    with kefu_server(secret) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=ARGS)
        expect.set_options(timeout=15_000)

        # The sign-in form.
        signin = browser.new_context(viewport=LAPTOP).new_page()
        signin.goto(f"{url}/console")
        signin.get_by_label("Username").fill("mia")
        signin.wait_for_timeout(200)
        signin.screenshot(path=out / "console-sign-in.png")

        mia = token(secret, "mia", "Mia Chen", role="waiter")
        console = console_page(browser, url, mia, DESKTOP)
        console.get_by_role("switch", name="Ready for new customers").click()
        expect(console.get_by_role("switch")).to_have_attribute("aria-checked", "true")

        olivia = visitor_page(browser, url, token(secret, "olivia", "Olivia Park"), LAPTOP)
        expect(olivia.locator(".subtitle")).to_have_text("Online now")
        james = visitor_page(browser, url, token(secret, "james", "James Wright"), PHONE)
        sofia = visitor_page(browser, url, token(secret, "sofia", "Sofia Garcia"), PHONE)

        say(olivia, "Hi! My order #10472 hasn't arrived yet. It's been 6 days.")
        reply(console, "Olivia Park", "Hi Olivia, sorry about the wait! Let me check the tracking.")
        say(olivia, "Thank you, I need the grinder for a gift on Saturday.")
        reply(
            console,
            "Olivia Park",
            "Good news: it is with the courier and arrives tomorrow before noon.\n"
            "Tracking: https://track.example.com/10472",
        )
        say(sofia, "Hello, do you ship to Spain?")
        say(sofia, "And how long does it take?")
        say(james, "Can I change the grind size on my subscription?")

        # Two more customers wait in the queue (Mia holds 3 at a time).
        queued = [
            visitor_page(browser, url, token(secret, "lena", "Lena Vogel"), PHONE),
            visitor_page(browser, url, token(secret, "omar", "Omar Haddad"), PHONE),
        ]
        expect(queued[1].locator(".card.queue")).to_contain_text("You are number 2 in line")
        say(queued[1], "My espresso machine shows error E4, what does it mean?", "waiting")

        console.locator("#chat-list li", has_text="Olivia Park").get_by_role("button").click()
        expect(console.locator("#queue-text")).to_have_text("Queue: 2 waiting")
        console.wait_for_timeout(3000)  # let the waiting times tick a little
        olivia.get_by_role("textbox", name="Message", exact=True).press_sequentially(
            "Perfect, thanks", delay=30
        )
        expect(console.locator(".pane:not([hidden]) .typing")).to_be_visible()
        console.screenshot(path=out / "console.png")

        console.locator("#chat-list li", has_text="Olivia Park").get_by_role("button").click()
        box = console.get_by_role("textbox", name="Reply to Olivia Park")
        box.press_sequentially("You're welcome", delay=30)
        expect(olivia.locator(".typing")).to_be_visible()
        olivia.screenshot(path=out / "widget-chat.png")
        box.fill("")

        queued[1].screenshot(path=out / "widget-queue-phone.png")

        reply(
            console, "James Wright", "Yes! Open Subscriptions, pick your plan and choose a grind."
        )
        console.get_by_role("button", name="Ask for rating").last.click()
        expect(james.get_by_role("group", name="Rate this chat")).to_be_visible()
        james.get_by_role("button", name="4 stars").hover()
        james.screenshot(path=out / "widget-rating-phone.png")

        phone = console_page(browser, url, token(secret, "noah", "Noah Kim", role="waiter"), PHONE)
        phone.get_by_role("switch", name="Ready for new customers").click()
        expect(phone.locator("#chat-list li")).to_have_count(2)
        expect(phone.locator("#queue-text")).to_have_text("Queue: 0 waiting")
        phone.wait_for_timeout(1500)
        phone.screenshot(path=out / "console-phone.png")
        phone.get_by_role("switch", name="Ready for new customers").click()  # Noah pauses
        expect(phone.get_by_role("switch")).to_have_attribute("aria-checked", "false")

        chinese(browser, url, secret, out)

        browser.close()
    for png in sorted(out.glob("*.png")):
        print(png.relative_to(REPO) if png.is_relative_to(REPO) else png)


def chinese(browser: Browser, url: str, secret: str, out: Path) -> None:
    """The same pages in browsers whose language is Simplified Chinese."""
    zh = "zh-CN"
    li = token(secret, "lina", "李娜", role="waiter")
    console = console_page(browser, url, li, DESKTOP, zh)
    console.get_by_role("switch", name="接待新顾客").click()
    expect(console.get_by_role("switch")).to_have_attribute("aria-checked", "true")

    wang = visitor_page(browser, url, token(secret, "wangfang", "王芳"), LAPTOP, zh)
    expect(wang.locator(".subtitle")).to_have_text("在线")
    chen = visitor_page(browser, url, token(secret, "chenwei", "陈伟"), PHONE, zh)
    liu = visitor_page(browser, url, token(secret, "liuyang", "刘洋"), PHONE, zh)

    say(wang, "您好，我上周买的磨豆机还没有发货，订单号 10472。")
    reply(console, "王芳", "您好！我帮您查一下物流信息，请稍等。")
    say(wang, "好的，谢谢！周六要送朋友的 🎁")
    reply(
        console,
        "王芳",
        "已经查到了：包裹今天交给快递，明天中午前送达。\n物流单号：https://track.example.com/10472",
    )
    say(chen, "请问可以开增值税发票吗？")
    say(liu, "订阅的咖啡豆可以换成中度烘焙吗？")
    say(liu, "下个月开始就行。")

    # Two more wait in the queue (Li Na holds 3 at a time).
    queued = [
        visitor_page(browser, url, token(secret, "zhaolei", "赵磊"), PHONE, zh),
        visitor_page(browser, url, token(secret, "sunli", "孙丽"), PHONE, zh),
    ]
    expect(queued[1].locator(".card.queue")).to_contain_text("您前面还有 1 位")
    say(queued[1], "咖啡机显示错误代码 E4，是什么意思？", "waiting")

    console.locator("#chat-list li", has_text="王芳").get_by_role("button").click()
    expect(console.locator("#queue-text")).to_have_text("排队中：2 人")
    console.wait_for_timeout(3000)  # let the waiting times tick a little
    wang.locator(".composer .input").press_sequentially("太好了，谢谢", delay=30)
    expect(console.locator(".pane:not([hidden]) .typing")).to_be_visible()
    console.screenshot(path=out / "console-zh.png")

    box = console.locator(".pane:not([hidden]) .composer .input")
    box.press_sequentially("不客气", delay=30)
    expect(wang.locator(".typing")).to_be_visible()
    wang.screenshot(path=out / "widget-zh.png")
    box.fill("")

    queued[1].screenshot(path=out / "widget-zh-queue-phone.png")

    console.set_viewport_size(PHONE)
    console.locator(".pane:not([hidden])").get_by_role("button", name="返回对话列表").click()
    reply(console, "刘洋", "可以的，已为您从下个月起换成中度烘焙。")
    expect(console.locator(".pane:not([hidden])")).to_be_visible()
    console.wait_for_timeout(500)
    console.screenshot(path=out / "console-zh-phone.png")


if __name__ == "__main__":
    main()
