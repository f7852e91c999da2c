"""Per-socket and per-account caps, exactly at their boundaries.

* `KEFU_MAX_AUTH_FAILURES=N`: the first N-1 failed `auth` frames of a socket
  are answered 999999 and the socket stays open; the N-th is answered and
  the socket is closed with 1008.
* `KEFU_MAX_USER_SOCKETS=N`: N authenticated sockets of one user account are
  fine; the next `auth` is refused (100002) and that socket stays open,
  unauthenticated; once one of the N closes, it is accepted.
"""

from __future__ import annotations

import pytest

from support.client import Client, new_op_id, person
from support.servers import MakeServer

pytestmark = pytest.mark.timeout(60)

N = 3


async def _fail_auth(sock: Client) -> None:
    op = new_op_id()
    await sock.send({"type": "auth", "op_id": op, "payload": {"token": "not-a-token"}})
    await sock.expect_error(999999, op_id=op)


async def test_auth_failures_close_the_socket_at_the_nth(make_server: MakeServer) -> None:
    srv = make_server(max_auth_failures=N)
    sock = await srv.open("user", "guesser")
    for _ in range(N - 1):
        await _fail_auth(sock)
    await sock.expect_nothing()  # open and quiet after N-1 failures
    await _fail_auth(sock)  # the N-th is still answered ...
    await sock.expect_closed(1008)  # ... and then the socket is closed


async def test_auth_after_n_minus_1_failures_still_succeeds(make_server: MakeServer) -> None:
    srv = make_server(max_auth_failures=N)
    sock = await srv.open("user", "typo")
    for _ in range(N - 1):
        await _fail_auth(sock)
    await sock.auth(person("user"))
    await sock.send({"type": "get_history"})
    await sock.expect("message_history")


async def test_failures_are_counted_per_socket(make_server: MakeServer) -> None:
    srv = make_server(max_auth_failures=N)
    first = await srv.open("user", "first")
    for _ in range(N - 1):
        await _fail_auth(first)
    second = await srv.open("user", "second")
    for _ in range(N - 1):
        await _fail_auth(second)
    await first.expect_nothing()
    await second.expect_nothing()


async def test_the_nth_socket_of_a_user_is_fine_the_next_is_refused(
    make_server: MakeServer,
) -> None:
    srv = make_server(max_user_sockets=N, resume_grace=30)
    who = person("user")
    sockets = [await srv.user(who, label=f"socket{i}") for i in range(N)]
    for sock in sockets:  # all N authenticated and answered
        await sock.send({"type": "get_history"})
        await sock.expect("message_history")
    extra = await srv.open("user", "one-too-many")
    op = new_op_id()
    await extra.send({"type": "auth", "op_id": op, "payload": {"token": who.token()}})
    err = await extra.expect_error(100002, op_id=op)
    assert str(N) in err["payload"]["message"], err
    await extra.send({"type": "get_history"})  # open, but not authenticated
    await extra.expect_error(999999)
    other = await srv.user(label="another account")  # the cap is per account
    await other.send({"type": "get_history"})
    await other.expect("message_history")

    await sockets[0].close()
    await srv.until("the closed socket gone", lambda d: d["online_user_num"] == N)
    await extra.auth(who)  # a place is free again
    await extra.send({"type": "get_history"})
    await extra.expect("message_history")
