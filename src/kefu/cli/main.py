"""The command line: serve | users create | token | demo | db upgrade (protocol section 9).

Each command is a thin call into the library; settings come from KEFU_*
variables (or `.env` in the working directory), and `serve` also takes the
most used ones as flags. `kefu check` checks a configuration without
changing anything (`kefu.checks`); `serve` sets up the logs (`kefu.logs`).

Migrations run before any event loop is started (for `postgresql+asyncpg`
Alembic runs a loop of its own). A failure an operator can meet (bad
settings, a database that cannot be reached or used, an unknown or
duplicate account) is one line on stderr starting with `kefu:` (for `serve`
with KEFU_LOG_FORMAT=json, one JSON log line) and a non-zero exit code: 2
for wrong usage, 1 for the rest. With
KEFU_LOG_LEVEL=debug the traceback is shown instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from kefu.checks import reason, shown_url
from kefu.cli.admin import register as register_admin
from kefu.cli.records import register as register_records
from kefu.cli.tools import USAGE, CliTools, parse_role
from kefu.core.model import Role
from kefu.settings import Settings

if TYPE_CHECKING:
    from kefu.store.base import Account, Store

app = typer.Typer(help="kefu: a self-hosted customer-service chat server.", no_args_is_help=True)
users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(db_app, name="db")

T = TypeVar("T")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"kefu {version('kefu')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    pass


def _fail(message: str, code: int = 1) -> NoReturn:
    from kefu import logs

    if logs.is_json():  # `serve` with KEFU_LOG_FORMAT=json: every line on stderr is JSON
        logging.getLogger("kefu.cli").critical(message)
    else:
        typer.echo(f"kefu: {message}", err=True)
    raise typer.Exit(code)


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except Exception as exc:  # pydantic's ValidationError, shown as one clear line
        _fail(f"invalid settings: {' '.join(str(exc).split())}", USAGE)


@contextlib.contextmanager
def _failures(settings: Settings, what: str) -> Iterator[None]:
    """Whatever fails inside is reported as `kefu: <what>: <reason>` and exits with 1."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        if settings.log_level.lower() == "debug":
            raise
        _fail(f"{what}: {reason(exc)}")


def _database(settings: Settings) -> contextlib.AbstractContextManager[None]:
    return _failures(settings, f"database {shown_url(settings.database_url)}")


def _migrate(settings: Settings) -> None:
    """Create or upgrade the schema; synchronous, so never inside a running loop."""
    from kefu.store.migrate import upgrade

    with _database(settings):
        upgrade(settings.database_url)


