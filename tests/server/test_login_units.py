"""In-process tests of sign-in's parts: the attempt counters, the password pool, and the
route's branches that a real server cannot reach on purpose (a pool held busy, a failing
account lookup, a client that goes away mid-body)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from kefu import passwords
from kefu.core.model import Role
from kefu.passwords import PasswordChecker, PasswordsBusy, check_password, hash_password
from kefu.server.login import login_route
from kefu.server.throttle import LoginThrottle, Throttled, Window, address_key, username_key
from kefu.settings import Settings
from kefu.store.base import Account

pytestmark = pytest.mark.timeout(60)

# ---------------------------------------------------------------- Window and LoginThrottle


def test_window_counts_up_to_its_limit_and_forgets_after_it() -> None:
    w: Window[str] = Window(limit=3, window=10.0)
    for t in (0.0, 1.0, 2.0):
        assert w.wait("k", t) == 0
        w.add("k", t)
    assert w.wait("k", 3.0) == pytest.approx(7.0)  # until the first attempt leaves
    assert w.wait("other", 3.0) == 0
    assert w.wait("k", 10.0) == 0  # the attempt at 0 left at 10
    w.add("k", 10.0)
    assert w.wait("k", 10.5) == pytest.approx(0.5)
    assert w.wait("k", 12.0) == 0 and len(w) == 1
    assert w.wait("k", 30.0) == 0 and len(w) == 0  # a key with nothing left is dropped


def test_window_remove_gives_back_one_attempt_and_clear_all() -> None:
    w: Window[str] = Window(limit=2, window=10.0)
    w.add("k", 1.0)
    w.add("k", 2.0)
    assert w.wait("k", 3.0) > 0
    w.remove("k", 2.0)
    assert w.wait("k", 3.0) == 0
    w.remove("k", 99.0)  # never recorded: nothing happens
    w.remove("nobody", 1.0)
    assert len(w) == 1
    w.remove("k", 1.0)
    assert len(w) == 0
    w.add("k", 4.0)
    w.add("k", 5.0)
    w.clear("k")
    assert w.wait("k", 6.0) == 0 and len(w) == 0


def test_window_drops_stale_keys_and_caps_live_ones() -> None:
    w: Window[str] = Window(limit=5, window=10.0, max_keys=100)
    for i in range(50):
        w.add(f"old{i}", float(i) / 100)
    w.add("new", 20.0)  # every old key's attempts have left the window
    assert len(w) == 1
    for i in range(10_000):
        w.add(f"spray{i}", 30.0 + i / 1e6)
    assert len(w) == 100
    assert w.wait("spray9999", 31.0) == 0 and w.wait("spray0", 31.0) == 0
    assert "spray9999" in w._times and "spray0" not in w._times  # the stalest went first


def test_throttle_counts_an_attempt_before_its_result() -> None:
    t = LoginThrottle(limit=3, window=60.0)
    attempts = [t.begin("alice", f"10.0.0.{i}", 0.0) for i in range(3)]  # none finished yet
    with pytest.raises(Throttled) as exc:
        t.begin("alice", "10.0.0.9", 1.5)
    assert exc.value.retry_after == 59  # ceil(58.5)
    t.not_checked(attempts[0])  # e.g. the pool was full: it does not count
    t.begin("alice", "10.0.0.9", 2.0)


def test_throttle_limits_an_address_across_usernames() -> None:
    t = LoginThrottle(limit=3, window=60.0)
    for i in range(3):
        t.begin(f"user{i}", "10.0.0.1", 0.0)
    with pytest.raises(Throttled):
        t.check_address("10.0.0.1", 1.0)
    with pytest.raises(Throttled):
        t.begin("user9", "10.0.0.1", 1.0)
    t.check_address("10.0.0.2", 1.0)
    t.begin("user9", "10.0.0.2", 1.0)


def test_a_success_clears_its_username_and_only_its_own_address_slot() -> None:
    t = LoginThrottle(limit=3, window=60.0)
    t.begin("bob", "10.0.0.1", 0.0)
    t.begin("alice", "10.0.0.1", 0.0)
    ok = t.begin("alice", "10.0.0.1", 0.0)
    t.succeeded(ok)
    assert t.usernames.wait(username_key("alice"), 1.0) == 0
    assert len(t.usernames) == 1  # bob's attempt is still there
    t.begin("carol", "10.0.0.1", 1.0)  # the address had 2 failures, now 3
    with pytest.raises(Throttled):
        t.begin("dave", "10.0.0.1", 1.0)


def test_throttled_retry_after_is_a_whole_second_at_least() -> None:
    assert Throttled(0.001).retry_after == 1
    assert Throttled(2.2).retry_after == 3


def test_a_spray_of_usernames_and_addresses_keeps_the_tables_bounded() -> None:
    t = LoginThrottle(limit=10, window=300.0, max_keys=1000)
    for i in range(20_000):
        t.begin(f"sprayed-name-{i}" * 200, f"2001:db8:{i:x}::1", i / 1e4)
    assert len(t.usernames) == 1000 and len(t.addresses) == 1000


def test_username_keys_are_small_and_distinct() -> None:
    assert len(username_key("a" * 4000)) == 16
    assert username_key("alice") != username_key("Alice")
    assert len(username_key("\ud800")) == 16  # never raises


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("?", "?"),
    ],
)
def test_address_keys(address: str, key: str) -> None:
    assert address_key(address) == key


# ---------------------------------------------------------------- the password pool


def test_hash_and_check() -> None:
    hashed = hash_password("s3cret")
    assert check_password(hashed, "s3cret")
    assert not check_password(hashed, "wrong")
    assert not check_password(None, "s3cret") and not check_password("", "s3cret")
    assert not check_password("not-an-argon2-hash", "s3cret")


async def test_checker_checks_real_passwords() -> None:
    checker = PasswordChecker(workers=1, queue=4)
    try:
        hashed = hash_password("s3cret")
        assert await checker.check(hashed, "s3cret")
        assert not await checker.check(hashed, "wrong")
        assert not await checker.check(None, "anything")  # checked against the dummy hash
        assert checker.in_flight == 0
    finally:
        checker.close()


class Gate:
    """Stands in for argon2's verify: holds every call until `open()`."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self._open = threading.Event()
        self.threads: set[str] = set()
        self.hashes: list[str | None] = []

    def __call__(self, password_hash: str | None, password: str) -> bool:
        self.threads.add(threading.current_thread().name)
        self.hashes.append(password_hash)
        self.entered.release()
        self._open.wait(30)
        return password == "right"

    async def wait_entered(self) -> None:
        """Until one more check is running (polled: the default executor may be the one held)."""
        for _ in range(1000):
            if self.entered.acquire(blocking=False):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("no check started within 10 s")

    def open(self) -> None:
        self._open.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    gate = Gate()
    monkeypatch.setattr(passwords, "check_password", gate)
    yield gate
    gate.open()


