"""Which transport serves the chat sockets: KEFU_TRANSPORT, and what the installed uvicorn allows.

The fast transport subclasses uvicorn's httptools protocol and calls its
private methods, which any uvicorn release may change. It is used only with
the uvicorn versions it was tested against (`FAST_UVICORN`) and only if the
methods it relies on are there; otherwise the chat sockets are served by the
plain transport, with one warning, so that upgrading uvicorn never breaks a
deployment: it makes it slower until kefu is tested against that version.
"""

from __future__ import annotations

import logging
import re
from typing import Literal

import uvicorn

log = logging.getLogger("kefu.transport")

Kind = Literal["fast", "plain"]

# The uvicorn releases the fast transport was tested against: from, up to but not including.
# Widen it only after tests/server/test_direct.py, tests/server/test_transport.py and
# tests/reliability/test_conformance.py pass on the new release.
FAST_UVICORN = ((0, 54), (0, 56))


def installed_uvicorn() -> str:
    return str(getattr(uvicorn, "__version__", "unknown"))


def release(version: str) -> tuple[int, int] | None:
    """(major, minor) of a version string such as "0.55.0" or "0.56.0rc1"; None if not one."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def fast_unavailable() -> str | None:
    """Why the fast transport cannot run on the installed uvicorn, or None if it can."""
    version = installed_uvicorn()
    at = release(version)
    low, high = FAST_UVICORN
    if at is None or not low <= at < high:
        return f"uvicorn {version} is not one it was tested against (>={_v(low)},<{_v(high)})"
    try:
        from kefu.server.transport import fast
    except ImportError as exc:
        return f"uvicorn {version} lacks what it imports ({exc})"
    lacking = fast.missing()
    if lacking:
        return f"uvicorn {version}'s httptools protocol lacks {', '.join(lacking)}"
    return None


def choose(setting: str) -> Kind:
    """The transport for KEFU_TRANSPORT = `setting` (auto | fast | plain)."""
    if setting == "plain":
        return "plain"
    reason = fast_unavailable()
    if reason is None:
        return "fast"
    log.warning("chat sockets on the plain transport (slower): the fast one cannot run: %s", reason)
    return "plain"


def _v(release: tuple[int, int]) -> str:
    return f"{release[0]}.{release[1]}"
