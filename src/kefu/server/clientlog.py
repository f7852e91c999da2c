"""The log of what clients do wrong, rate-limited so that a flood cannot fill the disk.

Bad requests, refused handshakes and frames that cannot be decoded are the
clients' mistakes, not the server's: they are logged without tracebacks, on
the `kefu.clients` logger, at most `BURST` lines per `WINDOW` seconds; the
lines dropped are counted and reported once the window has passed. Nothing
a client sent is quoted (it may hold tokens or message texts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

WINDOW = 60.0
BURST = 20


class ClientLog:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        window: float = WINDOW,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.window = window
        self.burst = burst
        self._clock = clock
        self._start = -window
        self._count = 0
        self.suppressed = 0  # lines dropped in the current window

    def warning(self, message: str, *args: object) -> None:
        self._log(logging.WARNING, message, args)

    def info(self, message: str, *args: object) -> None:
        self._log(logging.INFO, message, args)

    def _log(self, level: int, message: str, args: tuple[object, ...]) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = self._clock()
        if now - self._start >= self.window:
            if self.suppressed:
                self.logger.warning(
                    "%d more client errors were not logged in the last %.0f s",
                    self.suppressed,
                    now - self._start,
                )
            self._start, self._count, self.suppressed = now, 0, 0
        if self._count >= self.burst:
            self.suppressed += 1
            return
        self._count += 1
        self.logger.log(level, message, *args)


client_log = ClientLog(logging.getLogger("kefu.clients"))
