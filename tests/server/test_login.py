"""`POST /v1/auth/login` against a real `kefu serve`: throttling, client addresses, body limits,
the password pool.

Distinct client addresses come from binding the client's end to 127.0.0.x
(Linux routes all of 127/8 to loopback), so the server sees real peers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from support.client import person
from support.servers import MakeServer, Server, run_kefu

pytestmark = pytest.mark.timeout(90)

LOGIN = "/v1/auth/login"
LIMIT = 10  # KEFU_LOGIN_MAX_FAILURES' default
JSON_ERROR_KEYS = {"status", "message", "data"}


def create_account(srv: Server, username: str, password: str) -> None:
    done = run_kefu(
        ["users", "create", username, "--role", "waiter", "--password", password],
        srv.env,
        srv.data_dir,
    )
    assert done.returncode == 0, done.stderr


def client(srv: Server, peer: str = "127.0.0.1", **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client whose connections come from `peer` (any 127.x.y.z)."""
    transport = httpx.AsyncHTTPTransport(local_address=peer)
    return httpx.AsyncClient(
        base_url=srv.url, transport=transport, trust_env=False, timeout=30, **kwargs
    )


async def login(
    http: httpx.AsyncClient, username: str, password: str, **headers: str
) -> httpx.Response:
    return await http.post(
        LOGIN, json={"username": username, "password": password}, headers=headers
    )


def check_error(resp: httpx.Response, http_status: int) -> dict[str, Any]:
    """An error answer in the API's shape, never cached."""
    assert resp.status_code == http_status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    assert resp.headers["cache-control"] == "no-store", resp.headers
    body = resp.json()
    assert set(body) == JSON_ERROR_KEYS and body["data"] is None, body
    return body


def retry_after(resp: httpx.Response, window: float) -> int:
    value = int(resp.headers["retry-after"])
    assert 1 <= value <= window + 1, value
    return value


