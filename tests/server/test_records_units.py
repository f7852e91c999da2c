"""Small pure parts of the conversation API, the export and `/live`, without a server."""

from __future__ import annotations

import pytest

from kefu.core.model import Profile
from kefu.core.switchboard import Live, QueuedRow, WaiterRow
from kefu.instants import BadInstant, parse_instant
from kefu.server.api.conversations import wants_csv
from kefu.server.api.stats import Durations, percentile
from kefu.server.live import LiveView, from_json, to_json
from kefu.transcript import lines, safe_cell


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
    values = [4.0, 1.0, 3.0, 2.0, 10.0]
    ordered = sorted(values)
    assert [percentile(ordered, p) for p in (1, 20, 21, 50, 90, 100)] == [1, 1, 2, 3, 10, 10]
    assert Durations.of(values) == Durations(count=5, mean=4.0, p50=3.0, p90=10.0)
    assert Durations.of([]) == Durations(count=0, mean=None, p50=None, p90=None)
    assert Durations.of([2.5]) == Durations(count=1, mean=2.5, p50=2.5, p90=2.5)


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
