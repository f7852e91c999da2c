"""Steps the browser tests share: open the console or the widget as someone, find things."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Locator, Page, expect

from support.client import Person, person
from support.servers import Server

# Waits for things that cross two sockets and a database commit.
STEP = 10_000
# Waits that include a server restart and the clients' backoff.
RECOVER = 30_000


def waiter(nickname: str = "Wendy Waiter") -> Person:
    return person("waiter", nickname=nickname, avatar="")


def visitor(nickname: str = "Victor Visitor") -> Person:
    return person("user", nickname=nickname, avatar="")


# ---------------------------------------------------------------- the console


def open_console(page: Page, srv: Server, who: Person, *, ready: bool = True) -> Page:
    page.goto(f"{srv.url}/v1/ws/example/waiter#token={who.token()}")
    expect(page.locator("#conn-text")).to_have_text("Connected", timeout=STEP)
    expect(page.locator("#me")).to_contain_text(who.nickname or who.username)
    if ready:
        set_ready(page, True)
    return page


def set_ready(page: Page, on: bool) -> None:
    switch = page.get_by_role("switch", name="Ready for new customers")
    if switch.get_attribute("aria-checked") != str(on).lower():
        switch.click()
    expect(switch).to_have_attribute("aria-checked", str(on).lower(), timeout=STEP)


def conversation(page: Page, who: Person) -> Locator:
    """The list entry of `who`'s conversation in the console."""
    return page.locator("#chat-list li", has_text=who.nickname or who.username)


def pane(page: Page, who: Person) -> Locator:
    """The console's chat pane of `who` (shown or not)."""
    return page.locator(f"section.pane[data-user='{who.id}']")


def select(page: Page, who: Person) -> Locator:
    conversation(page, who).get_by_role("button").click()
    p = pane(page, who)
    expect(p).to_be_visible()
    return p


def console_send(page: Page, who: Person, text: str) -> None:
    p = select(page, who)
    box = p.get_by_role("textbox", name=re.compile("^Reply to"))
    box.fill(text)
    box.press("Enter")
    expect(p.locator(".msg.mine", has_text=text).last).to_have_attribute(
        "data-state", "sent", timeout=STEP
    )


# ---------------------------------------------------------------- the widget


def open_widget(page: Page, srv: Server, who: Person, *, open_panel: bool = True) -> Page:
    page.goto(f"{srv.url}/v1/ws/example/user#token={who.token()}")
    launcher = page.locator(".launcher")
    expect(launcher).to_be_visible(timeout=STEP)
    if open_panel:
        launcher.click()
        expect(page.locator(".panel")).to_be_visible()
    return page


def widget_input(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Message", exact=True)


def widget_send(page: Page, text: str, *, wait_sent: bool = True) -> None:
    box = widget_input(page)
    box.fill(text)
    box.press("Enter")
    if wait_sent:
        expect(page.locator(".msg.mine", has_text=text).last).to_have_attribute(
            "data-state", "sent", timeout=STEP
        )


def expect_chatting(page: Page, waiter_person: Person) -> None:
    """The widget shows a live conversation with `waiter_person`."""
    name = waiter_person.nickname or waiter_person.username
    expect(page.locator(".head .title")).to_have_text(name, timeout=STEP)
    expect(page.locator(".subtitle")).to_have_text("Online now", timeout=STEP)


def bubbles(scope: Page | Locator, text: str) -> Locator:
    return scope.locator(".msg .bubble", has_text=text)


# ---------------------------------------------------------------- both


def start_chat(
    make_server: Callable[..., Server],
    new_page: Callable[..., Page],
    visitor_name: str = "Victor Visitor",
    **settings: Any,
) -> tuple[Server, Person, Person, Page, Page]:
    """A fresh server, a ready waiter in the console and a visitor chatting with them in
    the widget: (server, waiter, visitor, console page, widget page)."""
    srv = make_server(**settings)
    w, v = waiter(), visitor(visitor_name)
    console = open_console(new_page("console"), srv, w)
    page = open_widget(new_page("visitor"), srv, v)
    expect_chatting(page, w)
    return srv, w, v, console, page


def evaluate(page: Page, script: str, arg: Any = None) -> Any:
    return page.evaluate(script, arg)
