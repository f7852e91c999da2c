"""Request bodies of the admin API: JSON only (415) and at most `MAX_BODY_BYTES` (413).

A pure ASGI middleware in front of the API app: a body announced larger than
the limit is refused before it is read; a body sent without a length (or
longer than it said) is counted as it arrives and refused at the limit, the
rest read and dropped. A request with a body must say it is
`application/json`, so no cross-site form can post to the API. The body,
once accepted, is handed to the app whole.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
_NO_STORE = (b"cache-control", b"no-store")


def is_json(content_type: str | None) -> bool:
    """`application/json` (or `application/<x>+json`), with at most a UTF-8 charset."""
    if content_type is None:
        return False
    media_type, *params = (part.strip() for part in content_type.split(";"))
    media_type = media_type.lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            return False
    return True


class BodyLimits:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if length is not None and not length.strip().isdigit():
            await _refuse(send, 400, "Content-Length is not a number")
            return
        if not chunked and (length is None or int(length) == 0):
            await self.app(scope, receive, send)  # no body
            return
        if not is_json(headers.get("content-type")):
            await _refuse(send, 415, "the body must be application/json")
            return
        if length is not None and int(length) > self.max_bytes:
            await _refuse(send, 413, f"the body is larger than {self.max_bytes} bytes")
            return
        body = await self._read(receive)
        if body is None:
            await _refuse(send, 413, f"the body is larger than {self.max_bytes} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the limit (the rest is read and dropped)."""
        body = bytearray()
        over = False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return bytes(body) if not over else None
            chunk = message.get("body", b"")
            if not over:
                if len(body) + len(chunk) > self.max_bytes:
                    over = True
                    body.clear()
                else:
                    body += chunk
            if not message.get("more_body", False):
                return None if over else bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: a disconnect, when it comes

    return replay


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"status": status, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                _NO_STORE,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
