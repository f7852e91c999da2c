"""Both pages at 360 px and on a desktop, with the keyboard, with labelled controls."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .helpers import (
    STEP,
    bubbles,
    console_send,
    conversation,
    expect_chatting,
    open_console,
    open_widget,
    pane,
    visitor,
    waiter,
    widget_input,
    widget_send,
)

PHONE = (360, 740)
DESKTOP = (1440, 900)

# Every visible button, field and switch, in the page and in the widget's shadow
# root, with no accessible name.
UNLABELLED = """() => {
    const roots = [document];
    for (const el of document.querySelectorAll('*')) if (el.shadowRoot) roots.push(el.shadowRoot);
    const bad = [];
    for (const root of roots) {
        const controls = 'button, input, textarea, select, [role=switch], [role=tab]';
        for (const el of root.querySelectorAll(controls)) {
            if (!el.getClientRects().length) continue;
            const by = (el.getAttribute('aria-labelledby') || '').split(' ').filter(Boolean)
                .map(id => (root.getElementById ? root : document).getElementById(id))
                .filter(Boolean).map(n => n.textContent).join(' ');
            const label = el.labels && el.labels.length ? el.labels[0].textContent : '';
            const own = el.getAttribute('aria-label') || by || label || el.textContent || '';
            const name = own.trim();
            if (!name) bad.push(el.outerHTML.slice(0, 120));
        }
    }
    return bad;
}"""

NO_SIDEWAYS_SCROLL = "() => document.scrollingElement.scrollWidth <= window.innerWidth"


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["360px", "desktop"])
def test_widget_layout_and_labels(make_server, new_page, size):
    srv = make_server()
    w, v = waiter(), visitor()
    console = open_console(new_page("console"), srv, w)
    page = open_widget(new_page("visitor", viewport=size), srv, v)
    expect_chatting(page, w)
    widget_send(page, "a" * 300)  # one long word must wrap, not widen the panel
    console_send(console, v, "short answer")
    expect(bubbles(page, "short answer")).to_be_visible(timeout=STEP)

    panel = page.locator(".panel").bounding_box()
    assert panel is not None
    if size == PHONE:
        assert panel["width"] == PHONE[0] and panel["height"] == PHONE[1], panel
        expect(page.locator(".launcher")).to_be_hidden()  # the panel has its own close
    else:
        assert panel["width"] <= 400 and panel["x"] + panel["width"] <= size[0], panel
    log = page.locator(".log")
    assert log.evaluate("el => el.scrollWidth <= el.clientWidth")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    assert page.evaluate(UNLABELLED) == []


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["360px", "desktop"])
def test_console_layout_and_labels(make_server, new_page, size):
    srv = make_server()
    w, v = waiter(), visitor("Phil Phone")
    console = open_console(new_page("console", viewport=size), srv, w)
    page = open_widget(new_page("visitor"), srv, v)
    expect_chatting(page, w)
    widget_send(page, "b" * 300)
    item = conversation(console, v)
    p = pane(console, v)
    if size == PHONE:
        expect(item).to_be_visible()
        expect(p).to_be_hidden()  # the list first; a conversation opens full screen
        item.get_by_role("button").click()
        expect(p).to_be_visible()
        expect(console.locator(".sidebar")).to_be_hidden()
        assert p.bounding_box()["width"] == PHONE[0]
    else:
        expect(item).to_be_visible()
        expect(p).to_be_visible()  # the first conversation opens by itself
    expect(bubbles(p, "b" * 300)).to_be_visible(timeout=STEP)
    assert p.locator(".log").evaluate("el => el.scrollWidth <= el.clientWidth")
    assert console.evaluate(NO_SIDEWAYS_SCROLL)
    assert console.evaluate(UNLABELLED) == []
    for name in ("Earlier messages", "Ask for rating", "End chat", "Send an image link"):
        expect(p.get_by_role("button", name=name)).to_be_visible()
    if size == PHONE:
        p.get_by_role("button", name="Back to conversations").click()
        expect(item).to_be_visible()
        expect(item.get_by_role("button")).to_be_focused()


def test_widget_with_the_keyboard_only(make_server, new_page):
    srv = make_server()
    w, v = waiter(), visitor()
    console = open_console(new_page("console"), srv, w)
    page = open_widget(new_page("visitor"), srv, v, open_panel=False)
    launcher = page.locator(".launcher")
    launcher.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".panel")).to_be_visible()
    expect(widget_input(page)).to_be_focused()
    expect_chatting(page, w)
    page.keyboard.type("typed with keys")
    page.keyboard.press("Enter")
    expect(bubbles(pane(console, v), "typed with keys")).to_be_visible(timeout=STEP)

    # Shift+Tab reaches the image button; Enter opens its form with focus in the field.
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Send an image link")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("textbox", name="Image URL")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("textbox", name="Image URL")).to_be_hidden()
    expect(page.get_by_role("button", name="Send an image link")).to_be_focused()

    page.keyboard.press("Escape")
    expect(page.locator(".panel")).to_be_hidden()
    expect(launcher).to_be_focused()


def test_console_with_the_keyboard_only(make_server, new_page):
    srv = make_server()
    w, v = waiter(), visitor("Kim Keys")
    console = open_console(new_page("console"), srv, w, ready=False)
    switch = console.get_by_role("switch", name="Ready for new customers")
    switch.focus()
    console.keyboard.press("Space")
    expect(switch).to_have_attribute("aria-checked", "true", timeout=STEP)
    page = open_widget(new_page("visitor"), srv, v)
    expect_chatting(page, w)
    item = conversation(console, v).get_by_role("button")
    item.focus()
    console.keyboard.press("Enter")
    box = pane(console, v).get_by_role("textbox", name="Reply to Kim Keys")
    expect(box).to_be_focused()
    console.keyboard.type("hello from the keyboard")
    console.keyboard.press("Enter")
    expect(bubbles(page, "hello from the keyboard")).to_be_visible(timeout=STEP)

    tabs = console.get_by_role("tab", name="Chats")
    tabs.focus()
    console.keyboard.press("ArrowRight")
    expect(console.get_by_role("tab", name="Past sessions")).to_be_focused()
    expect(console.get_by_role("tab", name="Past sessions")).to_have_attribute(
        "aria-selected", "true"
    )
