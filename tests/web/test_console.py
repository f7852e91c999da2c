"""The waiter console: sign-in, kickout, attention, lists, history."""

from __future__ import annotations

import json
import re

import httpx
from playwright.sync_api import expect

from support.servers import run_kefu

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
    start_chat,
    visitor,
    waiter,
    widget_send,
)


def create_account(srv, username, *, role="waiter", password=None, nickname=None):
    args = ["users", "create", username, "--role", role]
    if password is not None:
        args += ["--password", password]
    if nickname is not None:
        args += ["--nickname", nickname]
    done = run_kefu(args, srv.env, srv.data_dir)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_login_endpoint(make_server):
    srv = make_server()
    profile = create_account(srv, "alice", password="s3cret pass", nickname="Alice A")
    create_account(srv, "nopass")
    with httpx.Client(base_url=srv.url, trust_env=False) as http:
        ok = http.post("/v1/auth/login", json={"username": "alice", "password": "s3cret pass"})
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["profile"] == {
            "id": profile["id"],
            "username": "alice",
            "nickname": "Alice A",
            "avatar": "",
        }
        assert body["role"] == "waiter"
        assert isinstance(body["token"], str) and body["token"].count(".") == 2
        assert ok.headers["cache-control"] == "no-store"

        for creds in (
            {"username": "alice", "password": "wrong"},
            {"username": "nobody", "password": "s3cret pass"},
            {"username": "nopass", "password": ""},
            {"username": "nopass", "password": "anything"},
        ):
            resp = http.post("/v1/auth/login", json=creds)
            if not creds["password"]:
                assert resp.status_code == 400, resp.text
                continue
            assert resp.status_code == 401, (creds, resp.text)
            assert resp.headers["content-type"].startswith("application/json")
            assert resp.json() == {
                "status": 999999,
                "message": "wrong username or password",
                "data": None,
            }

        json_type = {"Content-Type": "application/json"}
        bad = http.post("/v1/auth/login", content=b"not json", headers=json_type)
        assert bad.status_code == 400 and bad.json()["message"] == "the body must be JSON"
        missing = http.post("/v1/auth/login", json={"username": "alice"})
        assert missing.status_code == 400
        assert missing.json()["message"] == "username and password are required"
        assert http.get("/v1/auth/login").status_code == 405


def test_login_is_slowed_after_many_failures(make_server):
    srv = make_server()
    create_account(srv, "bob", password="right")
    with httpx.Client(base_url=srv.url, trust_env=False, timeout=30) as http:
        codes = [
            http.post("/v1/auth/login", json={"username": "bob", "password": f"w{i}"}).status_code
            for i in range(11)
        ]
        assert codes[:10] == [401] * 10 and codes[10] == 429, codes
        blocked = http.post("/v1/auth/login", json={"username": "bob", "password": "right"})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0


def test_sign_in_form_with_the_keyboard(make_server, new_page):
    srv = make_server()
    create_account(srv, "carol", password="correct horse", nickname="Carol Console")
    page = new_page("console")
    page.kefu_log.allow_console += ("status of 401",)  # the wrong password, on purpose
    page.goto(f"{srv.url}/console")
    expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("carol")
    page.keyboard.press("Tab")
    page.keyboard.type("wrong")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password")

    page.get_by_label("Password").fill("correct horse")
    page.get_by_label("Password").press("Enter")
    expect(page.locator("#conn-text")).to_have_text("Connected", timeout=STEP)
    expect(page.locator("#me")).to_contain_text("Carol Console")

    page.reload()  # the token is kept for the tab
    expect(page.locator("#conn-text")).to_have_text("Connected", timeout=STEP)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()


def test_a_user_account_cannot_use_the_console(make_server, new_page):
    srv = make_server()
    create_account(srv, "dave", role="user", password="pw")
    page = new_page("console")
    page.goto(f"{srv.url}/v1/ws/example/waiter")
    page.get_by_label("Username").fill("dave")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("This account is not an agent account.")


def test_kickout_shows_a_notice_and_does_not_reconnect(make_server, new_page):
    srv = make_server()
    w = waiter()
    first = open_console(new_page("first"), srv, w)
    second = open_console(new_page("second"), srv, w, ready=False)
    dialog = first.get_by_role("alertdialog")
    expect(dialog).to_be_visible(timeout=STEP)
    expect(dialog).to_contain_text("You signed in somewhere else")
    expect(first.get_by_role("button", name="Use this tab instead")).to_be_focused()
    expect(first.locator("#conn-text")).to_have_text("Signed in elsewhere")

    first.wait_for_timeout(3000)  # longer than any reconnect backoff step that could kick back
    expect(second.locator("#conn-text")).to_have_text("Connected")
    expect(second.get_by_role("alertdialog")).to_be_hidden()
    status = httpx.get(f"{srv.url}/v1/ws/status", trust_env=False).json()
    assert status["data"]["online_waiter_num"] == 1

    first.get_by_role("button", name="Use this tab instead").click()
    expect(first.locator("#conn-text")).to_have_text("Connected", timeout=STEP)
    expect(second.get_by_role("alertdialog")).to_be_visible(timeout=STEP)


