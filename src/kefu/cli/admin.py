"""The admin commands: `kefu api-keys create|list|revoke`, `kefu users list|update|...`.

Registered on the command line by `kefu.cli` (`register`), which hands over
its helpers (`CliTools`): settings from KEFU_*, a started store on a fresh
loop, and the one-line `kefu:` failure. Errors follow `kefu.cli`: one line
on stderr, exit 2 for wrong usage and 1 for the rest.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from kefu.cli.tools import USAGE, CliTools

if TYPE_CHECKING:
    from kefu.store.base import ApiKey, Store

KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def register(app: typer.Typer, users: typer.Typer, tools: CliTools) -> None:
    """Add `api-keys` to `app` and the account lifecycle commands to `users`."""
    app.add_typer(_api_keys(tools), name="api-keys")
    from kefu.cli.users import register_users

    register_users(users, tools)


# -- api-keys ---------------------------------------------------------------------------------
def _api_keys(tools: CliTools) -> typer.Typer:
    keys = typer.Typer(help="Keys of the admin API (/v1/api).", no_args_is_help=True)

    @keys.command("create")
    def create(
        name: str,
        read_only: Annotated[bool, typer.Option("--read-only", help="Only GET requests.")] = False,
    ) -> None:
        """Create a key and print it (alone on the last line); it is shown only this once."""
        from kefu.ids import IdGenerator
        from kefu.server.api.auth import key_hash, new_key, visible_prefix
        from kefu.store.base import ApiKey, NameTaken

        if not KEY_NAME.fullmatch(name):
            tools.fail("a key name is 1-64 letters, digits, '.', '_' or '-'", USAGE)
        settings = tools.settings()
        key = new_key()
        record = ApiKey(
            IdGenerator(settings.node_id)(), name, visible_prefix(key), read_only, time.time()
        )

        async def insert(store: Store) -> bool:
            try:
                await store.create_api_key(record, key_hash(key))
            except NameTaken:
                return False
            return True

        if not tools.run(settings, insert):
            tools.fail(f"an API key named {name!r} exists (revoked keys keep their names)", 1)
        access = "read-only" if read_only else "full access"
        typer.echo(f"API key {name!r} ({access}); it is not shown again:", err=True)
        typer.echo(key)

    @keys.command("list")
    def list_() -> None:
        """Every key: id, name, the key's first characters, access, created, last used, revoked."""

        async def read(store: Store) -> list[ApiKey]:
            return await store.list_api_keys()

        found = tools.run(tools.settings(), read)
        rows: list[tuple[str, ...]] = [
            ("ID", "NAME", "KEY", "ACCESS", "CREATED", "LAST USED", "REVOKED")
        ]
        for k in found:
            access = "read-only" if k.read_only else "full"
            rows.append(
                (
                    k.id,
                    k.name,
                    k.prefix + "…",
                    access,
                    _when(k.created_at),
                    _when(k.last_used_at),
                    _when(k.revoked_at),
                )
            )
        _table(rows)

    @keys.command("revoke")
    def revoke(name_or_id: str) -> None:
        """Revoke a key (by name or id): it is refused from now on, on every node."""

        async def write(store: Store) -> ApiKey | None:
            return await store.revoke_api_key(name_or_id, time.time())

        revoked = tools.run(tools.settings(), write)
        if revoked is None:
            tools.fail(f"no API key named {name_or_id!r}", 1)
        typer.echo(f"API key {revoked.name!r} is revoked", err=True)

    return keys


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


__all__ = ["CliTools", "register"]
