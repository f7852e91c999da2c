"""Lists: `{"items": [...], "next": "<cursor>" | null}`, with `?limit=` and `?cursor=`.

A route takes `page: PageQuery` (limit 1..200, default 50; an opaque cursor),
asks its store for `page.limit + 1` rows after `page.after(...)` in a stable
order, and returns `Page(items=..., next=...)` from `paginate`. The cursor is
the sort key of the last row shown (base64url of a JSON array of strings and
integers: use integers, e.g. microseconds, for times, never floats), so a
page holds its place when rows are added. A cursor that does not decode to
the key the route expects is a 422.

    @router.get("/things")
    async def things(caller: Reader, ctx: Ctx, page: PageQuery) -> Page[ThingOut]:
        after = page.after(str)  # None on the first page
        rows = await ctx.store.things(after=after[0] if after else None, limit=page.limit + 1)
        items, cursor = paginate(rows, page, lambda row: (row.id,))
        return Page(items=[ThingOut.of(row) for row in items], next=cursor)
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from kefu.server.api.errors import bad_input

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_CURSOR_CHARS = 512

T = TypeVar("T")
R = TypeVar("R")
Key = Sequence[str | int]


class Page(BaseModel, Generic[T]):
    """One page of a list; `next` is the cursor of the following page (null on the last)."""

    items: list[T]
    next: str | None = None


def encode_cursor(key: Key) -> str:
    for part in key:
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise TypeError(f"a cursor key holds strings and integers, not {part!r}")
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, *types: type) -> tuple[str | int, ...]:
    """The key `encode_cursor` made, checked against `types` (e.g. `int, str`); else 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError):
        raise bad_input("invalid cursor") from None
    if not isinstance(key, list) or len(key) != len(types):
        raise bad_input("invalid cursor")
    for part, kind in zip(key, types, strict=True):
        if type(part) is not kind:
            raise bad_input("invalid cursor")
    return tuple(key)


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    cursor: str | None = None

    def after(self, *types: type) -> tuple[str | int, ...] | None:
        """The sort key of the last row already shown, or None for the first page."""
        return None if self.cursor is None else decode_cursor(self.cursor, *types)


def page_request(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_CHARS, description="`next` of the previous page"),
    ] = None,
) -> PageRequest:
    return PageRequest(limit, cursor or None)


PageQuery = Annotated[PageRequest, Depends(page_request)]


def paginate(
    rows: Sequence[R], page: PageRequest, key: Callable[[R], Key]
) -> tuple[list[R], str | None]:
    """The rows to show (at most `page.limit`; fetch one more) and the next page's cursor."""
    shown = list(rows[: page.limit])
    more = len(rows) > page.limit
    return shown, encode_cursor(key(shown[-1])) if more and shown else None
