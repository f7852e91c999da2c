"""Server logs never hold a secret: a token, a message text, an auth frame.

Tests `remember()` what must never be logged; `support.client` remembers every
token it mints and every text it sends, so most tests need not. A fixture that
runs servers records what is remembered while they run (`recording()`) and,
once they have stopped, scans their logs (`check`) for it, for anything shaped
like a JWT and for auth frames. So every server is scanned by the fixture that
owns it (`make_server` at the end of its test, the shared server at the end of
the session), and no test has to run last.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")
AUTH_FRAME = re.compile(r'"type"\s*:\s*"auth"|"token"\s*:')
SHORTEST = 12  # shorter strings could be in a log by chance ("hello")

_recordings: list[set[str]] = []  # one per open `recording()`


def remember(*values: str) -> None:
    """Strings that must never appear in a server log (each open recording keeps them)."""
    for value in values:
        if isinstance(value, str) and len(value) >= SHORTEST:
            for box in _recordings:
                box.add(value)


@contextlib.contextmanager
def recording() -> Iterator[set[str]]:
    """Collect what is remembered while the block runs (recordings may nest)."""
    box: set[str] = set()
    _recordings.append(box)
    try:
        yield box
    finally:
        # by identity: two open recordings may hold equal sets, and `remove` compares by value
        for i, other in enumerate(_recordings):
            if other is box:
                del _recordings[i]
                break


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """What in `text` must not be there: the start of each secret found, JWTs, auth frames."""
    found = [s[:40] for s in secrets if s in text]
    found += JWT.findall(text)[:3]
    found += AUTH_FRAME.findall(text)[:3]
    return found


def log_files(data_dir: Path) -> list[Path]:
    """A test server's logs: the stdout and stderr of each of its runs."""
    return sorted(data_dir.glob("server-*.std*"))


def check(data_dirs: Iterable[Path], secrets: Iterable[str]) -> int:
    """Fail if a log of these servers holds a secret; the number of files scanned."""
    wanted = set(secrets)
    scanned = 0
    found: list[tuple[str, list[str]]] = []
    for data_dir in data_dirs:
        for path in log_files(data_dir):
            scanned += 1
            hits = leaks(path.read_text(errors="replace"), wanted)
            if hits:
                found.append((str(path), hits))
    assert not found, f"server logs hold secrets: {found}"
    return scanned
