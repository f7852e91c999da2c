"""A visitor (the widget) and a waiter (the console) in two browser contexts."""

from __future__ import annotations

import re

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
    select,
    set_ready,
    start_chat,
    visitor,
    waiter,
    widget_input,
    widget_send,
)


def test_visitor_and_waiter_chat_both_ways(make_server, new_page):
    srv, _, v, console, page = start_chat(make_server, new_page)

    expect(page.locator(".head .avatar")).to_have_text("WW")  # initials when no avatar URL
    expect(
        page.locator(".notice", has_text="You are now chatting with Wendy Waiter")
    ).to_be_visible()
    expect(conversation(console, v)).to_be_visible()
    expect(console.locator("#chat-count")).to_have_text("1")

    widget_send(page, "Hello, my order is late")
    p = pane(console, v)
    expect(bubbles(p, "Hello, my order is late")).to_have_count(1, timeout=STEP)
    expect(p.locator(".msg.theirs time").last).to_have_text(re.compile(r"^\d{1,2}:\d{2}"))

    console_send(console, v, "Sorry to hear that!\nWhich order is it?")
    expect(bubbles(page, "Sorry to hear that!")).to_have_count(1, timeout=STEP)
    expect(page.locator(".msg.theirs .bubble").last).to_have_text(
        "Sorry to hear that!\nWhich order is it?"
    )
    expect(page.locator(".msg.theirs time").last).to_have_text(re.compile(r"^\d{1,2}:\d{2}"))

    # An image link from the visitor, shown inline in the console.
    img = f"{srv.url}/static/img/favicon.svg?from=visitor"
    page.get_by_role("button", name="Send an image link").click()
    url_box = page.get_by_role("textbox", name="Image URL")
    url_box.fill(img)
    url_box.press("Enter")
    expect(p.locator(f".bubble img[src='{img}']")).to_be_visible(timeout=STEP)
    expect(page.locator(f".msg.mine .bubble img[src='{img}']")).to_be_visible()

    # And one from the waiter.
    img2 = f"{srv.url}/static/img/favicon.svg?from=waiter"
    p.get_by_role("button", name="Send an image link").click()
    p.get_by_role("textbox", name="Image URL").fill(img2)
    p.get_by_role("button", name="Send image").click()
    expect(page.locator(f".msg.theirs .bubble img[src='{img2}']")).to_be_visible(timeout=STEP)

    # Order on both sides is the order sent, nothing twice.
    texts = ["Hello, my order is late", "Sorry to hear that!"]
    for side in (page, p):
        log = side.locator(".log").first.inner_text()
        assert log.index(texts[0]) < log.index(texts[1]), log
        for text in texts:
            expect(bubbles(side, text)).to_have_count(1)


def test_image_form_accepts_only_http_links(make_server, new_page):
    _, _, _, _, page = start_chat(make_server, new_page)
    page.get_by_role("button", name="Send an image link").click()
    box = page.get_by_role("textbox", name="Image URL")
    for bad in ("javascript:alert(1)", "data:image/png;base64,AAAA", "ftp://example.com/x.png"):
        box.fill(bad)
        box.press("Enter")
        expect(page.get_by_role("alert")).to_have_text(
            "Enter a link that starts with http:// or https://"
        )
    expect(page.locator(".msg")).to_have_count(0)


