"""The desk: the one driver of the switchboard, for one node and for a cluster's leader.

It feeds events to the pure switchboard (`core/switchboard.py`) and carries
out the commands it returns, in order:

* frames and closes become orders for the node holding the socket, through
  a `Placement` (`server/placement.py`); the frame is encoded here, once;
* queue and conversation records go to the store's writer (with the
  leader's epoch in a cluster, so a deposed leader's writes are refused);
* routes go to every node (`Pair` / `Unpair`);
* idle checks run on the node that holds the socket (it knows when the
  socket last spoke); the resume grace timers run here.

`restore` rebuilds the switchboard from the store (queue entries and open
conversations) when a node starts or a new leader takes over. A refused
event (`CoreError`) is answered to the socket that sent it; a bug in the
switchboard is logged and the event skipped, so the desk keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kefu.core import commands as c
from kefu.core import events as e
from kefu.core.errors import CoreError
from kefu.core.model import TimerKey, TimerKind
from kefu.core.switchboard import Status, Switchboard
from kefu.protocol import codes
from kefu.protocol.out import encode
from kefu.server.metrics import Metrics
from kefu.server.orders import CloseSocket, Deliver, ForgetAccount, IdleAt, Pair, Unpair
from kefu.server.placement import Placement
from kefu.settings import Settings
from kefu.store.base import Store

log = logging.getLogger("kefu.desk")

Skip = Callable[[c.Send], bool]  # a frame the client has already (a new leader's rebuild)


class Desk:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        placement: Placement,
        new_id: Callable[[], str],
        *,
        epoch: int | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics if metrics is not None else Metrics()  # the node's, for /metrics
        self.placement = placement
        self.epoch = epoch  # the leader's epoch in a cluster: its writes are fenced with it
        self.switchboard = Switchboard(
            capacity=settings.max_users_per_waiter,
            idle_timeout=settings.idle_timeout,
            idle_grace=settings.idle_grace,
            resume_grace=settings.resume_grace,
            new_id=new_id,
        )
        self._clock = clock
        self._timers: dict[TimerKey, asyncio.TimerHandle] = {}
        self._closed = False
        self.on_timer: Callable[[], None] = _nothing  # after a timer's event (a leader flushes)

    async def restore(self) -> tuple[int, int]:
        """Rebuild the switchboard from the store: (queued users, open conversations)."""
        state = await self.store.load_open_state()
        for conv, user, waiter in state.conversations:
            self.handle(e.ConversationRestored(conv.id, user, waiter, conv.opened, conv.queued))
        for entry in state.queue:
            self.handle(e.QueuedRestored(entry.user, entry.queued_at))
        return len(state.queue), len(state.conversations)

    def close(self) -> None:
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def status(self) -> Status:
        return self.switchboard.status()

    # -- deciding ------------------------------------------------------------------------
    def handle(self, event: e.Event, op_id: str | None = None, *, skip: Skip | None = None) -> None:
        """Decide one event and carry out what it takes; `op_id` echoes on the first reply."""
        if self._closed:
            return
        socket: str | None = getattr(event, "socket", None)
        now = self._clock()
        try:
            commands = self.switchboard.handle(event, now)
        except CoreError as exc:
            if socket is not None:
                self._error(socket, codes.status_of(exc), str(exc), op_id, now)
            return
        except Exception:  # a bug: skip the event rather than fail on it forever
            log.exception(
                "switchboard failed on %s; event skipped",
                type(event).__name__,
                extra={"socket": socket, "op_id": op_id},
            )
            return
        self.execute(commands, (socket, op_id) if op_id is not None else None, skip, now)

    def execute(
        self,
        commands: list[c.Command],
        reply: tuple[str | None, str] | None = None,
        skip: Skip | None = None,
        now: float | None = None,
    ) -> None:
        """Carry out commands in order; the first frame to `reply[0]` echoes op_id `reply[1]`."""
        now = self._clock() if now is None else now
        placement = self.placement
        for cmd in commands:
            match cmd:
                case c.Send(socket, type_, frm, payload):
                    op_id = None
                    if reply is not None and socket == reply[0]:
                        op_id, reply = reply[1], None
                    if (skip is not None and skip(cmd)) or not placement.reaches(socket):
                        continue
                    frame = encode(type_, socket, now, frm=frm, op_id=op_id, payload=payload)
                    location = _location(type_, payload)
                    placement.deliver(Deliver(socket, frame, type_, location))
                case c.Close(socket, why):
                    placement.close(CloseSocket(socket, codes.HANGUP_CODES[why]))
                case c.Enqueue() | c.Dequeue() | c.OpenConversation() | c.CloseConversation():
                    self._write(cmd)
                case c.Route(cid, user_id, user_socket, waiter_id, waiter_socket):
                    placement.pair(Pair(cid, user_id, user_socket, waiter_id, waiter_socket))
                case c.Unroute(cid):
                    placement.unpair(Unpair(cid))
                case c.Forget(account_id, hang_up):
                    placement.broadcast(ForgetAccount(account_id, hang_up))
                case c.StartTimer(key, at):
                    if key.kind is TimerKind.IDLE:
                        placement.idle(IdleAt(key.subject, at))
                    else:
                        self._start_timer(key, at)
                case c.CancelTimer(key):
                    if key.kind is TimerKind.IDLE:
                        placement.idle(IdleAt(key.subject, None))
                    else:
                        handle = self._timers.pop(key, None)
                        if handle is not None:
                            handle.cancel()

    def _write(
        self, record: c.Enqueue | c.Dequeue | c.OpenConversation | c.CloseConversation
    ) -> None:
        self.metrics.written(record)
        try:
            self.store.write(record, self.epoch)
        except Exception as exc:  # the store is stopping: the record is lost with the process
            log.error("%s not stored: %s", type(record).__name__, type(exc).__name__)
            return
        if isinstance(record, c.OpenConversation):
            self.placement.after_commit()

    def _error(self, socket: str, status: int, message: str, op_id: str | None, now: float) -> None:
        if not self.placement.reaches(socket):
            return
        self.metrics.errors[status] += 1
        payload = {"message": message, "status": status, "data": None}
        frame = encode("error", socket, now, op_id=op_id, payload=payload)
        self.placement.deliver(Deliver(socket, frame, "error"))

    # -- the resume grace timers ----------------------------------------------------------
    def _start_timer(self, key: TimerKey, at: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, at - self._clock())
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: TimerKey) -> None:
        self._timers.pop(key, None)
        self.handle(e.TimerFired(key))
        self.on_timer()


def _nothing() -> None:
    pass


def _location(type_: str, payload: object) -> int | None:
    if type_ == "connect_queue" and isinstance(payload, dict):
        location = payload.get("location")
        return location if isinstance(location, int) else None
    return None