HIDE = """() => {
    Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
    Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
    document.dispatchEvent(new Event('visibilitychange'));
}"""
SHOW = """() => {
    delete document.visibilityState;
    delete document.hidden;
    document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_title_flashes_while_the_tab_is_hidden(make_server, new_page):
    srv = make_server()
    w, v = waiter(), visitor("Hana Hidden")
    console = open_console(new_page("console"), srv, w)
    console.evaluate(HIDE)
    page = open_widget(new_page("visitor"), srv, v)
    expect_chatting(page, w)
    expect(console).to_have_title(re.compile("New customer: Hana Hidden"), timeout=STEP)
    widget_send(page, "anyone there?")
    expect(console).to_have_title(re.compile("Hana Hidden: anyone there\\?"), timeout=STEP)
    expect(conversation(console, v).locator(".unread")).to_have_text("1")
    console.evaluate(SHOW)
    expect(console).to_have_title("kefu console")
    expect(conversation(console, v).locator(".unread")).to_be_hidden()


def test_unread_counts_and_waiting_time(make_server, new_page):
    srv = make_server()
    w = waiter()
    a, b = visitor("Amy First"), visitor("Bo Second")
    console = open_console(new_page("console"), srv, w)
    pa = open_widget(new_page("a"), srv, a)
    expect_chatting(pa, w)
    pb = open_widget(new_page("b"), srv, b)
    expect_chatting(pb, w)
    select(console, a)

    widget_send(pb, "question one")
    widget_send(pb, "question two")
    item = conversation(console, b)
    expect(item.locator(".unread")).to_have_text("2", timeout=STEP)
    expect(item.locator(".item-wait")).to_have_text(re.compile(r"^waiting \d+:\d\d$"))
    expect(item.locator(".item-preview")).to_have_text("question two")
    expect(item.get_by_role("button")).to_have_attribute("aria-label", "Bo Second, 2 unread")

    select(console, b)
    expect(item.locator(".unread")).to_be_hidden()
    console_send(console, b, "answer")
    expect(item.locator(".item-wait")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(item.locator(".item-preview")).to_have_text("You: answer")
    expect(console.locator("#chat-count")).to_have_text("2")


def test_past_sessions_and_earlier_messages(make_server, new_page):
    _, w, v, console, page = start_chat(make_server, new_page, "Hal History")
    widget_send(page, "first visit question")
    console_send(console, v, "first visit answer")
    p = select(console, v)
    p.get_by_role("button", name="End chat").click()
    expect(page.locator(".card.ended")).to_be_visible(timeout=STEP)
    p.get_by_role("button", name="Close chat").click()
    expect(conversation(console, v)).to_have_count(0)

    # Past sessions: one entry for the visitor, with the latest message.
    console.get_by_role("tab", name="Past sessions").click()
    past = console.locator("#past-list li", has_text="Hal History")
    expect(past).to_have_count(1, timeout=STEP)
    expect(past).to_contain_text("first visit answer")
    past.get_by_role("button").click()
    view = console.locator("section.history-view")
    expect(view).to_be_visible()
    expect(bubbles(view, "first visit question")).to_have_count(1, timeout=STEP)
    expect(bubbles(view, "first visit answer")).to_have_count(1)
    view.get_by_role("button", name="Close").click()

    # A second visit: the new pane starts empty; "Earlier messages" brings the first visit.
    console.get_by_role("tab", name="Chats").click()
    page.get_by_role("button", name="Start a new chat").click()
    expect_chatting(page, w)
    widget_send(page, "second visit")
    p = select(console, v)
    expect(bubbles(p, "second visit")).to_have_count(1, timeout=STEP)
    expect(bubbles(p, "first visit question")).to_have_count(0)
    p.get_by_role("button", name="Earlier messages").click()
    expect(bubbles(p, "first visit question")).to_have_count(1, timeout=STEP)
    expect(bubbles(p, "second visit")).to_have_count(1)
    log = p.locator(".log").inner_text()
    assert (
        log.index("first visit question")
        < log.index("first visit answer")
        < log.index("second visit")
    )
    expect(pane(console, v)).to_be_visible()
