"""The server's logs: one handler on stderr for kefu, uvicorn, websockets and asyncio.

`setup(settings)` is called once by `kefu serve`. KEFU_LOG_FORMAT picks the
line format:

* `text`: `2026-05-09T07:35:25.123Z WARNING kefu.app: message socket=... op_id=...`;
  the time is UTC with milliseconds. Continuation lines (a traceback, a
  message with a line break) are indented, so every line that does not
  start with a space starts a record with its time, and nothing a message
  holds can pass for a record of its own.
* `json`: one object per line: `time`, `level`, `logger`, `message`, `node`,
  and `socket`, `account` (its id), `op_id` when the call passed them
  (`extra={"socket": ..., "op_id": ...}`; None is left out), `exc` for an
  exception with its traceback. Never a token, a password or a message text.

KEFU_LOG_LEVEL applies to every logger, with one exception: `uvicorn.error`
and `websockets` stay at `info` or above, because at `debug` websockets logs
every frame, its contents included (tokens, message texts).

uvicorn's access log is on; it shows at `info`. It would print request
query strings, which may carry secrets a client put there, so every path
uvicorn logs loses its query string here (`?(hidden)`). `#token=` fragments
never reach the server at all.

`node` is this process's name: `host:port` until a cluster member knows its
name (`set_node`); one kefu node per process.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from kefu.settings import Settings

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# The loggers KEFU_LOG_LEVEL is applied to; the rest inherit it from the root.
LOGGERS = (
    "kefu",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "websockets",
    "asyncio",
)
# Loggers that log frames, contents included, at DEBUG (websockets' protocol; uvicorn gives
# its websockets-sansio sockets `uvicorn.error` as their logger): never below INFO.
FRAME_LOGGERS = ("uvicorn.error", "websockets")
# What a log call may pass as `extra=` to be shown with the line; never a secret.
CONTEXT = ("socket", "account", "op_id")
HIDDEN_QUERY = "?(hidden)"

_node: str | None = None
_format = "text"


def setup(settings: Settings, stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (stderr) in KEFU_LOG_FORMAT, at KEFU_LOG_LEVEL."""
    global _format
    level = LEVELS[settings.log_level.lower()]
    _format = settings.log_format
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if _format == "json" else TextFormatter())
    handler.addFilter(hide_queries)
    root = logging.getLogger()
    for old in root.handlers[:]:  # one handler, one format (removed, not closed: not ours)
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()  # one handler, one format: uvicorn's own are not used
        logger.propagate = True
        logger.setLevel(level)
    guard_frame_loggers()
    set_node(f"{settings.host}:{settings.port}")


def guard_frame_loggers() -> None:
    """Keep the loggers that would log frame contents at INFO or above."""
    for name in FRAME_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))


def uvicorn_options() -> dict[str, Any]:
    """What `uvicorn.Config` needs to log through `setup`'s handler, access log included.

    No `log_config`: uvicorn's own handlers would write in its own format; no
    `log_level`: `setup` sets the levels.
    """
    return {"log_config": None, "log_level": None, "access_log": True}


def set_node(name: str) -> None:
    """Name this process in every JSON line (a cluster member's name once it has one)."""
    global _node
    _node = name


def is_json() -> bool:
    """True once `setup` chose JSON lines (so a fatal error is one JSON line too)."""
    return _format == "json"


def timestamp(created: float, msecs: float) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-05-09T07:35:25.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


def hide_queries(record: logging.LogRecord) -> bool:
    """Drop the query string of every path uvicorn logs (its access and WebSocket lines)."""
    if record.name.startswith("uvicorn") and isinstance(record.args, tuple):
        record.args = tuple(_without_query(a) for a in record.args)
    return True


def _without_query(value: object) -> object:
    if isinstance(value, str) and value.startswith("/") and "?" in value:
        return value.partition("?")[0] + HIDDEN_QUERY
    return value


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{timestamp(record.created, record.msecs)} {record.levelname} {record.name}: "
        line += record.getMessage()
        for key in CONTEXT:
            value = getattr(record, key, None)
            if value is not None:
                line += f" {key}={value}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line.replace("\n", "\n    ")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": timestamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if _node is not None:
            entry["node"] = _node
        for key in CONTEXT:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
