"""`/v1/api/accounts`: list, create, show, change, log out and erase accounts.

An account is local (made by kefu: the CLI, this API; it may have a
password for the console's sign-in) or external (made from your
application's tokens; its profile and role come from those tokens, so only
`disabled` can be changed here).

Every change is committed first, then handed to the desk as an
`AccountChanged` event: every node forgets its cached copy, and when the
account may no longer hold its sockets (disabled, erased, logged out, or
its role changed) they are closed at once with 4403 on whichever node they
are (`core.switchboard`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kefu.core.events import AccountChanged
from kefu.core.model import AccountKind, Role
from kefu.protocol import frames
from kefu.server.api.auth import Reader, Writer
from kefu.server.api.context import ApiContext, Ctx
from kefu.server.api.errors import ErrorOut, conflict, not_found
from kefu.server.api.pages import Page, PageQuery, paginate
from kefu.server.api.values import timestamp
from kefu.store.base import KEEP, Account, AccountExists, AccountFilter, AccountUpdate

router = APIRouter(prefix="/accounts", tags=["accounts"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such account"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "A taken username, or a change the account cannot have"}
}

ERASED_PREFIX = "erased-"  # usernames of erased accounts
MAX_AVATAR_CHARS = 2048
AccountId = Annotated[str, Path(min_length=1, max_length=64, description="The account's id")]


class AccountOut(BaseModel):
    """An account as the API shows it (never its password or its hash)."""

    id: str
    username: str
    nickname: str | None
    avatar: str
    role: Role
    kind: AccountKind  # local: made by kefu; external: made from your application's tokens
    external_id: str | None  # an external account's `sub` in your application's tokens
    created_at: str | None  # RFC 3339, UTC
    disabled: bool  # cannot authenticate; true for erased accounts too
    erased: bool

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            username=account.username,
            nickname=account.nickname,
            avatar=account.avatar,
            role=account.role,
            kind=account.kind,
            external_id=account.external_id,
            created_at=timestamp(account.created_at),
            disabled=account.disabled_at is not None,
            erased=account.erased_at is not None,
        )


def _text(value: str | None, what: str) -> str | None:
    if value is not None and any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{what} must not hold control characters")
    return value


def checked_avatar(value: str | None) -> str | None:
    """An avatar URL as an image frame's would be checked; ValueError says why not."""
    if value:  # "" is no avatar
        try:
            frames.validate_image(frames.ImagePayload(image=value), MAX_AVATAR_CHARS)
        except frames.FrameError as exc:
            raise ValueError(exc.message.replace("image", "avatar")) from None
    return value


