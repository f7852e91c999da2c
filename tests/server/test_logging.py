"""The server's logs (`kefu.logs`): timestamps, JSON lines, uvicorn's lines, context, no secrets.

The e2e tests run `kefu serve` and read what it wrote to stderr; the
fixture's log scan (`support.logscan`) then looks for the tokens and texts
they used, and for the query-string secrets remembered here.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kefu import logs
from kefu.settings import Settings
from support.client import new_op_id, open_socket, pair, person, say
from support.logscan import leaks, remember
from support.servers import MakeServer, Server, free_port, kefu_env, run_kefu
from support.services import redis_prefix, require_redis

pytestmark = pytest.mark.timeout(90)

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEXT_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: "
)


def _stderr(srv: Server) -> str:
    """Everything the server wrote to stderr, all its runs."""
    return "".join(p.read_text() for p in sorted(srv.data_dir.glob("server-*.stderr")))


def _records(srv: Server) -> list[dict[str, Any]]:
    """Each stderr line as JSON; fails on a line that is not one JSON object."""
    found = []
    for line in _stderr(srv).splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(record, dict), line
        found.append(record)
    return found


async def _traffic(srv: Server, query_secret: str) -> None:
    """A chat, and an HTTP request whose query string carries a secret."""
    u, w = await srv.user(), await srv.waiter()
    await pair(u, w)
    await say(u, w, f"a private text {uuid.uuid4()}")
    async with httpx.AsyncClient(trust_env=False) as http:
        resp = await http.get(f"{srv.url}/v1/ws/status?token={query_secret}")
        assert resp.status_code == 200
    await srv.close_clients()


# --------------------------------------------------------------------------- kefu serve


async def test_json_lines_carry_time_level_logger_message_and_node(
    make_server: MakeServer,
) -> None:
    query_secret = f"query-secret-{uuid.uuid4()}"
    remember(query_secret)
    srv = make_server(log_format="json", log_level="info")
    await _traffic(srv, query_secret)
    srv.stop()
    records = _records(srv)
    assert records, "no log lines at info"
    for record in records:
        assert {"time", "level", "logger", "message", "node"} <= set(record), record
        assert TIME.match(record["time"]), record
        assert record["level"] in ("debug", "info", "warning", "error", "critical"), record
        assert record["node"] == f"127.0.0.1:{srv.port}", record
    # uvicorn's lines, in the same format
    messages = {(r["logger"], r["message"]) for r in records}
    assert ("uvicorn.error", "Application startup complete.") in messages
    assert ("uvicorn.error", "Application shutdown complete.") in messages
    # its access log, without the query string
    access = [r["message"] for r in records if r["logger"] == "uvicorn.access"]
    assert any('"GET /v1/ws/status?(hidden) HTTP/1.1" 200' in m for m in access), access
    assert query_secret not in _stderr(srv)


async def test_text_lines_start_with_a_utc_timestamp(make_server: MakeServer) -> None:
    query_secret = f"query-secret-{uuid.uuid4()}"
    remember(query_secret)
    srv = make_server(log_level="info")
    await _traffic(srv, query_secret)
    srv.stop()
    lines = _stderr(srv).splitlines()
    assert lines
    for line in lines:
        # a record starts with its time; its continuation lines (a traceback) are indented
        assert TEXT_LINE.match(line) or line.startswith("    "), line
    assert any(
        re.search(r"Z INFO uvicorn\.error: Application startup complete\.$", ln) for ln in lines
    )
    assert any("INFO uvicorn.access: " in ln and "/v1/ws/status?(hidden) " in ln for ln in lines)
    assert query_secret not in _stderr(srv)


async def test_the_default_level_hides_uvicorns_info_lines(make_server: MakeServer) -> None:
    srv = make_server()
    await _traffic(srv, "not-a-secret")
    srv.stop()
    text = _stderr(srv)
    assert "Application startup complete" not in text
    assert "uvicorn.access" not in text


async def test_plain_transport_websocket_lines_lose_their_query_string(
    make_server: MakeServer,
) -> None:
    """uvicorn logs each accepted WebSocket with its path; a query string must not go along."""
    query_secret = f"query-secret-{uuid.uuid4()}"
    remember(query_secret)
    srv = make_server(log_format="json", log_level="debug", transport="plain")
    sock = await open_socket(srv.ws_url(f"/v1/ws/connect/user?token={query_secret}"), "q")
    srv.clients.append(sock)
    await sock.auth(person("user"))
    await srv.close_clients()
    srv.stop()
    records = _records(srv)
    accepted = [r["message"] for r in records if "[accepted]" in r["message"]]
    assert accepted and all("/v1/ws/connect/user?(hidden)" in m for m in accepted), accepted
    assert query_secret not in _stderr(srv)
    # at debug, too, no frame goes to the log
    assert leaks(_stderr(srv), {query_secret}) == []
    assert not any(r["level"] == "debug" and r["logger"] == "uvicorn.error" for r in records)


async def test_a_failure_a_socket_met_names_its_socket_account_and_op_id(
    make_server: MakeServer,
) -> None:
    """A rating while the database is locked fails; its log line says whose it was."""
    srv = make_server(log_format="json")
    rater = await srv.user(label="rater")
    w = await srv.waiter()
    await pair(rater, w)
    await rater.send({"type": "disconnect"})
    await rater.expect("disconnected")
    await asyncio.sleep(0.2)
    lock = sqlite3.connect(srv.db_path, isolation_level=None, timeout=1)
    lock.execute("BEGIN IMMEDIATE")  # the rating's write waits, then fails
    try:
        op = new_op_id()
        await rater.send({"type": "rate", "op_id": op, "payload": {"rate": 5}})
        await rater.expect_error(0, timeout=20, op_id=op)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    await srv.close_clients()
    srv.stop()
    failed = [r for r in _records(srv) if r.get("op_id") == op]
    assert len(failed) == 1, _stderr(srv)
    assert failed[0]["level"] == "warning"
    assert failed[0]["socket"] == rater.uuid
    assert rater.person is not None and failed[0]["account"] == rater.person.id


async def test_a_cluster_node_is_named_by_its_cluster_name(make_server: MakeServer) -> None:
    srv = make_server(log_format="json", broker_url=require_redis(), broker_prefix=redis_prefix())
    srv.stop()
    records = _records(srv)
    joined = [r for r in records if r["message"].startswith("cluster node ")]
    assert len(joined) == 1, records
    name = joined[0]["message"].split()[2]  # "cluster node <name> joined (...)"
    assert re.fullmatch(r"\d+-[0-9a-f]{8}", name), joined
    assert joined[0]["node"] == name
    assert records[-1]["node"] == name  # and every line after it


def test_a_startup_failure_in_json_is_one_json_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://kefu:not-to-be-shown@127.0.0.1:{free_port()}/kefu"
    env = kefu_env(tmp_path, database_url=url, port=free_port(), log_format="json")
    proc = run_kefu(["serve"], env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    record = json.loads(lines[0])
    assert record["level"] == "critical" and TIME.match(record["time"]), record
    assert "postgresql://kefu:***@127.0.0.1" in record["message"], record
    assert "not-to-be-shown" not in proc.stderr + proc.stdout


# --------------------------------------------------------------------------- the formatters


@pytest.fixture
def setup_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., io.StringIO]]:
    """`setup_logs(**settings)`: `logs.setup` into a buffer; logging as it was afterwards."""
    monkeypatch.setattr(logs, "_node", logs._node)
    monkeypatch.setattr(logs, "_format", logs._format)
    root = logging.getLogger()
    saved = {name: logging.getLogger(name) for name in logs.LOGGERS}
    state = [(lg, lg.level, lg.handlers[:], lg.propagate) for lg in (root, *saved.values())]

    def setup(**settings: Any) -> io.StringIO:
        out = io.StringIO()
        logs.setup(Settings(**settings), stream=out)
        return out

    yield setup
    for lg, level, handlers, propagate in state:
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate


def _boom(logger: logging.Logger, message: str = "it failed") -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception(message, extra={"socket": "s-1", "account": "a-1", "op_id": "o-1"})


def test_json_has_the_context_a_call_passes_and_its_exception(
    setup_logs: Callable[..., io.StringIO],
) -> None:
    out = setup_logs(log_format="json", port=9999)
    logger = logging.getLogger("kefu.test")
    _boom(logger)
    logger.warning("no context", extra={"socket": None})
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "it failed" and first["level"] == "error"
    assert first["logger"] == "kefu.test" and TIME.match(first["time"])
    assert (first["socket"], first["account"], first["op_id"]) == ("s-1", "a-1", "o-1")
    assert first["node"] == "127.0.0.1:9999"
    assert "Traceback" in first["exc"] and "ValueError: boom" in first["exc"]
    assert set(second) == {"time", "level", "logger", "message", "node"}
    logs.set_node("3-abcdef12")  # a cluster member, once it has its name
    logger.warning("named")
    assert json.loads(out.getvalue().splitlines()[-1])["node"] == "3-abcdef12"


def test_text_has_the_context_and_indents_what_follows_the_first_line(
    setup_logs: Callable[..., io.StringIO],
) -> None:
    out = setup_logs()
    _boom(logging.getLogger("kefu.test"), "it failed\n2001-01-01T00:00:00.000Z INFO forged: x")
    first, *rest = out.getvalue().splitlines()
    assert TEXT_LINE.match(first) and first.endswith(" ERROR kefu.test: it failed"), first
    assert rest and all(line.startswith("    ") for line in rest), rest
    assert rest[0].endswith("forged: x socket=s-1 account=a-1 op_id=o-1"), rest
    assert any("ValueError: boom" in line for line in rest)


def test_uvicorns_paths_lose_their_query_strings(setup_logs: Callable[..., io.StringIO]) -> None:
    out = setup_logs(log_level="info")
    access = logging.getLogger("uvicorn.access")
    access.info('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", "/x?token=abc", "1.1", 200)
    logging.getLogger("kefu.test").info("kefu's own %s", "/y?kept")  # only uvicorn's
    text = out.getvalue()
    assert '"GET /x?(hidden) HTTP/1.1" 200' in text and "abc" not in text
    assert "/y?kept" in text


def test_the_level_applies_to_all_but_the_frame_loggers(
    setup_logs: Callable[..., io.StringIO],
) -> None:
    setup_logs(log_level="debug")
    for name in ("kefu", "kefu.store", "asyncio", "uvicorn.access", "uvicorn.asgi"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.DEBUG, name
    for name in ("uvicorn.error", "websockets"):  # at debug they log frame contents
        assert logging.getLogger(name).getEffectiveLevel() == logging.INFO, name
    setup_logs(log_level="error")
    for name in ("kefu", "uvicorn.error", "uvicorn.access", "websockets", "asyncio"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.ERROR, name


def test_a_bad_log_level_or_format_is_refused() -> None:
    for bad in ({"log_level": "loud"}, {"log_format": "xml"}):
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]
    assert Settings(log_level="INFO").log_level == "INFO"  # any case, as uvicorn took it
