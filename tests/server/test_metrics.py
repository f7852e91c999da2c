"""`GET /metrics` on a running server: what it counts, who may read it, the dashboard's names."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.client import new_op_id, pair, person, say
from support.servers import REPO, MakeServer, Server

pytestmark = pytest.mark.timeout(60)

DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"


async def scrape(srv: Server, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.get(f"{srv.url}/metrics", headers=headers)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """(sample name, labels) -> value, from the text format (parsed as Prometheus would)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def read(srv: Server) -> Samples:
    resp = await scrape(srv)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=")
    return samples(resp.text)


async def test_metrics_count_what_happened(make_server: MakeServer) -> None:
    srv = make_server(max_users_per_waiter=1)
    waiter = await srv.waiter()
    user = await srv.user()
    await pair(user, waiter)
    for i in range(3):
        await say(user, waiter, f"hello {i}")
    await say(waiter, user, "hi")
    op = new_op_id()
    await user.send_text("again", op_id=op)
    await waiter.expect("message_text")
    await user.send({"type": "message_text", "op_id": op, "payload": {"text": "again"}})
    await user.expect("message_text_success", op_id=op)  # a resend: acked, stored once
    await user.send({"type": "nonsense", "op_id": "x1"})
    await user.expect_error(100000, op_id="x1")
    queued = await srv.user()
    await queued.send({"type": "connect"})
    await queued.expect("connect_queue")
    stranger = await srv.open("user", "bad-token")
    await stranger.send({"type": "auth", "payload": {"token": "not.a.token"}})
    await stranger.expect_error(999999)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        resp = await http.post(
            f"{srv.url}/v1/auth/login", json={"username": "nobody", "password": "wrong"}
        )
    assert resp.status_code == 401

    m = await read(srv)
    assert value(m, "kefu_messages_total", type="message_text", result="stored") == 5
    assert value(m, "kefu_messages_total", type="message_text", result="duplicate") == 1
    assert value(m, "kefu_frames_total", type="message_text", result="accepted") == 6
    assert value(m, "kefu_frames_total", type="unknown", result="invalid") == 1
    assert value(m, "kefu_frames_total", type="connect", result="accepted") == 2
    assert value(m, "kefu_errors_total", status="100000") == 1
    assert value(m, "kefu_errors_total", status="999999") == 1
    assert value(m, "kefu_auth_failures_total", side="user") == 1
    assert value(m, "kefu_login_failures_total", reason="bad_credentials") == 1
    assert value(m, "kefu_message_ack_seconds_count") == 5  # the resend is not timed again
    assert 0 < value(m, "kefu_message_ack_seconds_sum") < 5 * 5.0
    assert value(m, "kefu_queue_wait_seconds_count") == 1  # the user served from the queue
    assert value(m, "kefu_sockets", side="user", state="authenticated") == 2
    assert value(m, "kefu_sockets", side="user", state="unauthenticated") == 1
    assert value(m, "kefu_sockets", side="waiter", state="authenticated") == 1
    assert value(m, "kefu_queue_length") == 1
    assert value(m, "kefu_waiters_ready") == 1
    assert value(m, "kefu_conversations_active") == 1
    assert value(m, "kefu_leader") == 1
    commits = value(m, "kefu_store_commit_seconds_count")
    assert commits >= 1  # every batch of the writer
    assert value(m, "kefu_store_commit_seconds_bucket", le="+Inf") == commits
    assert value(m, "kefu_store_batch_ops_count") >= commits

    await stranger.close()
    for _ in range(100):  # the server sees the close a moment later
        m = await read(srv)
        if value(m, "kefu_socket_closes_total", side="user", code="peer") == 1:
            break
        await asyncio.sleep(0.05)
    assert value(m, "kefu_socket_closes_total", side="user", code="peer") == 1
    assert value(m, "kefu_sockets", side="user", state="unauthenticated") == 0