def _run(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Migrate, then run `work(store)` on a fresh event loop with a started store."""
    from kefu.store import open_store

    _migrate(settings)

    async def main() -> T:
        store = open_store(settings)
        await store.start()
        try:
            return await work(store)
        finally:
            await store.close()

    with _database(settings):
        return asyncio.run(main())


def _signing_secret(settings: Settings) -> str:
    try:
        return settings.signing_secret()
    except OSError as exc:  # the generated key's file cannot be read or written
        _fail(f"signing key {settings.secret_file()}: {reason(exc)}")


def _default(name: str) -> str:
    """A setting's default as `--help` shows it (the flags default to the KEFU_* variables)."""
    value = Settings.model_fields[name].default
    return "none" if value == "" else str(value)


def _flag(name: str, text: str) -> Any:
    """A `serve` flag for a setting: its variable and its default in `--help`.

    The flag itself defaults to None, so that an unset flag leaves the variable (or
    `.env`) in charge; the default shown is the setting's.
    """
    # typer reads help as rich markup: "\\[" is a plain "["; (show_default would say "(value)")
    return typer.Option(help=f"{text} [KEFU_{name.upper()}] \\[default: {_default(name)}]")


@app.command()
def serve(
    host: Annotated[str | None, _flag("host", "Address to bind.")] = None,
    port: Annotated[int | None, _flag("port", "Port to bind.")] = None,
    database_url: Annotated[
        str | None, _flag("database_url", "sqlite:///… or postgresql://…")
    ] = None,
    broker_url: Annotated[str | None, _flag("broker_url", "redis://… to join a cluster.")] = None,
    max_users_per_waiter: Annotated[
        int | None, _flag("max_users_per_waiter", "Conversations a waiter holds at once.")
    ] = None,
    log_level: Annotated[str | None, _flag("log_level", "debug|info|warning|error")] = None,
    log_format: Annotated[str | None, _flag("log_format", "text|json (one object a line)")] = None,
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
        log_format=log_format,
    )
    from kefu import logs

    logs.setup(settings)
    # The lifespan migrates too; doing it here first, before uvicorn's loop, turns a
    # database that cannot be used into one line instead of a startup traceback.
    _migrate(settings)
    with _failures(settings, "cannot start"):
        server_app = create_app(settings)
    run(server_app, settings)


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

    parsed = parse_role(role, _fail)
    settings = _settings()
    account = Account(
        id=IdGenerator(settings.node_id)(),
        username=username,
        role=parsed,
        nickname=nickname,
        avatar=avatar,
        password_hash=hash_password(password) if password else None,
    )

    async def create(store: Store) -> Account | None:
        try:
            return await store.create_account(account)
        except AccountExists:
            return None

    created = _run(settings, create)
    if created is None:
        _fail(f"an account named {username!r} already exists")
    typer.echo(json.dumps({**created.profile().as_payload(), "role": created.role.value}))


@app.command()
def token(
    username: str,
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds [KEFU_TOKEN_TTL].")] = None,
) -> None:
    """Print a signed token for an account (alone on the last line)."""
    from kefu.core.model import AccountKind
    from kefu.tokens import issue

    settings = _settings()

    async def find(store: Store) -> Account | None:
        # a local account first; else one a host application's token made
        found = await store.get_account_by_username(username, AccountKind.LOCAL)
        return found or await store.get_account_by_username(username, AccountKind.EXTERNAL)

    account = _run(settings, find)
    if account is None:
        _fail(f"no account named {username!r}")
    typer.echo(issue(_signing_secret(settings), account, ttl or settings.token_ttl))


@app.command()
def demo(
    base_url: Annotated[str, typer.Option(help="Where the server will be reached.")] = "",
) -> None:
    """Create a demo waiter and a demo user if missing; print their tokens and page links."""
    from kefu.ids import IdGenerator
    from kefu.passwords import hash_password
    from kefu.store.base import Account
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
    secret = _signing_secret(settings)
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
DEMO_ACCOUNTS = (
    ("demo-waiter", Role.WAITER, "Demo Waiter"),
    ("demo-user", Role.USER, "Demo User"),
)


@app.command()
def check() -> None:
    """Check settings, database, broker and signing key: a line each; exit 1 on a problem."""
    from kefu import checks

    results = checks.run()
    for result in results:
        typer.echo(result.line())
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (serve does this too)."""
    _migrate(_settings())
    typer.echo("database is up to date", err=True)


@app.command()
def backup(
    path: Annotated[str, typer.Argument(help="A new file: the copy (and PATH.secret, its key).")],
) -> None:
    """Copy the live SQLite database and its generated signing key (PostgreSQL: say how)."""
    from pathlib import Path

    from kefu import backup as backups

    settings = _settings()
    with _database(settings):  # anything unforeseen (a disk error...) as one line
        try:
            done = backups.backup(settings, Path(path))
        except backups.UseDumpTool as exc:  # exit 1: nothing was written, a script must stop
            typer.echo(exc.instructions)
            _fail(str(exc))
        except backups.BackupError as exc:
            _fail(str(exc))
    typer.echo(f"backed up {done.source} to {done.database} ({done.size} bytes)")
    if done.secret is not None:
        typer.echo(f"signing key copied to {done.secret}")
    elif done.secret_in_environment:
        typer.echo("signing key: KEFU_SECRET is set, not in a file; keep it with the backup")


# `kefu api-keys ...` and `kefu users list|update|...` (kefu.cli.admin, kefu.cli.users)
register_admin(app, users_app, CliTools(_settings, _run, _fail))
# `kefu export conversations` and `kefu purge` (kefu.cli.records)
register_records(app, CliTools(_settings, _run, _fail))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
