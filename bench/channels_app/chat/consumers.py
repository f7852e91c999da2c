"""The (c) baseline consumer: the Django Channels tutorial pattern, speaking kefu's frames.

* `auth` verifies the JWT and loads (or creates) the account through the ORM;
* a waiter's `ready` puts it on the ready list, a user's `connect` takes the
  oldest ready waiter; the conversation is a row and a channels_redis
  **group** holding both sockets' channels;
* `message_text` is one ORM save (`Message.objects.create`), then the ack to
  the sender and a `group_send` to the conversation, whose other member
  forwards it to its socket.

Pairing state (ready waiters, waiting users) lives in this process, as in
kefu's default single-node setup. Only what the benchmark drives is here.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from datetime import UTC, datetime

import jwt
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat.models import Account, Conversation, Message

READY: deque[ChatConsumer] = deque()  # waiters taking users, oldest first
WAITING: deque[ChatConsumer] = deque()  # users waiting for a waiter


def _now() -> str:
    return datetime.now(UTC).isoformat()


@database_sync_to_async
def get_or_create_account(claims: dict) -> Account:
    account, _ = Account.objects.get_or_create(
        id=claims["sub"],
        defaults={"username": claims.get("username") or claims["sub"], "role": claims["role"]},
    )
    return account


@database_sync_to_async
def create_conversation(user: Account, waiter_id: str) -> Conversation:
    return Conversation.objects.create(user=user, waiter_id=waiter_id)


@database_sync_to_async
def save_message(conversation_id: int, sender: Account, text: str, op_id: str | None) -> Message:
    return Message.objects.create(
        conversation_id=conversation_id, sender=sender, type="message_text", text=text, op_id=op_id
    )


class ChatConsumer(AsyncWebsocketConsumer):
    side = "user"

    async def connect(self) -> None:
        self.sid = str(uuid.uuid4())
        self.account: Account | None = None
        # user: the one conversation; waiter: user socket id -> conversation
        self.conversations: dict[str, tuple[int, str]] = {}
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for queue in (READY, WAITING):
            if self in queue:
                queue.remove(self)
        for _, group in self.conversations.values():
            await self.channel_layer.group_discard(group, self.channel_name)

    async def reply(self, type_: str, **fields: object) -> None:
        await self.send(
            text_data=json.dumps({"type": type_, "to": self.sid, "date": _now(), **fields})
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = json.loads(text_data or bytes_data or b"")
            type_ = frame["type"]
        except (ValueError, KeyError, TypeError):
            await self.reply("error", payload={"message": "invalid frame", "status": 100000})
            return
        if type_ == "auth":
            await self.auth(frame)
        elif self.account is None:
            await self.reply("error", payload={"message": "authenticate first", "status": 999999})
        elif type_ == "message_text":
            await self.message_text(frame)
        elif type_ == "connect" and self.side == "user":
            await self.user_connect()
        elif type_ == "ready" and self.side == "waiter":
            await self.waiter_ready()
        else:
            await self.reply("error", payload={"message": "unsupported", "status": 100000})

    async def auth(self, frame: dict) -> None:
        token = str(frame.get("payload", {}).get("token", "")).removeprefix("Bearer ")
        try:
            claims = jwt.decode(
                token,
                settings.SECRET_KEY,
                algorithms=["HS256"],
                options={"require": ["exp", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            await self.reply(
                "error", op_id=frame.get("op_id"), payload={"message": str(exc), "status": 999999}
            )
            return
        self.account = await get_or_create_account(claims)
        profile = {
            "id": self.account.id,
            "username": self.account.username,
            "nickname": None,
            "avatar": "",
        }
        await self.reply("auth_success", op_id=frame.get("op_id"), payload=profile)

    # -- pairing ------------------------------------------------------------
    async def waiter_ready(self) -> None:
        await self.reply("ready")
        if WAITING:
            user = WAITING.popleft()
            await self.channel_layer.send(
                user.channel_name,
                {
                    "type": "chat.assign",
                    "waiter_sid": self.sid,
                    "waiter_channel": self.channel_name,
                    "waiter_id": self.account.id,
                },
            )
        else:
            READY.append(self)

    async def user_connect(self) -> None:
        if self.conversations:
            return
        if not READY:
            WAITING.append(self)
            await self.reply("connect_queue", payload={"location": len(WAITING) - 1})
            return
        waiter = READY.popleft()
        await self.chat_assign(
            {
                "waiter_sid": waiter.sid,
                "waiter_channel": waiter.channel_name,
                "waiter_id": waiter.account.id,
            }
        )

    async def chat_assign(self, event: dict) -> None:
        """On the user's consumer: open the conversation with this waiter."""
        conversation = await create_conversation(self.account, event["waiter_id"])
        group = f"conv.{conversation.id}"
        await self.channel_layer.group_add(group, self.channel_name)
        await self.channel_layer.group_add(group, event["waiter_channel"])
        self.conversations[event["waiter_sid"]] = (conversation.id, group)
        await self.reply(
            "connect_success",
            **{"from": event["waiter_sid"]},
            payload={"id": event["waiter_id"], "uuid": event["waiter_sid"]},
        )
        await self.channel_layer.send(
            event["waiter_channel"],
            {
                "type": "chat.paired",
                "user_sid": self.sid,
                "conversation": conversation.id,
                "group": group,
                "user_id": self.account.id,
            },
        )

    async def chat_paired(self, event: dict) -> None:
        """On the waiter's consumer: a user was assigned."""
        self.conversations[event["user_sid"]] = (event["conversation"], event["group"])
        await self.reply(
            "new_connection",
            **{"from": event["user_sid"]},
            payload={"id": event["user_id"], "uuid": event["user_sid"]},
        )

    # -- messages -----------------------------------------------------------
    async def message_text(self, frame: dict) -> None:
        op_id = frame.get("op_id")
        text = frame.get("payload", {}).get("text")
        peer = frame.get("to") if self.side == "waiter" else next(iter(self.conversations), None)
        if not isinstance(text, str) or not text or peer not in self.conversations:
            await self.reply(
                "error", op_id=op_id, payload={"message": "cannot send", "status": 100000}
            )
            return
        conversation_id, group = self.conversations[peer]
        message = await save_message(conversation_id, self.account, text, op_id)
        payload = {"text": text}
        await self.reply(
            "message_text_success",
            id=str(message.id),
            op_id=op_id,
            payload=payload,
            **{"from": peer},
        )
        await self.channel_layer.group_send(
            group,
            {
                "type": "chat.message",
                "sender": self.channel_name,
                "from": self.sid,
                "id": str(message.id),
                "payload": payload,
            },
        )

    async def chat_message(self, event: dict) -> None:
        if event["sender"] == self.channel_name:
            return
        await self.reply(
            "message_text", id=event["id"], payload=event["payload"], **{"from": event["from"]}
        )


class UserConsumer(ChatConsumer):
    side = "user"


class WaiterConsumer(ChatConsumer):
    side = "waiter"