async def settled(condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 30 s")


async def test_password_threads_are_not_the_default_executor(gate: Gate) -> None:
    loop = asyncio.get_running_loop()
    default = ThreadPoolExecutor(1, thread_name_prefix="default")
    loop.set_default_executor(default)  # one thread: if argon2 ran there, this would starve
    checker = PasswordChecker(workers=2, queue=2)
    try:
        checks = [asyncio.ensure_future(checker.check("h", "right")) for _ in range(2)]
        await gate.wait_entered()
        await gate.wait_entered()  # every password thread is held
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "done"), 10) == "done"
        assert all(name.startswith("kefu-password") for name in gate.threads), gate.threads
        gate.open()
        assert await asyncio.gather(*checks) == [True, True]
    finally:
        gate.open()
        checker.close()
        default.shutdown(wait=False)


async def test_the_pool_refuses_beyond_its_queue(gate: Gate) -> None:
    checker = PasswordChecker(workers=1, queue=1)
    try:
        running = asyncio.ensure_future(checker.check("h", "right"))
        await gate.wait_entered()
        waiting = asyncio.ensure_future(checker.check("h", "wrong"))
        await asyncio.sleep(0)
        assert checker.in_flight == 2
        with pytest.raises(PasswordsBusy):
            await asyncio.wait_for(checker.check("h", "right"), 10)
        gate.open()
        assert await running is True and await waiting is False
        await settled(lambda: checker.in_flight == 0)
        assert await checker.check("h", "right")
    finally:
        checker.close()


