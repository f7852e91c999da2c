"""`GET /v1/api/whoami`: the credential a request carries (to check a key or token)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from kefu.server.api.auth import Reader

router = APIRouter(tags=["credentials"])


class CallerOut(BaseModel):
    kind: Literal["key", "account"]  # an API key, or an admin account's token
    id: str  # the key's id, or the account's
    name: str  # the key's name, or the account's username
    read_only: bool


@router.get("/whoami", summary="Who the credential of this request is")
async def whoami(caller: Reader) -> CallerOut:
    return CallerOut(kind=caller.kind, id=caller.id, name=caller.name, read_only=caller.read_only)
