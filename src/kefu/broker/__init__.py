"""Cross-node delivery behind one `Broker` protocol; see `base.py`.

`open_broker(settings)` picks the implementation from `settings.broker_url`
and imports it lazily, so one node needs no Redis driver:

* `redis://...` / `rediss://...` / `unix://...`: `RedisBroker` (needs kefu[cluster]);
* `memory://NAME`: `MemoryBroker` on the process-wide hub NAME (tests, demos).

The returned broker is not started: `await broker.start()`, and
`await broker.close()` at shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kefu.broker.base import Broker, BrokerError, MessageHandler

if TYPE_CHECKING:
    from kefu.settings import Settings


def open_broker(settings: Settings) -> Broker:
    url = settings.broker_url
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        try:
            from kefu.broker.redis import RedisBroker
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise BrokerError(
                "a redis:// broker needs kefu[cluster] (pip install 'kefu[cluster]')"
            ) from exc
        return RedisBroker(url, prefix=settings.broker_prefix, maxlen=settings.event_stream_maxlen)
    if scheme == "memory":
        from kefu.broker.memory import MemoryBroker, named_hub

        return MemoryBroker(named_hub(url.split("://", 1)[-1]))
    raise ValueError(f"unsupported broker URL scheme {scheme!r} (use redis:// or memory://)")


__all__ = ["Broker", "BrokerError", "MessageHandler", "open_broker"]