def checks_allowed(elapsed: float, window: float) -> int:
    """At most LIMIT checks in any `window` seconds: in `elapsed` seconds, this many.

    A flood normally takes well under the window (LIMIT then); a very slow
    machine may spread it over more than one window, which the limit allows.
    """
    return LIMIT * (1 + int(elapsed // window))


async def until_signed_in(
    http: httpx.AsyncClient, username: str, password: str, deadline: float
) -> httpx.Response:
    """Retry (blocked attempts are not counted) until the window lets the right password in."""
    while True:
        resp = await login(http, username, password)
        if resp.status_code != 429 or time.monotonic() > deadline:
            return resp
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------- attempts are counted first


async def test_concurrent_wrong_passwords_for_one_account(make_server: MakeServer) -> None:
    """60 at once from 60 addresses: at most 10 are checked; the account stays locked."""
    window = 4.0
    srv = make_server(login_window=window)
    create_account(srv, "alice", "right password")
    peers = [client(srv, f"127.0.1.{i}") for i in range(1, 61)]
    try:
        start = time.monotonic()
        answers = await asyncio.gather(
            *(login(h, "alice", f"wrong {i}") for i, h in enumerate(peers))
        )
        async with client(srv, "127.0.2.1") as other:
            right = await login(other, "alice", "right password")
            elapsed = time.monotonic() - start
            statuses = Counter(r.status_code for r in answers)
            assert set(statuses) <= {401, 429}, statuses
            assert 1 <= statuses[401] <= checks_allowed(elapsed, window), (statuses, elapsed)
            for resp in answers:
                if resp.status_code == 429:
                    check_error(resp, 429)
                    retry_after(resp, window)
            if elapsed < window:  # all 60 attempts are still in the window
                check_error(right, 429)
                wait = retry_after(right, window)
            else:
                wait = 0
            signed_in = await until_signed_in(
                other, "alice", "right password", time.monotonic() + wait + window + 10
            )
            assert signed_in.status_code == 200, signed_in.text
    finally:
        for h in peers:
            await h.aclose()


async def test_concurrent_attempts_from_one_address_across_usernames(
    make_server: MakeServer,
) -> None:
    srv = make_server()
    async with client(srv, "127.0.3.1", limits=httpx.Limits(max_connections=60)) as http:
        start = time.monotonic()
        answers = await asyncio.gather(*(login(http, f"nobody{i}", "guess") for i in range(60)))
        elapsed = time.monotonic() - start
    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) == {401, 429}, statuses
    assert statuses[401] <= checks_allowed(elapsed, 300), statuses
    for resp in answers:
        if resp.status_code == 429:
            check_error(resp, 429)
            retry_after(resp, 300)


async def test_a_success_clears_only_its_own_username(make_server: MakeServer) -> None:
    srv = make_server()
    create_account(srv, "alice", "alice pw")
    create_account(srv, "bob", "bob pw")
    async with (
        client(srv, "127.0.4.1") as one,
        client(srv, "127.0.4.2") as two,
        client(srv, "127.0.4.3") as three,
    ):
        for i in range(6):
            check_error(await login(one, "bob", f"wrong {i}"), 401)
        for i in range(2):
            check_error(await login(one, "alice", f"wrong {i}"), 401)
        assert (await login(one, "alice", "alice pw")).status_code == 200
        # the address has 8 failures: alice's success gave back only its own attempt
        check_error(await login(one, "carol", "guess"), 401)
        check_error(await login(one, "dave", "guess"), 401)
        blocked = await login(one, "erin", "guess")
        check_error(blocked, 429)
        retry_after(blocked, 300)
        # bob's 6 failures were not cleared by alice's success either
        for i in range(4):
            check_error(await login(two, "bob", f"other {i}"), 401)
        check_error(await login(two, "bob", "bob pw"), 429)
        # alice's 2 failures were cleared by her success: 8 more still leave her in
        for i in range(8):
            check_error(await login(three, "alice", f"again {i}"), 401)
        assert (await login(three, "alice", "alice pw")).status_code == 200


# ---------------------------------------------------------------- whose address it is


async def test_spoofed_forwarded_for_gets_no_fresh_budget(make_server: MakeServer) -> None:
    srv = make_server()  # KEFU_TRUSTED_PROXIES empty: nobody's X-Forwarded-For is believed
    async with client(srv, "127.0.0.1") as http:  # uvicorn trusted loopback by default
        for i in range(LIMIT):
            resp = await login(
                http, f"nobody{i}", "guess", **{"X-Forwarded-For": f"198.51.100.{i}"}
            )
            check_error(resp, 401)
        resp = await login(http, "nobody-else", "guess", **{"X-Forwarded-For": "198.51.100.200"})
        check_error(resp, 429)


async def test_a_trusted_proxy_gives_each_forwarded_client_its_budget(
    make_server: MakeServer,
) -> None:
    srv = make_server(trusted_proxies="127.0.6.1")
    async with client(srv, "127.0.6.1") as proxy, client(srv, "127.0.6.2") as direct:
        first = {"X-Forwarded-For": "203.0.113.1"}
        for i in range(LIMIT):
            check_error(await login(proxy, f"nobody{i}", "guess", **first), 401)
        check_error(await login(proxy, "nobody-else", "guess", **first), 429)
        # read from the right: a client cannot put another address in front of its own
        spoofed = {"X-Forwarded-For": "192.0.2.9, 203.0.113.1"}
        check_error(await login(proxy, "nobody-else", "guess", **spoofed), 429)
        # HAProxy's `option forwardfor` adds its own line after any the client sent
        haproxy_style = [("X-Forwarded-For", "192.0.2.9"), ("X-Forwarded-For", "203.0.113.1")]
        json_body = {"username": "nobody-else", "password": "guess"}
        check_error(await proxy.post(LOGIN, json=json_body, headers=haproxy_style), 429)
        # another client behind the same proxy has its own budget, and so does the proxy
        check_error(
            await login(proxy, "nobody-else", "guess", **{"X-Forwarded-For": "203.0.113.2"}), 401
        )
        check_error(await login(proxy, "nobody-else2", "guess"), 401)
        # the header of a peer that is not a trusted proxy is ignored
        for i in range(LIMIT):
            check_error(await login(direct, f"someone{i}", "guess", **first), 401)


# ---------------------------------------------------------------- the request itself


async def test_bodies_over_the_limit_are_refused(make_server: MakeServer) -> None:
    srv = make_server()
    create_account(srv, "alice", "alice pw")
    async with client(srv) as http:
        big = json.dumps({"username": "alice", "password": "x" * 5000}).encode()
        resp = await http.post(LOGIN, content=big, headers={"Content-Type": "application/json"})
        check_error(resp, 413)

        async def chunks() -> Any:
            yield b'{"username": "alice", "password": "'
            for _ in range(8):
                yield b"x" * 1000
            yield b'"}'

        resp = await http.post(
            LOGIN, content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in resp.request.headers  # sent chunked
        check_error(resp, 413)
        # exactly at the limit is fine
        at_limit = {"username": "alice", "password": ""}
        at_limit["password"] = "x" * (4096 - len(json.dumps(at_limit).encode()))
        body = json.dumps(at_limit).encode()
        assert len(body) == 4096
        resp = await http.post(LOGIN, content=body, headers={"Content-Type": "application/json"})
        check_error(resp, 401)
        assert (await login(http, "alice", "alice pw")).status_code == 200  # same connection


async def raw_request(srv: Server, head: str, body: bytes = b"") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await asyncio.wait_for(reader.readexactly(length), 30)


async def test_content_length_is_refused_before_the_body_is_sent(make_server: MakeServer) -> None:
    srv = make_server()
    head = (
        f"POST {LOGIN} HTTP/1.1\nHost: 127.0.0.1:{srv.port}\n"
        "Content-Type: application/json\nContent-Length: 300000000\n"
    )
    status, body = await raw_request(srv, head)  # headers only: the answer comes anyway
    assert status == 413, body
    assert json.loads(body)["message"] == "request body is too large"


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_streamed_300_mb_body_is_not_kept(make_server: MakeServer) -> None:
    srv = make_server()
    assert srv.proc is not None
    pid = srv.proc.pid
    async with client(srv) as http:  # argon2 takes 64 MiB a check, freed after: not now
        check_error(await login(http, "nobody", "guess"), 401)
    before = peak = rss(pid)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    piece = b"x" * 65536
    frame = b"%x\r\n%s\r\n" % (len(piece), piece)
    sent = 0
    try:
        writer.write(
            f"POST {LOGIN} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            while sent < 300_000_000:
                writer.write(frame)
                await writer.drain()
                sent += len(piece)
                if sent % (4 << 20) == 0:
                    peak = max(peak, rss(pid))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass  # the server may stop reading: then nothing more can pile up either
        peak = max(peak, rss(pid))
        status, body = await read_response(reader)
    finally:
        writer.close()
    growth = peak - before
    assert status == 413, body
    assert growth < 64 << 20, f"RSS grew {growth / 2**20:.0f} MiB while {sent >> 20} MiB streamed"
    async with client(srv) as http:  # and the server is fine
        assert (await http.get("/v1/ws/status")).status_code == 200


async def test_only_json_bodies_are_accepted(make_server: MakeServer) -> None:
    srv = make_server()
    create_account(srv, "alice", "alice pw")
    body = json.dumps({"username": "alice", "password": "alice pw"}).encode()
    async with client(srv) as http:
        for content_type in (
            "text/plain",  # what a cross-site form or a "simple" fetch can send
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin-1",
            "application/json-patch+json",
            None,
        ):
            headers = {"Content-Type": content_type} if content_type else {}
            resp = await http.post(LOGIN, content=body, headers=headers)
            assert content_type or "content-type" not in resp.request.headers
            check_error(resp, 415)
        for good in ("application/json", 'Application/JSON; charset="utf-8"'):
            resp = await http.post(LOGIN, content=body, headers={"Content-Type": good})
            assert resp.status_code == 200, (good, resp.text)


async def test_origins_and_bad_input(make_server: MakeServer) -> None:
    srv = make_server(allowed_origins="https://app.example.com")
    create_account(srv, "alice", "alice pw")
    async with client(srv) as http:
        for origin in ("https://evil.example", "null", "https://app.example.com.evil.com"):
            check_error(await login(http, "alice", "alice pw", Origin=origin), 403)
        for origin in ("https://app.example.com", f"http://127.0.0.1:{srv.port}"):
            resp = await login(http, "alice", "alice pw", Origin=origin)
            assert resp.status_code == 200, (origin, resp.text)
        ok = await login(http, "alice", "alice pw")  # no Origin: not a browser
        assert ok.status_code == 200
        body = ok.json()
        assert body["role"] == "waiter" and body["profile"]["username"] == "alice"
        assert ok.headers["cache-control"] == "no-store"

        json_type = {"Content-Type": "application/json"}
        for raw, message in (
            (b"not json", "the body must be JSON"),
            (b"\xff\xfe{}", "the body must be JSON"),
            (b"[" * 4000 + b"]" * 90, "the body must be JSON"),
            (b"[1, 2]", "username and password are required"),
            (b'{"username": "alice"}', "username and password are required"),
            (b'{"username": "  ", "password": "x"}', "username and password are required"),
            (b'{"username": 1, "password": "x"}', "username and password are required"),
            (b'{"username": "alice", "password": "\\ud800"}', "username and password must be text"),
            (
                b'{"username": "al\\u0000ice", "password": "x"}',
                "username and password must be text",
            ),
        ):
            resp = await http.post(LOGIN, content=raw, headers=json_type)
            assert check_error(resp, 400)["message"] == message, raw[:40]
        assert (await http.get(LOGIN)).status_code == 405
        # none of these was a password check: the address's budget is whole
        for i in range(LIMIT):
            check_error(await login(http, f"nobody{i}", "guess"), 401)


# ---------------------------------------------------------------- the password pool


async def test_a_full_password_pool_answers_503_and_nothing_else_breaks(
    make_server: MakeServer,
) -> None:
    srv = make_server(password_workers=1, password_queue=1, login_max_failures=100_000)
    create_account(srv, "alice", "alice pw")
    user = await srv.user(person("user"))
    limits = httpx.Limits(max_connections=100)
    async with client(srv, limits=limits) as http:
        statuses: Counter[int] = Counter()
        for _ in range(5):  # a flood outruns one thread at ~80 ms a check; retried if it did not
            flood = asyncio.gather(*(login(http, f"nobody{i}", "guess") for i in range(100)))
            await user.send({"type": "get_history"})  # chat work does not wait behind argon2
            await user.expect("message_history", timeout=30)
            answers = await flood
            statuses.update(r.status_code for r in answers)
            for resp in answers:
                if resp.status_code == 503:
                    check_error(resp, 503)
                    assert resp.headers["retry-after"] == "1"
            if statuses[503]:
                break
        assert set(statuses) == {401, 503}, statuses
        assert (await login(http, "alice", "alice pw")).status_code == 200
        # the flood's refused attempts were not counted, its checked ones were (no limit here)
        assert (await http.get("/v1/ws/status")).status_code == 200
    await user.send({"type": "get_history"})
    await user.expect("message_history")
