"""Protocol section 10 from the browser: both pages come back by themselves after the
server goes away, and the conversation goes on with nothing lost and nothing twice."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .helpers import (
    RECOVER,
    STEP,
    bubbles,
    console_send,
    conversation,
    expect_chatting,
    open_widget,
    pane,
    select,
    start_chat,
    visitor,
    widget_send,
)


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_pages_reconnect_and_resume_after_the_server_goes_away(make_server, new_page, how):
    srv, w, v, console, page = start_chat(make_server, new_page, "Rene Resume", resume_grace=30)
    widget_send(page, "one: before")
    console_send(console, v, "two: answer before")
    expect(bubbles(page, "two: answer before")).to_have_count(1, timeout=STEP)

    if how == "restart":
        srv.stop()  # SIGTERM: sockets are closed with 1012
    else:
        srv.kill()  # SIGKILL: sockets just drop
    expect(page.locator(".subtitle")).to_have_text("Reconnecting…", timeout=STEP)
    expect(console.locator("#conn-text")).not_to_have_text("Connected", timeout=STEP)

    # Written while the server is down: kept in the outbox, sent after the resume.
    widget_send(page, "three: visitor offline", wait_sent=False)
    p = select(console, v)
    box = p.get_by_role("textbox", name=re.compile("^Reply to"))
    box.fill("four: waiter offline")
    box.press("Enter")

    srv.start()
    expect(console.locator("#conn-text")).to_have_text("Connected", timeout=RECOVER)
    expect_chatting(page, w)
    for side, text in ((page, "three: visitor offline"), (p, "four: waiter offline")):
        expect(side.locator(".msg.mine", has_text=text)).to_have_attribute(
            "data-state", "sent", timeout=RECOVER
        )
    expect(bubbles(p, "three: visitor offline")).to_have_count(1, timeout=RECOVER)
    expect(bubbles(page, "four: waiter offline")).to_have_count(1, timeout=RECOVER)

    # The conversation goes on.
    console_send(console, v, "five: answer after")
    expect(bubbles(page, "five: answer after")).to_have_count(1, timeout=STEP)
    widget_send(page, "six: visitor after")
    expect(bubbles(p, "six: visitor after")).to_have_count(1, timeout=STEP)
    expect(console.get_by_role("switch")).to_have_attribute("aria-checked", "true")

    # Nothing lost, nothing twice, in order, on both sides.
    texts = [
        "one: before",
        "two: answer before",
        "three: visitor offline",
        "four: waiter offline",
        "five: answer after",
        "six: visitor after",
    ]
    for side in (page.locator(".log"), p.locator(".log")):
        got = [t for t in side.locator(".bubble").all_inner_texts() if t in texts]
        assert sorted(got, key=texts.index) == texts, got
        assert len(got) == len(texts), got
    expect(conversation(console, v)).to_have_count(1)
    expect(pane(console, v).locator(".notice", has_text="ended")).to_have_count(0)

    # Still ready after the restart: a new visitor is taken at once.
    other = visitor("Nora New")
    page2 = open_widget(new_page("visitor2"), srv, other)
    expect_chatting(page2, w)


def test_console_holds_a_chat_whose_visitor_comes_back_late(make_server, new_page):
    """After a restart the server announces a customer only when it is back; the
    console keeps the chat ("reconnecting") and its replies until then."""
    srv, w, v, console, page = start_chat(make_server, new_page, "Lou Late", resume_grace=30)
    widget_send(page, "hello before")

    page.context.set_offline(True)  # the visitor's network is down for a while
    srv.restart()
    expect(console.locator("#conn-text")).to_have_text("Connected", timeout=RECOVER)
    p = select(console, v)
    notice = p.locator(".notice", has_text="Waiting for Lou Late to reconnect…")
    expect(notice).to_be_visible(timeout=STEP)
    expect(p.locator(".pane-sub")).to_contain_text("reconnecting…")
    box = p.get_by_role("textbox", name=re.compile("^Reply to"))
    box.fill("are you still there?")
    box.press("Enter")
    held = p.locator(".msg.mine", has_text="are you still there?")
    expect(held).to_have_attribute("data-state", "waiting")

    page.context.set_offline(False)
    expect_chatting(page, w)
    expect(p.locator(".notice", has_text="Lou Late is back online.")).to_be_visible(timeout=RECOVER)
    expect(held).to_have_attribute("data-state", "sent", timeout=STEP)
    expect(bubbles(page, "are you still there?")).to_have_count(1, timeout=STEP)
    expect(bubbles(page, "hello before")).to_have_count(1)
    expect(p.locator(".notice", has_text="ended")).to_have_count(0)