async def test_a_caller_that_goes_away_frees_its_slot_only_when_the_thread_does(
    gate: Gate,
) -> None:
    checker = PasswordChecker(workers=1, queue=1)
    try:
        running = asyncio.ensure_future(checker.check("h", "x"))
        await gate.wait_entered()
        waiting = asyncio.ensure_future(checker.check("h", "x"))
        await asyncio.sleep(0)
        waiting.cancel()  # not started: dropped, and its slot is free again
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await settled(lambda: checker.in_flight == 1)
        running.cancel()  # started: the thread goes on, and keeps its slot until done
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await asyncio.sleep(0.05)
        assert checker.in_flight == 1
        gate.open()
        await settled(lambda: checker.in_flight == 0)
    finally:
        checker.close()


async def test_close_drops_waiting_checks(gate: Gate) -> None:
    checker = PasswordChecker(workers=1, queue=2)
    running = asyncio.ensure_future(checker.check("h", "right"))
    await gate.wait_entered()
    waiting = asyncio.ensure_future(checker.check("h", "right"))
    await asyncio.sleep(0)
    checker.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.open()
    assert await running is True


# ---------------------------------------------------------------- the route, in process


class Accounts:
    """The one method of kefu.server.accounts.Accounts that sign-in uses."""

    def __init__(self, *accounts: Account) -> None:
        self.named = {a.username: a for a in accounts}
        self.broken = False

    async def by_username(self, username: str) -> Account | None:
        if self.broken:
            raise RuntimeError("the database is down")
        return self.named.get(username)


ALICE = Account("1", "alice", Role.WAITER, "Alice", "", "alice-hash")
NOPASS = Account("2", "nopass", Role.WAITER)


@contextlib.asynccontextmanager
async def app_client(
    tmp_path: Path, accounts: Accounts, checker: PasswordChecker, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    config = Settings(
        secret="unit-test-secret-" + "x" * 32,
        database_url=f"sqlite:///{tmp_path / 'kefu.db'}",
        **settings,
    )
    app = Starlette(routes=[login_route(config, accounts, checker)])  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("10.1.1.1", 9))
    async with httpx.AsyncClient(transport=transport, base_url="http://kefu.test") as http:
        yield http


def form(username: str, password: str) -> dict[str, str]:
    return {"username": username, "password": password}


async def test_route_signs_in_and_refuses(tmp_path: Path, gate: Gate) -> None:
    gate.open()  # the stand-in check: "right" is every account's password
    checker = PasswordChecker(1, 4)
    async with app_client(tmp_path, Accounts(ALICE, NOPASS), checker) as http:
        ok = await http.post("/v1/auth/login", json=form("alice", "right"))
        assert ok.status_code == 200, ok.text
        assert ok.json()["profile"]["username"] == "alice" and ok.json()["role"] == "waiter"
        for creds in (form("alice", "wrong"), form("nopass", "right"), form("ghost", "right")):
            resp = await http.post("/v1/auth/login", json=creds)
            assert resp.status_code == 401, resp.text
            assert resp.json()["message"] == "wrong username or password"
        # no account, or no password: checked all the same, against the dummy hash
        assert gate.hashes == [
            "alice-hash",
            "alice-hash",
            passwords.dummy_hash(),
            passwords.dummy_hash(),
        ]
        bad_length = await http.post(
            "/v1/auth/login",
            content=b"{}",
            headers={"content-type": "application/json", "content-length": "two"},
        )
        assert bad_length.status_code == 400
        assert bad_length.json()["message"] == "Content-Length is not a number"
    checker.close()


