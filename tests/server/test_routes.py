"""The route table's indexes agree with its conversations whatever was put and dropped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kefu.server.routes import RouteEntry, RouteTable

SOCKETS = [f"s{i}" for i in range(4)]
CONVERSATIONS = [f"c{i}" for i in range(6)]

put = st.builds(
    lambda cid, user, waiter, node: ("put", cid, user, waiter, node),
    st.sampled_from(CONVERSATIONS),
    st.none() | st.sampled_from(SOCKETS),
    st.none() | st.sampled_from(SOCKETS),
    st.none() | st.sampled_from(["n1", "n2"]),
)
drop = st.builds(lambda cid: ("drop", cid, None, None, None), st.sampled_from(CONVERSATIONS))


@given(st.lists(put | drop, max_size=40))
def test_lookups_by_socket_match_a_scan(
    steps: list[tuple[str, str, str | None, str | None, str | None]],
) -> None:
    table = RouteTable()
    live: dict[str, RouteEntry] = {}  # the model: what a scan of the open conversations sees
    for op, cid, user, waiter, node in steps:
        if op == "put":
            entry = RouteEntry(cid, f"u-{cid}", user, "w", waiter, user_node=node, waiter_node=node)
            table.put(entry)
            live.pop(cid, None)  # a put moves the conversation to the end
            live[cid] = entry
        else:
            table.drop(cid)
            live.pop(cid, None)
    for socket in SOCKETS:
        expected = [e for e in live.values() if e.waiter_socket == socket]
        assert table.of_waiter_socket(socket) == expected
        found = table.of_user_socket(socket)
        assert found is None or found in [e for e in live.values() if e.user_socket == socket]
    for cid in CONVERSATIONS:
        assert table.get(cid) is live.get(cid)


def test_a_waiter_socket_is_forgotten_with_its_last_route() -> None:
    table = RouteTable()
    for i in range(2000):
        table.put(RouteEntry(f"c{i}", f"u{i}", f"us{i}", f"w{i}", f"ws{i}"))
    table.put(RouteEntry("extra", "u", "us", "w7", "ws7"))
    assert [e.conversation_id for e in table.of_waiter_socket("ws7")] == ["c7", "extra"]
    table.drop("c7")
    assert [e.conversation_id for e in table.of_waiter_socket("ws7")] == ["extra"]
    table.drop("extra")
    assert table.of_waiter_socket("ws7") == []
    assert "ws7" not in table._by_waiter_socket  # forgotten with its last route
