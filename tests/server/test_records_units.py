"""Small pure parts of the conversation API, the export and `/live`, without a server."""

from __future__ import annotations

import pytest

from kefu.core.model import Profile
from kefu.core.switchboard import Live, QueuedRow, WaiterRow
from kefu.instants import BadInstant, parse_instant
from kefu.server.api.conversations import wants_csv
from kefu.server.api.stats import Durations
from kefu.server.live import LiveView, from_json, to_json
from kefu.store.record_queries import nearest_rank
from kefu.store.records import Spread
from kefu.transcript import PAGE, lines, pages, safe_cell


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("1796112000", 1796112000.0),
        ("1796112000.25", 1796112000.25),
        ("2026-12-01T08:00:00Z", 1796112000.0),
        ("2026-12-01t08:00:00z", 1796112000.0),
        ("2026-12-01T16:00:00+08:00", 1796112000.0),
        ("2026-12-01T08:00:00.5+00:00", 1796112000.5),
        (" 2026-12-01T08:00:00Z ", 1796112000.0),
    ],
)
def test_instants(text: str, seconds: float) -> None:
    assert parse_instant(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "soon", "-1", "1e9", "nan", "2026-12-01", "2026-12-01T08:00:00", "12:00Z", "1" * 13],
)
def test_bad_instants(text: str) -> None:
    with pytest.raises(BadInstant):
        parse_instant(text)


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/csv", True),
        ("text/*", True),
        ("text/csv, application/json", False),  # a tie: JSON
        ("text/csv, */*;q=0.1", True),
        ("application/json;q=0.5, text/csv", True),
        ("text/csv;q=0.2, application/json;q=0.9", False),
        ("text/csv;q=bad", False),
    ],
)
def test_wants_csv(accept: str | None, csv: bool) -> None:
    assert wants_csv(accept) is csv


def test_cells_a_spreadsheet_would_run_become_text() -> None:
    for risky in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert safe_cell(risky) == "'" + risky
    for plain in ("hello", "1-1", "a=b", "", "'quoted"):
        assert safe_cell(plain) == plain
    assert lines([["=x", 'say "hi"', "two\nlines"]]) == '\'=x,"say ""hi""","two\nlines"\r\n'


def test_percentiles_are_nearest_rank() -> None:
    # of 5 sorted values [1, 2, 3, 4, 10]: p1 and p20 are the 1st, p21 the 2nd, p50 the 3rd
    assert [nearest_rank(5, p) for p in (1, 20, 21, 50, 90, 100)] == [1, 1, 2, 3, 5, 5]
    assert nearest_rank(1, 50) == nearest_rank(1, 90) == 1
    assert nearest_rank(10, 90) == 9 and nearest_rank(11, 90) == 10
    assert Durations.of(Spread()) == Durations(count=0, mean=None, p50=None, p90=None)
    assert Durations.of(Spread(3, 2.00049, 1.0004, 7.1236)) == Durations(
        count=3, mean=2.0, p50=1.0, p90=7.124
    )


def test_the_live_view_survives_the_snapshot() -> None:
    view = LiveView(
        Live(
            [QueuedRow(Profile("u1", "ann", None, ""), 10.5, False)],
            3,
            [WaiterRow(Profile("w1", "wendy", "Wendy", "https://x/w.png"), True, True, 2, 5)],
        ),
        12.25,
    )
    assert from_json(to_json(view)) == view
    empty = from_json(None)
    assert (empty.live.queue, empty.live.queued, empty.live.waiters) == ([], 0, [])


@pytest.mark.parametrize("count", [0, 1, PAGE, PAGE + 1, 2 * PAGE + 5])
async def test_transcript_pages_read_every_message_once_in_order(count: int) -> None:
    from types import SimpleNamespace

    messages = [SimpleNamespace(id=f"{i:020d}") for i in range(count)]
    asked: list[str | None] = []

    class Messages:
        async def conversation_messages(
            self, conversation_id: str, after: str | None, limit: int
        ) -> list[SimpleNamespace]:
            asked.append(after)
            start = 0 if after is None else int(after) + 1
            return messages[start : start + limit]

    got = [m async for batch in pages(Messages(), "c1") for m in batch]  # type: ignore[arg-type]
    assert got == messages
    assert len(asked) == count // PAGE + 1  # a short (maybe empty) page ends it
