"""Never in logs: tokens, auth frames, message bodies (runs last in this directory).

1. A session full of secrets (good and bad tokens, texts, invalid frames that
   carry secrets, refusals) against a server logging at `info`, then a scan.
2. The same at `debug`.
3. Every log written by the servers of this test session, scanned for every
   token and message text the suite remembered, and for anything shaped
   like a JWT.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import pytest

from support.client import new_op_id, pair, person, say

from .conftest import LOG_DIRS, SECRETS, remember, server_logs
from .wire import token_of

pytestmark = pytest.mark.timeout(60)

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")
AUTH_FRAME = re.compile(r'"type"\s*:\s*"auth"|"token"\s*:')


async def _secret_session(srv: Any) -> set[str]:
    secrets: set[str] = set()
    wp, up = person("waiter"), person("user")
    w = await srv.waiter(wp)
    u = await srv.user(up)
    await pair(u, w)
    for i in range(3):
        text = f"my card number is 4111-{uuid.uuid4()} ({i})"
        secrets.add(text)
        await say(u, w, text)
        reply = f"thanks, your password is {uuid.uuid4()}"
        secrets.add(reply)
        await say(w, u, reply)
    # refused frames that carry secrets
    bad = await srv.open("user", "bad")
    wrong = up.token(secret="the-wrong-secret-" + "z" * 40)
    expired = up.token(ttl=-10)
    secrets |= {wrong, expired}
    for token in (wrong, expired):
        await bad.send({"type": "auth", "op_id": new_op_id(), "payload": {"token": token}})
        await bad.expect_error(999999)
    leak = f"invalid frame with a secret {uuid.uuid4()}"
    secrets.add(leak)
    await u.send_raw('{"type": "message_text", "payload": {"text": "' + leak + '"')  # bad JSON
    await u.expect_error(100000)
    await u.send({"type": "message_text", "payload": {"text": leak, "x": 1}, "to": 5})
    await u.expect("error")
    await w.send({"type": "message_text", "to": str(uuid.uuid4()), "payload": {"text": leak}})
    await w.expect_error(100002)
    # a token sent where a message goes
    good = token_of(up)
    secrets.add(good)
    await u.send({"type": "message_text", "payload": {"text": good}})
    await u.expect("message_text_success")
    await w.expect("message_text")
    await srv.close_clients()
    await asyncio.sleep(0.3)
    for s in secrets:
        remember(s)
    return secrets


def _leaks(logs: str, secrets: set[str]) -> list[str]:
    found = [s[:40] for s in secrets if s in logs]
    found += JWT.findall(logs)[:3]
    found += AUTH_FRAME.findall(logs)[:3]
    return found


async def test_info_logs_hold_no_secrets(kefu_server: Any) -> None:
    srv = kefu_server(log_level="info", resume_grace=0)
    secrets = await _secret_session(srv)
    logs = server_logs(srv)
    assert "connection open" in logs or "accepted" in logs  # the logs are really there
    assert _leaks(logs, secrets) == []


async def test_debug_logs_hold_no_secrets(kefu_server: Any) -> None:
    srv = kefu_server(log_level="debug", resume_grace=0)
    secrets = await _secret_session(srv)
    assert _leaks(server_logs(srv), secrets) == []


def test_no_log_of_this_session_holds_a_secret() -> None:
    """Every server log of the suite, debug-level runs included."""
    scanned = 0
    leaks: list[tuple[str, list[str]]] = []
    secrets = set(SECRETS)
    for d in LOG_DIRS:
        for path in sorted(d.glob("server-*.std*")):
            text = path.read_text(errors="replace")
            scanned += 1
            found = _leaks(text, secrets)
            if found:
                leaks.append((str(path), found))
    print("LOG SCAN:", json.dumps({"files": scanned, "secrets": len(secrets), "leaks": leaks}))
    assert leaks == []
