"""`/v1/api/conversations`: list conversations (and the queue), show one, read its messages.

A conversation is made when a waiter takes a user from the queue, so a
queued user has none yet: the list shows queue entries as items with
`state: "queued"` and `id: null`, in queue order, before the conversations
(newest first). `GET /conversations/{id}/messages` pages a transcript as
JSON, or streams the whole of it as CSV (`Accept: text/csv`, `transcript.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

from kefu import transcript
from kefu.core.model import Profile
from kefu.instants import HELP as INSTANT_HELP
from kefu.instants import BadInstant, parse_instant
from kefu.server.api.auth import Reader
from kefu.server.api.context import Ctx
from kefu.server.api.errors import ApiError, bad_input, not_found
from kefu.server.api.pages import Page, PageQuery, decode_cursor, encode_cursor, paginate
from kefu.server.api.values import timestamp
from kefu.store.base import Store
from kefu.store.records import (
    ConversationFilter,
    ConversationRecord,
    ConversationState,
    MessageRecord,
    QueuedRecord,
)
from kefu.store.tables import to_us

router = APIRouter(prefix="/conversations", tags=["conversations"])

CSV_TYPE = "text/csv"
ConversationId = Annotated[
    str, Path(min_length=1, max_length=64, description="The conversation's id")
]


class ProfileOut(BaseModel):
    id: str
    username: str
    nickname: str | None
    avatar: str

    @classmethod
    def of(cls, p: Profile) -> ProfileOut:
        return cls(id=p.id, username=p.username, nickname=p.nickname, avatar=p.avatar)


class ConversationOut(BaseModel):
    """A conversation, or a queued user (`state: "queued"`, `id: null`, no waiter yet)."""

    id: str | None
    state: ConversationState
    user: ProfileOut
    waiter: ProfileOut | None
    queued_at: str | None = Field(description="When the user arrived in the queue (RFC 3339)")
    assigned_at: str | None = Field(description="When a waiter took the user: the opening")
    closed_at: str | None
    close_reason: str | None = Field(
        description="How it ended: user_left, user_gone, user_idle, waiter_ended, "
        "waiter_gone, transferred, rated"
    )
    rating: int | None = Field(description="1 to 5, if the user rated it")

    @classmethod
    def of(cls, c: ConversationRecord) -> ConversationOut:
        return cls(
            id=c.id,
            state=c.state,
            user=ProfileOut.of(c.user),
            waiter=ProfileOut.of(c.waiter),
            queued_at=timestamp(c.queued_at),
            assigned_at=timestamp(c.opened_at),
            closed_at=timestamp(c.closed_at),
            close_reason=c.close_reason,
            rating=c.rate,
        )

    @classmethod
    def queued(cls, q: QueuedRecord) -> ConversationOut:
        return cls(
            id=None,
            state=ConversationState.QUEUED,
            user=ProfileOut.of(q.user),
            waiter=None,
            queued_at=timestamp(q.queued_at),
            assigned_at=None,
            closed_at=None,
            close_reason=None,
            rating=None,
        )


class ConversationDetail(ConversationOut):
    message_count: int


class MessageOut(BaseModel):
    id: str
    date: str = Field(description="When it was stored (RFC 3339, UTC)")
    type: str = Field(description="message_text or message_image")
    sender: ProfileOut
    receiver_id: str
    text: str | None = Field(description="A message_text's text")
    image: str | None = Field(description="A message_image's URL")
    erased: bool = Field(description="Its sender was erased: the content is gone")

    @classmethod
    def of(cls, m: MessageRecord) -> MessageOut:
        payload: dict[str, Any] = m.payload if isinstance(m.payload, dict) else {}
        text, image = payload.get("text"), payload.get("image")
        return cls(
            id=m.id,
            date=timestamp(m.created) or "",
            type=m.type,
            sender=ProfileOut.of(m.sender),
            receiver_id=m.receiver_id,
            text=text if isinstance(text, str) else None,
            image=image if isinstance(image, str) else None,
            erased=payload.get("erased") is True,
        )


# -- the list ------------------------------------------------------------------------------
def instant(value: str | None, name: str) -> float | None:
    """A `since` / `until` parameter in Unix seconds; 422 if it is neither accepted form."""
    if value is None:
        return None
    try:
        return parse_instant(value)
    except BadInstant as exc:
        raise bad_input(f"{name}: {exc}") from None


def conversation_filter(
    state: Annotated[
        ConversationState | None,
        Query(description="queued, open or closed; all of them if left out"),
    ] = None,
    user_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    waiter_id: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Leaves out the queue")
    ] = None,
    since: Annotated[
        str | None,
        Query(
            max_length=64,
            description=f"Opened (queued: arrived) at or after this time: {INSTANT_HELP}",
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            max_length=64, description=f"Opened (queued: arrived) before this time: {INSTANT_HELP}"
        ),
    ] = None,
) -> ConversationFilter:
    where = ConversationFilter(
        state, user_id, waiter_id, instant(since, "since"), instant(until, "until")
    )
    if where.since is not None and where.until is not None and where.since >= where.until:
        raise bad_input("since must be before until")
    return where


Filter = Annotated[ConversationFilter, Depends(conversation_filter)]
QUEUE, CONVERSATIONS = "q", "c"


def _position(cursor: str | None) -> tuple[str, tuple[int, Any] | None]:
    """Where a page starts: (QUEUE, (queued_at µs, seq)) or (CONVERSATIONS, (opened µs, id))."""
    if cursor is None:
        return QUEUE, None
    try:
        phase, at, seq = decode_cursor(cursor, str, int, int)
        if phase == QUEUE:
            return QUEUE, (int(at), seq)
    except ApiError:
        pass
    phase, at, cid = decode_cursor(cursor, str, int, str)
    if phase != CONVERSATIONS:
        raise bad_input("invalid cursor")
    return CONVERSATIONS, None if cid == "" else (int(at), cid)


@router.get(
    "",
    summary="Conversations and queued users",
    description="Queued users first, in queue order (state `queued`, `id` null), then "
    "conversations newest first by opening time.",
)
async def list_conversations(
    caller: Reader, ctx: Ctx, page: PageQuery, where: Filter
) -> Page[ConversationOut]:
    phase, after = _position(page.cursor)
    items: list[ConversationOut] = []
    store = ctx.store
    if phase == QUEUE:
        if where.state in (None, ConversationState.QUEUED):
            rows = await store.list_queued(where, after, page.limit + 1)
            shown = rows[: page.limit]
            items += [ConversationOut.queued(r) for r in shown]
            if len(rows) > page.limit:
                last = shown[-1]
                cursor = encode_cursor((QUEUE, to_us(last.queued_at), last.seq))
                return Page(items=items, next=cursor)
        if where.state == ConversationState.QUEUED:
            return Page(items=items)
        phase, after = CONVERSATIONS, None
    room = page.limit - len(items)
    rows_c = await store.list_conversations(where, after, room + 1)
    shown_c = rows_c[:room]
    items += [ConversationOut.of(c) for c in shown_c]
    if len(rows_c) <= room:
        return Page(items=items)
    if not shown_c:  # the page was full of queued users; the conversations come next
        return Page(items=items, next=encode_cursor((CONVERSATIONS, 0, "")))
    last_c = shown_c[-1]
    cursor = encode_cursor((CONVERSATIONS, to_us(last_c.opened_at), last_c.id))
    return Page(items=items, next=cursor)


# -- one conversation ----------------------------------------------------------------------
async def _conversation(store: Store, conversation_id: str) -> ConversationRecord:
    found = await store.get_conversation(conversation_id)
    if found is None:
        raise not_found(f"no conversation {conversation_id}")
    return found


@router.get("/{conversation_id}", summary="One conversation")
async def show_conversation(
    caller: Reader, ctx: Ctx, conversation_id: ConversationId
) -> ConversationDetail:
    c = await _conversation(ctx.store, conversation_id)
    return ConversationDetail(**ConversationOut.of(c).model_dump(), message_count=c.messages or 0)


# -- its messages ----------------------------------------------------------------------------
def wants_csv(accept: str | None) -> bool:
    """True if `Accept` prefers text/csv to JSON (by q-value; JSON wins a tie)."""
    if not accept:
        return False
    best = {"csv": 0.0, "json": 0.0}
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.strip().lower()
        if media in (CSV_TYPE, "text/*"):
            best["csv"] = max(best["csv"], q)
        if media in ("application/json", "application/*"):
            best["json"] = max(best["json"], q)
        if media == "*/*":
            best["json"] = max(best["json"], q)
    return best["csv"] > best["json"]


async def _csv(store: Store, conversation_id: str) -> AsyncIterator[str]:
    yield transcript.lines([transcript.COLUMNS])
    async for batch in transcript.pages(store, conversation_id):
        if batch:
            yield transcript.lines(transcript.cells(m) for m in batch)


@router.get(
    "/{conversation_id}/messages",
    summary="A conversation's messages, in order",
    description="JSON, a page at a time; or, with `Accept: text/csv`, the whole conversation "
    "as CSV (columns: id, date, sender_id, sender_username, type, content: the text or the "
    "image's URL; a cell starting with = + - @ gets a leading ').",
    responses={200: {"content": {CSV_TYPE: {"schema": {"type": "string"}}}}},
    response_model=Page[MessageOut],
)
async def conversation_messages(
    caller: Reader,
    ctx: Ctx,
    conversation_id: ConversationId,
    page: PageQuery,
    accept: Annotated[str | None, Header()] = None,
) -> Page[MessageOut] | StreamingResponse:
    await _conversation(ctx.store, conversation_id)
    if wants_csv(accept):
        name = (
            "conversation-"
            + "".join(ch for ch in conversation_id if ch.isascii() and ch.isalnum())
            + ".csv"
        )
        return StreamingResponse(
            _csv(ctx.store, conversation_id),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    after = page.after(str)
    rows = await ctx.store.conversation_messages(
        conversation_id, str(after[0]) if after else None, page.limit + 1
    )
    shown, cursor = paginate(rows, page, lambda m: (m.id,))
    return Page(items=[MessageOut.of(m) for m in shown], next=cursor)