def test_queue_place_and_the_next_visitor_is_taken(make_server, new_page):
    srv = make_server(max_users_per_waiter=1)
    w = waiter()
    ann, ben, cat = visitor("Ann Archer"), visitor("Ben Baker"), visitor("Cat Cooper")
    console = open_console(new_page("console"), srv, w)

    pa = open_widget(new_page("ann"), srv, ann)
    expect_chatting(pa, w)
    pb = open_widget(new_page("ben"), srv, ben)
    expect(pb.locator(".card.queue")).to_contain_text("You are number 1 in line", timeout=STEP)
    expect(pb.locator(".subtitle")).to_have_text("Waiting for an agent")
    pc = open_widget(new_page("cat"), srv, cat)
    expect(pc.locator(".card.queue")).to_contain_text("You are number 2 in line", timeout=STEP)
    # The console polls /v1/ws/status for the queue length.
    expect(console.locator("#queue-text")).to_have_text("Queue: 2 waiting", timeout=STEP)

    # Ben writes while he waits: held back, sent once he has an agent.
    widget_send(pb, "Written while waiting", wait_sent=False)
    waiting = pb.locator(".msg.mine", has_text="Written while waiting")
    expect(waiting).to_have_attribute("data-state", "waiting")

    # The waiter ends Ann's chat; Ben is taken, Cat moves up.
    p = select(console, ann)
    p.get_by_role("button", name="End chat").click()
    expect(p.locator(".notice", has_text="You ended the chat.")).to_be_visible(timeout=STEP)
    expect(pa.locator(".card.ended")).to_contain_text("This chat has ended", timeout=STEP)
    expect(pa.locator(".notice", has_text="The chat has ended.")).to_be_visible()
    expect_chatting(pb, w)
    expect(pc.locator(".card.queue")).to_contain_text("You are number 1 in line", timeout=STEP)
    expect(conversation(console, ben)).to_be_visible()
    expect(bubbles(pane(console, ben), "Written while waiting")).to_have_count(1, timeout=STEP)
    expect(waiting).to_have_attribute("data-state", "sent")
    expect(console.locator("#queue-text")).to_have_text("Queue: 1 waiting", timeout=STEP)

    # The ended chat stays readable until the waiter closes it.
    expect(p.get_by_role("textbox", name=re.compile("^Reply to"))).to_be_disabled()
    p.get_by_role("button", name="Close chat").click()
    expect(conversation(console, ann)).to_have_count(0)


def test_paused_waiter_takes_nobody_until_ready(make_server, new_page):
    srv = make_server()
    w, v = waiter(), visitor()
    console = open_console(new_page("console"), srv, w, ready=False)
    expect(console.get_by_role("switch")).to_have_text("Paused")
    page = open_widget(new_page("visitor"), srv, v)
    expect(page.locator(".card.queue")).to_contain_text("You are number 1 in line", timeout=STEP)
    expect(console.locator("#queue-text")).to_have_text("Queue: 1 waiting", timeout=STEP)
    set_ready(console, True)
    expect(console.get_by_role("switch")).to_have_text("Ready")
    expect_chatting(page, w)
    expect(conversation(console, v)).to_be_visible()


def test_visitor_ends_the_chat_and_can_start_again(make_server, new_page):
    _, w, v, console, page = start_chat(make_server, new_page, "Val Vance")
    page.locator(".head").get_by_role("button", name="End chat").click()
    expect(page.locator(".card.ended")).to_be_visible(timeout=STEP)
    expect(page.locator(".card.rating")).to_be_visible()  # offered after a chat
    p = pane(console, v)
    expect(p.locator(".notice", has_text="Val Vance left the chat.")).to_be_visible(timeout=STEP)
    expect(conversation(console, v)).to_contain_text("Ended")

    page.get_by_role("button", name="Start a new chat").click()
    expect_chatting(page, w)
    expect(p.locator(".notice", has_text="Val Vance joined the chat.")).to_have_count(2)
    expect(p.get_by_role("textbox", name=re.compile("^Reply to"))).to_be_enabled()


def test_unread_badge_while_the_panel_is_closed(make_server, new_page):
    _, _, v, console, page = start_chat(make_server, new_page)
    page.get_by_role("button", name="Minimize chat").click()
    expect(page.locator(".panel")).to_be_hidden()
    launcher = page.locator(".launcher")
    expect(launcher).to_be_focused()

    console_send(console, v, "First answer")
    console_send(console, v, "Second answer")
    expect(page.locator(".badge")).to_have_text("2", timeout=STEP)
    expect(launcher).to_have_attribute("aria-label", "Open chat, 2 unread messages")

    launcher.click()
    expect(page.locator(".badge")).to_be_hidden()
    expect(bubbles(page, "Second answer")).to_be_visible()
    expect(widget_input(page)).to_be_focused()
