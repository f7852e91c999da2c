"""The command line: serve | users create | token | db upgrade (protocol section 9).

Each command is a thin call into the library; settings come from KEFU_*
variables, and `serve` also takes the most used ones as flags.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from kefu.settings import Settings

app = typer.Typer(help="kefu: a self-hosted customer-service chat server.", no_args_is_help=True)
users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(db_app, name="db")

T = TypeVar("T")


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except Exception as exc:  # pydantic's ValidationError, shown as one clear line
        typer.echo(f"kefu: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [KEFU_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind [KEFU_PORT].")] = None,
    database_url: Annotated[str | None, typer.Option(help="[KEFU_DATABASE_URL]")] = None,
    broker_url: Annotated[str | None, typer.Option(help="[KEFU_BROKER_URL]")] = None,
    max_users_per_waiter: Annotated[int | None, typer.Option()] = None,
    log_level: Annotated[str | None, typer.Option(help="debug|info|warning|error")] = None,
) -> None:
    """Run the server; creates or migrates the database on start."""
    from kefu.server.app import create_app
    from kefu.server.serve import run

    settings = _settings(
        host=host,
        port=port,
        database_url=database_url,
        broker_url=broker_url,
        max_users_per_waiter=max_users_per_waiter,
        log_level=log_level,
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    run(create_app(settings), settings)


def _run(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
    from kefu.store import open_store
    from kefu.store.migrate import upgrade

    async def main() -> T:
        upgrade(settings.database_url)
        store = open_store(settings)
        await store.start()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="user | waiter | admin")] = "user",
    nickname: Annotated[str | None, typer.Option()] = None,
    avatar: Annotated[str, typer.Option(help="Avatar image URL.")] = "",
    password: Annotated[str | None, typer.Option(help="For the console's sign-in form.")] = None,
) -> None:
    """Create an account and print its profile as JSON."""
    from kefu.ids import IdGenerator
    from kefu.passwords import hash_password
    from kefu.store.base import Account, AccountExists
    from kefu.tokens import ROLES

    if role not in ROLES:
        typer.echo(f"kefu: --role must be one of {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    settings = _settings()
    account = Account(
        id=IdGenerator(settings.node_id)(),
        username=username,
        role=role,
        nickname=nickname,
        avatar=avatar,
        password_hash=hash_password(password) if password else None,
    )
    try:
        created = _run(settings, lambda store: store.create_account(account))
    except AccountExists:
        typer.echo(f"kefu: an account named {username!r} already exists", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({**created.profile().as_payload(), "role": created.role}))


@app.command()
def token(
    username: str,
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds [KEFU_TOKEN_TTL].")] = None,
) -> None:
    """Print a signed token for an account (alone on the last line)."""
    from kefu.tokens import issue

    settings = _settings()
    account = _run(settings, lambda store: store.get_account_by_username(username))
    if account is None:
        typer.echo(f"kefu: no account named {username!r}", err=True)
        raise typer.Exit(1)
    typer.echo(issue(settings.signing_secret(), account, ttl or settings.token_ttl))


@app.command()
def demo(
    base_url: Annotated[str, typer.Option(help="Where the server will be reached.")] = "",
) -> None:
    """Create a demo waiter and a demo user if missing; print their tokens and page links."""
    from kefu.ids import IdGenerator
    from kefu.passwords import hash_password
    from kefu.store.base import Account, Store
    from kefu.tokens import issue

    settings = _settings()
    base = base_url or f"http://{settings.host}:{settings.port}"
    new_id = IdGenerator(settings.node_id)

    async def ensure(store: Store) -> list[Account]:
        found = []
        for username, role, nickname in DEMO_ACCOUNTS:
            account = await store.get_account_by_username(username)
            if account is None:
                account = await store.create_account(
                    Account(new_id(), username, role, nickname, "", hash_password(DEMO_PASSWORD))
                )
            found.append(account)
        return found

    waiter, user = _run(settings, ensure)
    secret = settings.signing_secret()
    waiter_token = issue(secret, waiter, settings.token_ttl)
    user_token = issue(secret, user, settings.token_ttl)
    typer.echo(
        f"""
kefu demo accounts (password for the console sign-in: {DEMO_PASSWORD})
  waiter  {waiter.username}
  user    {user.username}

Open the waiter console:  {base}/v1/ws/example/waiter#token={waiter_token}
Open the visitor page:    {base}/v1/ws/example/user#token={user_token}
Server status:            {base}/v1/ws/status
"""
    )


DEMO_PASSWORD = "demo"
DEMO_ACCOUNTS = (("demo-waiter", "waiter", "Demo Waiter"), ("demo-user", "user", "Demo User"))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (serve does this too)."""
    from kefu.store.migrate import upgrade

    upgrade(_settings().database_url)
    typer.echo("database is up to date", err=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
