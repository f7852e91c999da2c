"""The waiter asks for a rating; the visitor gives 1-5 stars; both see the result."""

from __future__ import annotations

from playwright.sync_api import expect

from .helpers import (
    STEP,
    conversation,
    pane,
    select,
    start_chat,
)


def test_rating_round_trip(make_server, new_page):
    _, _, v, console, page = start_chat(make_server, new_page, "Rita Rater")

    p = select(console, v)
    p.get_by_role("button", name="Ask for rating").click()
    expect(p.locator(".notice", has_text="You asked Rita Rater to rate this chat.")).to_be_visible(
        timeout=STEP
    )

    card = page.get_by_role("group", name="Rate this chat")
    expect(card).to_contain_text(
        "Wendy Waiter would like to know: how was this chat?", timeout=STEP
    )
    stars = card.get_by_role("button")
    expect(stars).to_have_count(5)
    card.get_by_role("button", name="4 stars").click()

    expect(
        page.locator(".notice", has_text="Thank you! You rated this chat 4 out of 5.")
    ).to_be_visible(timeout=STEP)
    expect(page.locator(".card.ended")).to_be_visible()
    expect(page.locator(".card.rating")).to_have_count(0)  # not offered twice

    expect(p.locator(".notice.rating")).to_have_text(
        "Rita Rater rated this chat ★★★★☆ (4/5).", timeout=STEP
    )
    expect(
        p.locator(".notice", has_text="The chat ended with the customer's rating.")
    ).to_be_visible()
    expect(conversation(console, v)).to_contain_text("Ended · rated 4/5")
    expect(pane(console, v).get_by_role("button", name="Ask for rating")).to_be_disabled()


def test_rating_offered_after_the_waiter_ends_the_chat(make_server, new_page):
    _, _, v, console, page = start_chat(make_server, new_page, "Rob Later")
    select(console, v).get_by_role("button", name="End chat").click()
    card = page.get_by_role("group", name="Rate this chat")
    expect(card).to_be_visible(timeout=STEP)
    card.get_by_role("button", name="5 stars").click()
    expect(page.locator(".notice", has_text="You rated this chat 5 out of 5.")).to_be_visible(
        timeout=STEP
    )
