"""`kefu export conversations` and `kefu purge`: the chat's records from the command line.

* `kefu export conversations --since T [--until T] [--format jsonl|csv]`
  streams the conversations opened in [since, until), oldest first, to
  stdout: `jsonl` is one conversation a line, with its messages (the admin
  API's shapes: `GET /conversations/{id}` and its messages); `csv` is one
  row a message, its conversation's id first, then the transcript columns
  of `kefu.transcript` (cells made safe for spreadsheets). Times are RFC
  3339 with a zone, or Unix seconds.
* `kefu purge --older-than DAYS` deletes the closed conversations that closed
  more than DAYS days ago, with their messages, and the queue's records as
  old, in the same small batches as `KEFU_RETENTION_DAYS` does.

Registered by `kefu.cli` (`register`), with its helpers (`CliTools`).
"""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from kefu.cli.tools import USAGE, CliTools
from kefu.instants import HELP as INSTANT_HELP

if TYPE_CHECKING:
    from kefu.store.base import Store
    from kefu.store.records import ConversationRecord, MessageRecord, Purged

PAGE = 200  # conversations read per query


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


def register(app: typer.Typer, tools: CliTools) -> None:
    """Add `export` and `purge` to `app`."""
    app.add_typer(_export(tools), name="export")

    @app.command("purge")
    def purge(
        older_than: Annotated[
            int,
            typer.Option(
                "--older-than", min=1, help="Delete conversations closed more than DAYS days ago."
            ),
        ],
    ) -> None:
        """Delete closed conversations (and their messages) older than --older-than days."""
        from kefu.server.retention import DAY, purge_before

        before = time.time() - older_than * DAY

        async def run(store: Store) -> Purged:
            return await purge_before(store, before)

        done = tools.run(tools.settings(), run)
        typer.echo(
            f"deleted {done.conversations} conversations, {done.messages} messages, "
            f"{done.queue_exits} queue records"
        )


def _when(tools: CliTools, text: str, name: str) -> float:
    from kefu.instants import BadInstant, parse_instant

    try:
        return parse_instant(text)
    except BadInstant as exc:
        tools.fail(f"--{name}: {exc}", USAGE)


async def _messages(store: Store, conversation_id: str) -> list[MessageRecord]:
    from kefu import transcript

    return [m async for batch in transcript.pages(store, conversation_id) for m in batch]


def _jsonl(conversation: ConversationRecord, messages: list[MessageRecord]) -> str:
    from kefu.server.api.conversations import ConversationOut, MessageOut

    data = ConversationOut.of(conversation).model_dump(mode="json")
    data["messages"] = [MessageOut.of(m).model_dump(mode="json") for m in messages]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def _csv(conversation: ConversationRecord, messages: list[MessageRecord]) -> str:
    from kefu import transcript

    return transcript.lines([conversation.id, *transcript.cells(m)] for m in messages)


def _export(tools: CliTools) -> typer.Typer:
    export = typer.Typer(help="Write the chat's records to stdout.", no_args_is_help=True)

    @export.command("conversations")
    def conversations(
        since: Annotated[str, typer.Option(help=f"Opened at or after: {INSTANT_HELP}.")],
        until: Annotated[
            str | None, typer.Option(help="Opened before (default: now), as --since.")
        ] = None,
        fmt: Annotated[
            ExportFormat, typer.Option("--format", help="jsonl: a conversation a line; csv.")
        ] = ExportFormat.JSONL,
    ) -> None:
        """Stream the conversations opened in [since, until), oldest first, to stdout."""
        from kefu import transcript
        from kefu.store.records import ConversationFilter
        from kefu.store.tables import to_us

        start = _when(tools, since, "since")
        end = time.time() if until is None else _when(tools, until, "until")
        if start >= end:
            tools.fail("--since must be before --until", USAGE)
        where = ConversationFilter(since=start, until=end)
        out = sys.stdout
        write = _jsonl if fmt is ExportFormat.JSONL else _csv

        async def run(store: Store) -> None:
            if fmt is ExportFormat.CSV:
                out.write(transcript.lines([["conversation_id", *transcript.COLUMNS]]))
            after: tuple[int, str] | None = None
            while True:
                page = await store.list_conversations(where, after, PAGE, oldest_first=True)
                for conversation in page:
                    out.write(write(conversation, await _messages(store, conversation.id)))
                out.flush()
                if len(page) < PAGE:
                    return
                last = page[-1]
                after = (to_us(last.opened_at), last.id)

        try:
            tools.run(tools.settings(), run)
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            sys.stderr.close()

    return export