async def test_labels_are_bounded(make_server: MakeServer) -> None:
    """Nothing per socket or per account: a client's made-up frame type is `unknown`."""
    srv = make_server()
    user = await srv.user()
    made_up = f"type-{new_op_id()}"
    await user.send({"type": made_up, "op_id": "x"})
    await user.expect_error(100000)
    resp = await scrape(srv)
    assert made_up not in resp.text
    assert user.uuid is not None and user.uuid not in resp.text
    assert user.person is not None and user.person.id not in resp.text


async def test_only_allowed_addresses_may_scrape(make_server: MakeServer) -> None:
    srv = make_server(metrics_allow="10.0.0.0/8, 192.0.2.7", trusted_proxies="127.0.0.1")
    resp = await scrape(srv)  # from 127.0.0.1: a trusted proxy, but not a scraper
    assert resp.status_code == 403
    assert "kefu_" not in resp.text
    resp = await scrape(srv, {"X-Forwarded-For": "10.1.2.3"})  # forwarded by the trusted proxy
    assert resp.status_code == 200
    assert "kefu_frames_total" in resp.text
    resp = await scrape(srv, {"X-Forwarded-For": "198.51.100.1"})
    assert resp.status_code == 403
    resp = await scrape(srv, {"X-Forwarded-For": "10.1.2.3, 198.51.100.1"})  # rightmost counts
    assert resp.status_code == 403
    # the probes stay open to the load balancer
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        assert (await http.get(f"{srv.url}/readyz")).status_code == 200


async def test_a_peer_not_behind_a_trusted_proxy_cannot_claim_an_address(
    make_server: MakeServer,
) -> None:
    srv = make_server(metrics_allow="10.0.0.0/8")  # no trusted proxies: the header is ignored
    resp = await scrape(srv, {"X-Forwarded-For": "10.1.2.3"})
    assert resp.status_code == 403
    srv2 = make_server(metrics_allow="127.0.0.1")
    assert (await scrape(srv2)).status_code == 200


async def test_metrics_take_only_get(make_server: MakeServer) -> None:
    srv = make_server()
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        resp = await http.post(f"{srv.url}/metrics", content=b"x")
        assert resp.status_code == 405
        resp = await http.get(f"{srv.url}/metrics?name[]=kefu_leader&x=%ff")
        assert resp.status_code == 200  # a query is ignored, not an error
        assert "kefu_leader" in resp.text


def test_a_bad_allow_list_stops_the_server(tmp_path: Path) -> None:
    from support.servers import kefu_env, run_kefu

    env = kefu_env(tmp_path, metrics_allow="10.0.0.0/33")
    result = run_kefu(["serve", "--port", "1"], env, tmp_path, timeout=60)
    assert result.returncode != 0
    assert "not an IP address or network: '10.0.0.0/33'" in result.stderr


def dashboard_metric_names() -> set[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(board)
    assert len(exprs) >= 8, "the dashboard has lost its queries"
    return {name for e in exprs for name in re.findall(r"\bkefu_[a-z0-9_]+", e)}


async def test_every_metric_the_dashboard_queries_exists(make_server: MakeServer) -> None:
    srv = make_server()
    text = (await scrape(srv)).text
    exposed = set(re.findall(r"^(?:# (?:HELP|TYPE) )?(kefu_[a-z0-9_]+)", text, re.MULTILINE))
    used = dashboard_metric_names()
    assert used, "no kefu metric in the dashboard"
    assert used - exposed == set(), (
        f"the dashboard queries metrics /metrics lacks: {used - exposed}"
    )


def test_the_dashboard_is_importable_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["title"]
    assert board["uid"]
    titles = [p["title"] for p in board["panels"] if p.get("type") != "row"]
    for wanted in ("Queue", "Ready waiters", "Conversations", "Messages", "Commit latency"):
        assert any(wanted.lower() in t.lower() for t in titles), (wanted, titles)
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


async def test_people_are_not_in_the_metrics(make_server: MakeServer) -> None:
    srv = make_server()
    who = person("user", nickname="Visible Name")
    user = await srv.user(who)
    await user.send({"type": "connect"})
    await user.expect("connect_queue")
    text = (await scrape(srv)).text
    assert "Visible Name" not in text and who.username not in text
