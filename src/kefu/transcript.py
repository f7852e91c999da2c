"""Transcripts as CSV: the admin API's `Accept: text/csv` and `kefu export --format csv`.

One row per message: its id, date (RFC 3339, UTC), sender id and username,
type, and content (the text, or the image's URL). Every cell that a
spreadsheet would take for a formula (starting with `=`, `+`, `-`, `@`, or a
tab or carriage return, which some programs skip before one) gets a leading
`'`, so opening an export never runs what a chat user typed (CSV injection).
A reader that wants the exact text strips that one quote from such cells.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kefu.protocol.out import rfc3339
from kefu.store.records import MessageRecord

if TYPE_CHECKING:
    from kefu.store.base import Store

PAGE = 1000  # messages read per query while a transcript is read whole

COLUMNS = ("id", "date", "sender_id", "sender_username", "type", "content")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """`value`, with a `'` in front if a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def content(payload: Any) -> str:
    """What a message says: its text, or its image's URL ("" for anything else)."""
    if not isinstance(payload, dict):
        return ""
    for key in ("text", "image"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
    return ""


def cells(message: MessageRecord) -> list[str]:
    """The message's row, in `COLUMNS` order, before `safe_cell`."""
    return [
        message.id,
        rfc3339(message.created),
        message.sender.id,
        message.sender.username,
        message.type,
        content(message.payload),
    ]


def lines(rows: Iterable[Sequence[str]]) -> str:
    """CSV text (RFC 4180, CRLF line ends) for `rows`, every cell made safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()


async def pages(store: Store, conversation_id: str) -> AsyncIterator[list[MessageRecord]]:
    """A conversation's messages in order, `PAGE` at a time (the last page may be empty)."""
    after: str | None = None
    while True:
        batch = await store.conversation_messages(conversation_id, after, PAGE)
        yield batch
        if len(batch) < PAGE:
            return
        after = batch[-1].id
