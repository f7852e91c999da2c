"""[ext] `typing` and `read`, end to end through the server (protocol 4.2, 5.2)."""

from __future__ import annotations

from playwright.sync_api import expect

from .helpers import (
    STEP,
    console_send,
    expect_chatting,
    open_console,
    open_widget,
    pane,
    select,
    start_chat,
    visitor,
    waiter,
    widget_input,
    widget_send,
)


def test_typing_indicator_both_ways(make_server, new_page):
    _, _, v, console, page = start_chat(make_server, new_page, "Tom Typer")
    p = select(console, v)

    widget_input(page).press_sequentially("Where is my", delay=20)
    expect(p.locator(".typing")).to_have_text("Tom Typer is typing…", timeout=STEP)
    expect(console.locator("#chat-list li.is-typing")).to_have_count(1)
    # Sending ends the indicator on the other side.
    widget_input(page).press("Enter")
    expect(p.locator(".typing")).to_be_hidden(timeout=STEP)

    box = p.get_by_role("textbox", name="Reply to Tom Typer")
    box.press_sequentially("Let me check", delay=20)
    expect(page.locator(".typing")).to_have_text("Wendy Waiter is typing…", timeout=STEP)
    box.press("Enter")
    expect(page.locator(".typing")).to_be_hidden(timeout=STEP)


def test_read_receipts_both_ways(make_server, new_page):
    srv = make_server()
    w, v = waiter(), visitor("Rea Reader")
    console = open_console(new_page("console"), srv, w)
    page = open_widget(new_page("visitor"), srv, v, open_panel=False)
    expect(page.locator(".launcher")).to_be_visible()
    page.locator(".launcher").click()
    expect_chatting(page, w)

    # The visitor's panel is closed: no read receipt until it is opened.
    page.get_by_role("button", name="Minimize chat").click()
    console_send(console, v, "Your parcel left today")
    mine = pane(console, v).locator(".msg.mine", has_text="Your parcel left today")
    expect(page.locator(".badge")).to_have_text("1", timeout=STEP)
    page.wait_for_timeout(300)
    expect(mine.locator(".state")).to_have_text("")
    page.locator(".launcher").click()
    expect(mine.locator(".state")).to_have_text("Seen", timeout=STEP)

    # The waiter reads the visitor's message as soon as it arrives in the open pane.
    widget_send(page, "Great, thanks")
    seen = page.locator(".msg.mine", has_text="Great, thanks").locator(".state")
    expect(seen).to_have_text("Seen", timeout=STEP)