class AccountIn(BaseModel):
    """A new local account."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    role: Role = Role.USER
    nickname: str | None = Field(default=None, max_length=128)
    avatar: str = Field(default="", max_length=MAX_AVATAR_CHARS)
    password: str | None = Field(
        default=None, min_length=8, max_length=1024, description="For the console's sign-in"
    )

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if value != value.strip() or not value:
            raise ValueError("username must not start or end with spaces")
        if value.startswith(ERASED_PREFIX):
            raise ValueError(f"usernames starting with {ERASED_PREFIX!r} are kept for erasures")
        _text(value, "username")
        return value

    @field_validator("nickname")
    @classmethod
    def _nickname(cls, value: str | None) -> str | None:
        return _text(value, "nickname")

    @field_validator("avatar")
    @classmethod
    def _check_avatar(cls, value: str) -> str:
        return checked_avatar(value) or ""


class AccountPatch(BaseModel):
    """What to change; a field left out stays as it is. Only `nickname` may be null (clears it)."""

    model_config = ConfigDict(extra="forbid")

    nickname: str | None = Field(default=None, max_length=128)
    avatar: str | None = Field(default=None, max_length=MAX_AVATAR_CHARS)
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    role: Role | None = None
    disabled: bool | None = None

    @field_validator("nickname")
    @classmethod
    def _nickname(cls, value: str | None) -> str | None:
        return _text(value, "nickname")

    @field_validator("avatar")
    @classmethod
    def _check_avatar(cls, value: str | None) -> str | None:
        return checked_avatar(value)

    @model_validator(mode="after")
    def _no_nulls(self) -> AccountPatch:
        for name in ("avatar", "password", "role", "disabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} may not be null (leave it out to keep it)")
        return self


async def _found(ctx: ApiContext, account_id: str) -> Account:
    account = await ctx.store.get_account(account_id)
    if account is None:
        raise not_found(f"no account {account_id!r}")
    return account


def _changed(ctx: ApiContext, account_id: str, hang_up: bool) -> None:
    """After the commit: every node forgets the account; `hang_up` closes its sockets."""
    ctx.accounts.forget(account_id)  # this node at once, the others through the desk
    ctx.submit(AccountChanged(account_id, hang_up))


@router.get("", summary="List accounts, newest first")
async def list_accounts(
    caller: Reader,
    ctx: Ctx,
    page: PageQuery,
    role: Annotated[Role | None, Query(description="Only this role")] = None,
    q: Annotated[
        str | None, Query(max_length=64, description="A part of the username or nickname")
    ] = None,
) -> Page[AccountOut]:
    after = page.after(str)
    rows = await ctx.store.list_accounts(
        AccountFilter(role, q or None), str(after[0]) if after else None, page.limit + 1
    )
    items, cursor = paginate(rows, page, lambda account: (account.id,))
    return Page(items=[AccountOut.of(a) for a in items], next=cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a local account",
    responses=CONFLICT,
)
async def create_account(caller: Writer, ctx: Ctx, body: AccountIn) -> AccountOut:
    password_hash = await ctx.passwords.hash(body.password) if body.password else None
    account = Account(
        id=ctx.new_id(),
        username=body.username,
        role=body.role,
        nickname=body.nickname,
        avatar=body.avatar,
        password_hash=password_hash,
    )
    try:
        await ctx.store.create_account(account)
    except AccountExists:
        raise conflict(f"an account named {body.username!r} exists") from None
    return AccountOut.of(await _found(ctx, account.id))


@router.get("/{account_id}", summary="Show an account", responses=NOT_FOUND)
async def show_account(caller: Reader, ctx: Ctx, account_id: AccountId) -> AccountOut:
    return AccountOut.of(await _found(ctx, account_id))


@router.patch(
    "/{account_id}",
    summary="Change an account, or disable or enable it",
    responses={**NOT_FOUND, **CONFLICT},
)
async def change_account(
    caller: Writer,
    ctx: Ctx,
    account_id: AccountId,
    body: Annotated[AccountPatch, Body()],
) -> AccountOut:
    account = await _found(ctx, account_id)
    given = body.model_fields_set
    why = unchangeable(account, given)
    if why is not None:
        raise conflict(why)
    update = AccountUpdate(
        nickname=body.nickname if "nickname" in given else KEEP,
        avatar=KEEP if body.avatar is None else body.avatar,
        password_hash=KEEP if body.password is None else await ctx.passwords.hash(body.password),
        role=KEEP if body.role is None else body.role,
        disabled_at=KEEP
        if body.disabled is None
        else disabled_at(account, body.disabled, ctx.clock()),
    )
    changed = await ctx.store.update_account(account_id, update)
    if changed is None:
        raise not_found(f"no account {account_id!r}")
    role_changed = changed.role is not account.role
    disabling = changed.disabled_at is not None
    _changed(ctx, account_id, hang_up=role_changed or (disabling and "disabled" in given))
    return AccountOut.of(changed)


def unchangeable(account: Account, fields: set[str]) -> str | None:
    """Why `fields` of `account` cannot be changed (the API's 409, the CLI's refusal)."""
    if account.erased_at is not None and fields:
        return "the account was erased"
    profile = fields & {"nickname", "avatar", "password", "role"}
    if account.kind is AccountKind.EXTERNAL and profile:
        return (
            f"an external account's {', '.join(sorted(profile))} come from your application's"
            " tokens; only `disabled` can be changed here"
        )
    return None


def disabled_at(account: Account, disabled: bool, now: float) -> float | None:
    """The account's `disabled_at` after setting `disabled` (an earlier time is kept)."""
    if not disabled:
        return None
    return account.disabled_at if account.disabled_at is not None else now


@router.post(
    "/{account_id}/logout",
    summary="Revoke every token issued to the account so far",
    responses=NOT_FOUND,
)
async def logout(caller: Writer, ctx: Ctx, account_id: AccountId) -> AccountOut:
    changed = await ctx.store.update_account(account_id, AccountUpdate(tokens_after=ctx.clock()))
    if changed is None:
        raise not_found(f"no account {account_id!r}")
    _changed(ctx, account_id, hang_up=True)
    return AccountOut.of(changed)


@router.delete(
    "/{account_id}",
    summary="Erase a person: profile and what they wrote",
    responses=NOT_FOUND,
)
async def erase(caller: Writer, ctx: Ctx, account_id: AccountId) -> AccountOut:
    erased = await ctx.store.erase_account(account_id, ctx.clock())
    if erased is None:
        raise not_found(f"no account {account_id!r}")
    _changed(ctx, account_id, hang_up=True)
    # What this node stored for the account while its sockets were being closed is
    # committed by now: scrub again (erasing is idempotent).
    await ctx.store.flush()
    erased = await ctx.store.erase_account(account_id, ctx.clock()) or erased
    return AccountOut.of(erased)