async def test_route_503_when_the_pool_is_full_gives_the_attempt_back(
    tmp_path: Path, gate: Gate
) -> None:
    checker = PasswordChecker(workers=1, queue=0)
    async with app_client(tmp_path, Accounts(ALICE), checker, login_max_failures=2) as http:
        held = asyncio.ensure_future(http.post("/v1/auth/login", json=form("alice", "wrong")))
        await gate.wait_entered()
        busy = await http.post("/v1/auth/login", json=form("bob", "guess"))
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json() == {
            "status": 0,
            "message": "too many sign-ins at once; try again",
            "data": None,
        }
        gate.open()
        assert (await held).status_code == 401  # the address has 1 failure
        second = await http.post("/v1/auth/login", json=form("carol", "guess"))
        assert second.status_code == 401  # 2: the 503 was not counted
        third = await http.post("/v1/auth/login", json=form("dave", "guess"))
        assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
    checker.close()


async def test_route_gives_the_attempt_back_when_the_lookup_fails(
    tmp_path: Path, gate: Gate
) -> None:
    gate.open()
    accounts = Accounts(ALICE)
    checker = PasswordChecker(1, 4)
    async with app_client(tmp_path, accounts, checker, login_max_failures=1) as http:
        accounts.broken = True
        assert (await http.post("/v1/auth/login", json=form("alice", "x"))).status_code == 500
        accounts.broken = False
        assert (await http.post("/v1/auth/login", json=form("alice", "x"))).status_code == 401
        assert (await http.post("/v1/auth/login", json=form("alice", "x"))).status_code == 429
    checker.close()


async def test_route_a_client_that_goes_away_mid_body(tmp_path: Path) -> None:
    config = Settings(secret="unit-test-secret-" + "x" * 32)
    checker = PasswordChecker(1, 1)
    app = Starlette(routes=[login_route(config, Accounts(), checker)])  # type: ignore[arg-type]
    messages = [
        {"type": "http.request", "body": b'{"username": "al', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/auth/login",
        "raw_path": b"/v1/auth/login",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"kefu.test"), (b"content-type", b"application/json")],
        "client": None,
        "server": ("kefu.test", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert b"cut short" in sent[1]["body"]
    checker.close()


async def test_route_refusals_before_any_check(tmp_path: Path, gate: Gate) -> None:
    """Each refusal in the order the route makes them (the e2e tests cover them on the wire)."""
    checker = PasswordChecker(1, 4)
    json_type = {"content-type": "application/json"}

    async def too_big() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 1000

    async with app_client(
        tmp_path, Accounts(ALICE), checker, login_max_failures=1, trusted_proxies="10.1.1.1"
    ) as http:
        post = http.post
        assert (
            await post("/v1/auth/login", json={}, headers={"origin": "https://e.vil"})
        ).status_code == 403
        assert (await post("/v1/auth/login", content=b"{}")).status_code == 415
        assert (
            await post("/v1/auth/login", content=b"x" * 5000, headers=json_type)
        ).status_code == 413
        assert (
            await post("/v1/auth/login", content=too_big(), headers=json_type)
        ).status_code == 413
        for raw in (b"{", b"[" * 3000, b"[]", b'{"username": " ", "password": "x"}'):
            assert (await post("/v1/auth/login", content=raw, headers=json_type)).status_code == 400
        for content_type, status in (
            ("application/json; charset=UTF-8", 400),  # accepted, then the body is bad
            ('application/json; charset="utf-8"', 400),
            ("application/json; charset=utf-16", 415),
            ("application/json; boundary=x", 415),
            ("text/plain", 415),
        ):
            resp = await post(
                "/v1/auth/login", content=b"{", headers={"content-type": content_type}
            )
            assert resp.status_code == status, content_type
        lone = b'{"username": "alice", "password": "\\udfff"}'
        assert (await post("/v1/auth/login", content=lone, headers=json_type)).status_code == 400
        gate.open()
        assert (await post("/v1/auth/login", json=form("alice", "wrong"))).status_code == 401
        # the address is spent: refused before its body is even read
        blocked = await post("/v1/auth/login", content=b"not json", headers=json_type)
        assert blocked.status_code == 429
        # from another client behind the trusted proxy: the address may, the username may not
        forwarded = {"x-forwarded-for": "192.0.2.1"}
        alice = await post("/v1/auth/login", json=form("alice", "right"), headers=forwarded)
        assert alice.status_code == 429
        other = await post("/v1/auth/login", json=form("bob", "right"), headers=forwarded)
        assert other.status_code == 401
    checker.close()
