"""How a delivery is signed: `X-Kefu-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.

The timestamp (Unix seconds) is sent as `X-Kefu-Timestamp` and is part of
what is signed, so a receiver that also refuses old timestamps cannot be
fed a recorded delivery again. `verify` is what a receiver does (docs/api.md
has the same in a few lines of Python).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_PREFIX = "sha256="
SECRET_BYTES = 32  # of a generated secret


def new_secret() -> str:
    """A generated webhook secret: 256 random bits, URL-safe text."""
    return "whsec_" + secrets.token_urlsafe(SECRET_BYTES)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Kefu-Signature` value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def headers(
    secret: str, event: str, delivery_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every header a delivery carries besides the HTTP client's own."""
    return {
        "Content-Type": "application/json",
        "X-Kefu-Event": event,
        "X-Kefu-Delivery": delivery_id,
        "X-Kefu-Timestamp": str(timestamp),
        "X-Kefu-Signature": signature(secret, timestamp, body),
    }


def verify(secret: str, timestamp: str, body: bytes, signed: str) -> bool:
    """True if `signed` (the `X-Kefu-Signature` header) is `body`'s at `timestamp`."""
    if not timestamp.isdigit():
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), signed)
