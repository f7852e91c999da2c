"""`kefu users list|update|disable|enable|passwd|delete|logout`: the account lifecycle.

A change must reach the running server, not only the database: a server
caches accounts and holds their sockets. So a command that changes an
account first asks the kefu server its settings point at (KEFU_HOST and
KEFU_PORT, over loopback) to make the change through the admin API, with
an API key made for that one call and deleted after it; the server then
closes the sockets and has every node forget the account, as for any API
call. When no server answers there, the command changes the database
itself and says that a running server elsewhere (another machine, another
port) keeps the account's open sockets and may accept its tokens until it
restarts.

Accounts are named by local username, then external username, then id.
Each command prints the account as the API shows it, as one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kefu.cli.tools import USAGE, parse_role

if TYPE_CHECKING:
    from kefu.cli.tools import CliTools
    from kefu.settings import Settings
    from kefu.store.base import Account, Store

HTTP_TIMEOUT = 10.0
LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class Refused(Exception):
    """The change cannot be made (the API's 4xx, or the same rule checked here)."""


@dataclass
class _Call:
    """One change, as an admin API request and as the same change made in the database."""

    method: str
    path: str  # under /v1/api/accounts/{id}
    body: dict[str, Any] | None
    in_database: Callable[[Store, Account], Awaitable[Account | None]]


def register_users(users: typer.Typer, tools: CliTools) -> None:
    @users.command("list")
    def list_(
        role: Annotated[str | None, typer.Option(help="user | waiter | admin")] = None,
        query: Annotated[
            str | None, typer.Option("--query", "-q", help="Part of a username or nickname.")
        ] = None,
        limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    ) -> None:
        """List accounts, newest first: one JSON object a line."""
        from kefu.store.base import AccountFilter

        _role = parse_role(role, tools.fail) if role is not None else None

        async def read(store: Store) -> list[Account]:
            found: list[Account] = []
            after = None
            while len(found) < limit:
                page = await store.list_accounts(
                    AccountFilter(_role, query or None), after, min(200, limit - len(found))
                )
                found += page
                if not page:
                    break
                after = page[-1].id
            return found

        for account in tools.run(tools.settings(), read):
            typer.echo(_json(account))

    @users.command("update")
    def update(
        who: Annotated[str, typer.Argument(metavar="USERNAME_OR_ID")],
        nickname: Annotated[str | None, typer.Option(help='"" clears it.')] = None,
        avatar: Annotated[str | None, typer.Option(help='An http(s) URL; "" for none.')] = None,
        role: Annotated[str | None, typer.Option(help="user | waiter | admin")] = None,
    ) -> None:
        """Change a local account's nickname, avatar or role (a new role closes its sockets)."""
        from kefu.store.base import KEEP, AccountUpdate

        body: dict[str, Any] = {}
        if nickname is not None:
            body["nickname"] = nickname or None
        if avatar is not None:
            body["avatar"] = _checked_avatar(tools, avatar)
        new_role = parse_role(role, tools.fail) if role is not None else None
        if new_role is not None:
            body["role"] = new_role.value
        if not body:
            tools.fail("nothing to change: give --nickname, --avatar or --role", USAGE)

        async def change(store: Store, account: Account) -> Account | None:
            _changeable(account, sorted(body))
            new = AccountUpdate(
                nickname=body.get("nickname", KEEP),
                avatar=body.get("avatar", KEEP),
                role=new_role if new_role is not None else KEEP,
            )
            return await store.update_account(account.id, new)

        _change(tools, who, _Call("PATCH", "", body, change))

    @users.command("disable")
    def disable(who: Annotated[str, typer.Argument(metavar="USERNAME_OR_ID")]) -> None:
        """Disable an account: its sockets close, its tokens and password stop working."""
        _change(tools, who, _Call("PATCH", "", {"disabled": True}, _set_disabled(True)))

    @users.command("enable")
    def enable(who: Annotated[str, typer.Argument(metavar="USERNAME_OR_ID")]) -> None:
        """Enable a disabled account again (not an erased one)."""
        _change(tools, who, _Call("PATCH", "", {"disabled": False}, _set_disabled(False)))

    @users.command("passwd")
    def passwd(
        who: Annotated[str, typer.Argument(metavar="USERNAME_OR_ID")],
        password: Annotated[
            str | None, typer.Option(help="The new password (asked twice if not given).")
        ] = None,
    ) -> None:
        """Set a local account's password for the console's sign-in."""
        from kefu.passwords import hash_password
        from kefu.store.base import AccountUpdate

        if password is None:
            password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
        if not 8 <= len(password) <= 1024:
            tools.fail("a password has 8 to 1024 characters", USAGE)

        async def change(store: Store, account: Account) -> Account | None:
            _changeable(account, ["password"])
            return await store.update_account(
                account.id, AccountUpdate(password_hash=hash_password(password))
            )

        _change(tools, who, _Call("PATCH", "", {"password": password}, change))

    @users.command("logout")
    def logout(who: Annotated[str, typer.Argument(metavar="USERNAME_OR_ID")]) -> None:
        """Refuse every token issued to the account so far; its sockets close."""
        from kefu.store.base import AccountUpdate

        async def change(store: Store, account: Account) -> Account | None:
            return await store.update_account(account.id, AccountUpdate(tokens_after=time.time()))

        _change(tools, who, _Call("POST", "/logout", None, change))

    @users.command("delete")
    def delete(
        who: Annotated[str, typer.Argument(metavar="USERNAME_OR_ID")],
        yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    ) -> None:
        """Erase a person: profile cleared, what they wrote removed; conversations kept."""
        if not yes:
            typer.confirm(
                f"Erase {who!r} and everything they wrote? This cannot be undone", abort=True
            )

        async def change(store: Store, account: Account) -> Account | None:
            return await store.erase_account(account.id, time.time())

        _change(tools, who, _Call("DELETE", "", None, change))


# -- the one way every change goes ------------------------------------------------------------
def _change(tools: CliTools, who: str, call: _Call) -> None:
    """Make `call` through the running server's API, or else in the database; print the result."""
    from kefu.ids import IdGenerator
    from kefu.server.api.auth import key_hash, new_key, visible_prefix
    from kefu.store.base import ApiKey

    settings = tools.settings()
    key = new_key()
    record = ApiKey(
        IdGenerator(settings.node_id)(),
        f"kefu-cli-{record_suffix()}",
        visible_prefix(key),
        False,
        time.time(),
    )

    async def work(store: Store) -> tuple[str, Any]:
        """One store for the whole command: find, try the API, else change the database."""
        account = await _find(store, who)
        if account is None:
            return "missing", None
        await store.create_api_key(record, key_hash(key))
        try:
            answer = await asyncio.to_thread(_through_api, settings, key, call, account.id)
        except Refused as exc:
            return "refused", str(exc)
        finally:
            await store.delete_api_key(record.id)
        if answer is not None:
            return "api", answer
        try:
            changed = await call.in_database(store, account)
        except Refused as exc:
            return "refused", str(exc)
        return ("database", changed) if changed is not None else ("missing", None)

    how, result = tools.run(settings, work)
    if how == "missing":
        tools.fail(f"no account named {who!r}", 1)
    if how == "refused":
        tools.fail(result, 1)
    if how == "api":
        typer.echo(json.dumps(result))
        return
    changed = result
    typer.echo(
        f"kefu: warning: no kefu server answered at {_base(settings)}: changed in the database"
        " only; a running server keeps the account's open sockets, and may accept its tokens,"
        " until it restarts",
        err=True,
    )
    typer.echo(_json(changed))


def record_suffix() -> str:
    import secrets

    return secrets.token_hex(6)


def _base(settings: Settings) -> str:
    host = LOOPBACK.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _through_api(
    settings: Settings, key: str, call: _Call, account_id: str
) -> dict[str, Any] | None:
    """The API's answer; None when no server (of this database) answers; `Refused` when it
    refuses the change (4xx) or fails at it (5xx: changing the database behind a server
    that is there would leave its sockets as they were)."""
    from urllib.parse import quote

    url = f"{_base(settings)}/v1/api/accounts/{quote(account_id, safe='')}{call.path}"
    data = json.dumps(call.body).encode() if call.body is not None else None
    request = urllib.request.Request(url, data=data, method=call.method)
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        if exc.code == 401:  # a server of another database: it does not know our key
            return None
        try:
            message = json.loads(exc.read()).get("message", exc.reason)
        except ValueError:
            message = exc.reason
        if exc.code >= 500:
            raise Refused(f"the server could not make the change ({message}); try again") from None
        raise Refused(str(message)) from None
    except (urllib.error.URLError, OSError, ValueError):
        return None


async def _find(store: Store, who: str) -> Account | None:
    from kefu.core.model import AccountKind

    return (
        await store.get_account_by_username(who, AccountKind.LOCAL)
        or await store.get_account_by_username(who, AccountKind.EXTERNAL)
        or await store.get_account(who)
    )


def _set_disabled(disabled: bool) -> Callable[[Store, Account], Awaitable[Account | None]]:
    from kefu.server.api.accounts import disabled_at
    from kefu.store.base import AccountUpdate

    async def change(store: Store, account: Account) -> Account | None:
        _changeable(account, ["disabled"])
        when = disabled_at(account, disabled, time.time())
        if when == account.disabled_at:
            return account
        return await store.update_account(account.id, AccountUpdate(disabled_at=when))

    return change


def _changeable(account: Account, fields: list[str]) -> None:
    """The API's rules (`unchangeable`): `Refused` if `fields` of `account` cannot change."""
    from kefu.server.api.accounts import unchangeable

    why = unchangeable(account, set(fields))
    if why is not None:
        raise Refused(why)


def _checked_avatar(tools: CliTools, avatar: str) -> str:
    from kefu.server.api.accounts import checked_avatar

    try:
        return checked_avatar(avatar) or ""
    except ValueError as exc:
        tools.fail(f"--avatar: {exc}", USAGE)


def _json(account: Account) -> str:
    from kefu.server.api.accounts import AccountOut

    return AccountOut.of(account).model_dump_json()


__all__ = ["register_users"]
