"""`/v1/api/webhooks`: register, list and delete webhooks, and see their deliveries.

A webhook gets a signed POST for each event it subscribes to (docs/api.md
lists them with sample payloads). Its URL must resolve to public addresses
only (checked here, 422, and again before every attempt), unless
`KEFU_WEBHOOK_ALLOW_PRIVATE`. Its secret is generated unless given, and is
shown in the answer to the creation only.

A change is seen at once by this node's writer, and within a few seconds by
the other nodes of a cluster (`server/webhooks.Refresher`); listing the
webhooks on a node refreshes it there too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kefu.server.api.auth import Reader, Writer
from kefu.server.api.context import ApiContext, Ctx
from kefu.server.api.errors import bad_input, conflict, not_found
from kefu.server.api.pages import Page, PageQuery, paginate
from kefu.server.api.values import timestamp
from kefu.server.webhooks import webhook_store
from kefu.server.webhooks.addresses import MAX_URL_CHARS, Refused, parse, resolve
from kefu.server.webhooks.signing import new_secret
from kefu.store.outbox import ALL, EVENTS
from kefu.store.webhooks import Delivery, Webhook, WebhookQueries

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

MAX_WEBHOOKS = 50  # each event is fanned out to every webhook that wants it
WebhookId = Annotated[str, Path(min_length=1, max_length=64, description="The webhook's id")]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookIn(BaseModel):
    """A new webhook."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1, max_length=MAX_URL_CHARS, description="http(s) URL to POST events to"
    )
    events: list[str] = Field(
        min_length=1,
        max_length=len(EVENTS),
        description=f'Event names ({", ".join(EVENTS)}), or ["*"] for every event',
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=128,
        description="Signs the deliveries; generated if left out",
    )

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in EVENTS and name != ALL]
        if unknown:
            raise ValueError(f"unknown events {unknown}; known: {list(EVENTS)} or ['*']")
        if ALL in value and len(value) > 1:
            raise ValueError("'*' stands for every event: give it alone")
        return list(dict.fromkeys(value))

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not all(0x21 <= ord(ch) <= 0x7E for ch in value):
            raise ValueError("the secret must be printable ASCII without spaces")
        return value


class WebhookOut(BaseModel):
    """A webhook as listed (never its secret)."""

    id: str
    url: str
    events: list[str]
    created_at: str | None  # RFC 3339, UTC

    @classmethod
    def of(cls, hook: Webhook) -> WebhookOut:
        return cls(
            id=hook.id,
            url=hook.url,
            events=list(hook.events),
            created_at=timestamp(hook.created_at),
        )


class WebhookCreated(WebhookOut):
    """A new webhook, with its secret: shown this once."""

    secret: str


class DeliveryOut(BaseModel):
    """One event sent (or to be sent) to the webhook."""

    id: str  # X-Kefu-Delivery, and the body's `id`
    event: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None  # the HTTP status of the last attempt
    last_error: str | None  # why the last attempt got no answer, or was not made
    created_at: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None  # pending and due at a known time (null: behind another)
    finished_at: str | None  # delivered, or failed for good

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            event=d.event,
            status=d.status,
            attempts=d.attempts,
            last_status=d.last_status,
            last_error=d.last_error,
            created_at=timestamp(d.created_at),
            last_attempt_at=timestamp(d.last_attempt_at),
            next_attempt_at=timestamp(d.next_attempt_at),
            finished_at=timestamp(d.finished_at),
        )


def _store(ctx: ApiContext) -> WebhookQueries:
    return webhook_store(ctx.store)


async def _found(ctx: ApiContext, hook_id: str) -> Webhook:
    hook = await _store(ctx).get_webhook(hook_id)
    if hook is None:
        raise not_found(f"no webhook {hook_id!r}")
    return hook


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a webhook")
async def create_webhook(caller: Writer, ctx: Ctx, body: WebhookIn) -> WebhookCreated:
    try:
        await resolve(parse(body.url), ctx.settings.webhook_allow_private)
    except Refused as exc:
        raise bad_input(f"url: {exc}") from None
    store = _store(ctx)
    if len(await store.list_webhooks(None, MAX_WEBHOOKS)) >= MAX_WEBHOOKS:
        raise conflict(f"there are {MAX_WEBHOOKS} webhooks already; delete one first")
    hook = Webhook(
        id=ctx.new_id(),
        url=body.url,
        events=tuple(body.events),
        created_at=ctx.clock(),
        secret=body.secret or new_secret(),
    )
    await store.create_webhook(hook)
    await store.refresh_subscriptions()  # this node's writer writes its events from now on
    return WebhookCreated(**WebhookOut.of(hook).model_dump(), secret=hook.secret)


@router.get("", summary="List webhooks, newest first")
async def list_webhooks(caller: Reader, ctx: Ctx, page: PageQuery) -> Page[WebhookOut]:
    store = _store(ctx)
    await store.refresh_subscriptions()
    after = page.after(str)
    rows = await store.list_webhooks(str(after[0]) if after else None, page.limit + 1)
    items, cursor = paginate(rows, page, lambda hook: (hook.id,))
    return Page(items=[WebhookOut.of(h) for h in items], next=cursor)


@router.get("/{webhook_id}", summary="Show a webhook")
async def show_webhook(caller: Reader, ctx: Ctx, webhook_id: WebhookId) -> WebhookOut:
    return WebhookOut.of(await _found(ctx, webhook_id))


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a webhook and its deliveries",
)
async def delete_webhook(caller: Writer, ctx: Ctx, webhook_id: WebhookId) -> Response:
    store = _store(ctx)
    if not await store.delete_webhook(webhook_id):
        raise not_found(f"no webhook {webhook_id!r}")
    await store.refresh_subscriptions()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", summary="The webhook's deliveries, newest first")
async def list_deliveries(
    caller: Reader,
    ctx: Ctx,
    webhook_id: WebhookId,
    page: PageQuery,
    status: Annotated[DeliveryStatus | None, Query(description="Only these")] = None,
) -> Page[DeliveryOut]:
    await _found(ctx, webhook_id)
    after = page.after(str)
    if after is not None and not str(after[0]).isdigit():
        raise bad_input("invalid cursor")
    rows = await _store(ctx).list_deliveries(
        webhook_id, str(after[0]) if after else None, page.limit + 1, status
    )
    items, cursor = paginate(rows, page, lambda d: (d.id,))
    return Page(items=[DeliveryOut.of(d) for d in items], next=cursor)
