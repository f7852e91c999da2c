"""Never in logs: tokens, auth frames, message bodies.

1. A session full of secrets (good and bad tokens, texts, invalid frames that
   carry secrets, refusals) against a server logging at `info`, then a scan.
2. The same at `debug`.
3. The scan itself (`support.logscan`), which every server fixture runs on its
   servers' logs when they stop: each test's servers for the tokens and texts
   remembered during it, the shared server's at the end of the session, and
   all of them for anything shaped like a JWT or an auth frame. So the whole
   suite's logs are scanned without a test that has to run last.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from support import logscan
from support.client import new_op_id, pair, person, say
from support.logscan import leaks, remember

from .conftest import server_logs
from .wire import token_of

pytestmark = pytest.mark.timeout(60)


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


async def test_info_logs_hold_no_secrets(kefu_server: Any) -> None:
    srv = kefu_server(log_level="info", resume_grace=0)
    secrets = await _secret_session(srv)
    logs = server_logs(srv)
    assert "Application startup complete" in logs  # the info logs are really there
    assert leaks(logs, secrets) == []


async def test_debug_logs_hold_no_secrets(kefu_server: Any) -> None:
    srv = kefu_server(log_level="debug", resume_grace=0)
    secrets = await _secret_session(srv)
    assert leaks(server_logs(srv), secrets) == []


def test_the_scan_finds_a_remembered_secret_a_jwt_and_an_auth_frame(tmp_path: Path) -> None:
    text = f"a private message {uuid.uuid4()}"
    with logscan.recording() as secrets:
        token = person("user").token()  # minted by support.client: remembered by itself
        remember(text, "short")
    remember("remembered after the recording ended")
    assert {token, text} == secrets  # "short" could be in a log by chance: not kept
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "server-1.stderr").write_text("INFO: Application startup complete.\n")
    assert logscan.check([clean], secrets) == 1
    cases = {
        "secret": f"INFO: got {text}\n",
        "jwt, not remembered": "DEBUG: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4eXoxMjMifQ.c2lnbmF0dXJl\n",
        "auth frame": 'DEBUG: {"type": "auth", "payload": {}}\n',
    }
    for name, line in cases.items():
        leaky = tmp_path / name.replace(" ", "-").replace(",", "")
        leaky.mkdir()
        (leaky / "server-2.stdout").write_text(line)
        with pytest.raises(AssertionError, match="server logs hold secrets"):
            logscan.check([leaky], secrets)
