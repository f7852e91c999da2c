"""Ids sort by their creation time: `id_at` is the boundary between before and after."""

from __future__ import annotations

from kefu.ids import IdGenerator, id_at, id_time


def test_id_at_separates_the_ids_made_before_a_time_from_those_made_then() -> None:
    now = [1_800_000_000.0]
    ids = IdGenerator(node=7, clock=lambda: now[0])
    before = [ids() for _ in range(3)]
    now[0] += 1.0
    at = [ids() for _ in range(3)]
    boundary = id_at(now[0])
    assert all(i < boundary for i in before)
    assert all(boundary <= i for i in at)
    assert id_time(boundary) == now[0]
    assert id_at(0.0) == "0" * 20  # before the ids' epoch: the smallest id
