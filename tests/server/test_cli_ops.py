"""What an operator expects of the command line: --version, check, .env, serve --help, docs.

`kefu check` runs as `python -m kefu check`, on SQLite and on PostgreSQL:
one line per check (`ok <check>: ...` or `FAIL <check>: ...`), exit 0 only
when every check passed, and no password on any line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer.main

from kefu.cli import app
from kefu.settings import Settings
from kefu.store.migrate import head, upgrade
from support.servers import REPO, free_port, kefu_env, run_kefu
from support.services import create_database, drop_database, require_redis

pytestmark = pytest.mark.timeout(90)

CHECK_LINE = re.compile(r"^(ok|FAIL) (settings|database \S+|broker \S+|secret): \S.*$")


@dataclass
class Database:
    kind: str  # "sqlite" | "postgresql"
    url: str
    shown: str  # as `kefu check` names it


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, empty database: a file in the test's folder, or CREATE DATABASE on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "kefu.db"
        yield Database("sqlite", f"sqlite:///{path}", str(path))
        return
    name, url = create_database("kefu_test_check")  # fails with CI=true if PostgreSQL is down
    try:
        yield Database("postgresql", url, url)
    finally:
        drop_database(name)


def _show(proc: Any) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def _check(tmp_path: Path, **settings: Any) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`kefu check` with these settings (and the test secret); its result and its lines."""
    proc = run_kefu(["check"], kefu_env(tmp_path, **settings), cwd=tmp_path)
    lines = proc.stdout.strip().splitlines()
    for line in lines:
        assert CHECK_LINE.match(line), _show(proc)
    assert "Traceback" not in proc.stderr, _show(proc)
    return proc, lines


def _failed(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL ")]


# --------------------------------------------------------------------------- --version


def test_version_is_the_package_version(tmp_path: Path) -> None:
    proc = run_kefu(["--version"], kefu_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, _show(proc)
    assert proc.stdout.strip() == f"kefu {version('kefu')}", _show(proc)


# --------------------------------------------------------------------------- check


def test_check_passes_on_a_migrated_database(tmp_path: Path, database: Database) -> None:
    upgrade(database.url)
    proc, lines = _check(tmp_path, database_url=database.url)
    assert proc.returncode == 0, _show(proc)
    assert lines == [
        "ok settings: valid",
        f"ok database {database.shown}: reachable, at revision {head()} (head)",
        "ok secret: KEFU_SECRET is set",
    ], _show(proc)


def test_check_fails_on_a_database_never_migrated(tmp_path: Path, database: Database) -> None:
    if database.kind == "sqlite":
        Path(database.shown).touch()  # a file, but no schema
    proc, lines = _check(tmp_path, database_url=database.url)
    assert proc.returncode == 1, _show(proc)
    assert _failed(lines) == [
        f"FAIL database {database.shown}: not migrated: `kefu db upgrade` creates the schema"
    ], _show(proc)
    assert "ok settings: valid" in lines and "ok secret: KEFU_SECRET is set" in lines


def test_check_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "data" / "kefu.db"
    proc, lines = _check(tmp_path, database_url=f"sqlite:///{path}", secret="")
    assert proc.returncode == 1, _show(proc)
    assert _failed(lines) == [
        f"FAIL database {path}: no database file: `kefu db upgrade` creates it"
    ], _show(proc)
    assert f"ok secret: none yet: made in {path}.secret on first start" in lines, _show(proc)
    assert not (tmp_path / "data").exists()  # no folder, no database, no key


def test_check_fails_on_a_database_behind_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    upgrade(url, "0001")
    proc, lines = _check(tmp_path, database_url=url)
    assert proc.returncode == 1, _show(proc)
    (line,) = _failed(lines)
    assert f"at revision 0001, this kefu needs {head()}" in line, _show(proc)


def test_check_of_an_unreachable_postgresql_is_one_line_without_its_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql://kefu:not-to-be-shown@127.0.0.1:{free_port()}/kefu"
    proc, lines = _check(tmp_path, database_url=url)
    assert proc.returncode == 1, _show(proc)
    (line,) = _failed(lines)
    assert line.startswith("FAIL database postgresql://kefu:***@127.0.0.1:"), _show(proc)
    assert "refused" in line.lower(), _show(proc)
    assert "not-to-be-shown" not in proc.stdout + proc.stderr, _show(proc)


def test_check_fails_on_a_broker_that_does_not_answer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    upgrade(url)
    broker = f"redis://:not-to-be-shown@127.0.0.1:{free_port()}/0"
    proc, lines = _check(tmp_path, database_url=url, broker_url=broker)
    assert proc.returncode == 1, _show(proc)
    (line,) = _failed(lines)
    assert line.startswith("FAIL broker redis://:***@127.0.0.1:"), _show(proc)
    assert "not-to-be-shown" not in proc.stdout + proc.stderr, _show(proc)


def test_check_passes_with_a_live_broker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    upgrade(url)
    proc, lines = _check(tmp_path, database_url=url, broker_url=require_redis())
    assert proc.returncode == 0, _show(proc)
    assert any(re.match(r"ok broker redis://\S+: reachable, \d+ live nodes$", x) for x in lines)


def test_check_a_cluster_node_needs_a_secret(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    upgrade(url)
    proc, lines = _check(tmp_path, database_url=url, broker_url=require_redis(), secret="")
    assert proc.returncode == 1, _show(proc)
    assert _failed(lines) == [
        "FAIL secret: a cluster node needs KEFU_SECRET, the same on every node"
    ], _show(proc)


def test_check_names_each_invalid_setting_without_its_value(tmp_path: Path) -> None:
    proc, lines = _check(tmp_path, port="secret-looking-value", log_format="xml")
    assert proc.returncode == 1, _show(proc)
    assert [line.split(":")[0:2] for line in lines] == [
        ["FAIL settings", " KEFU_PORT"],
        ["FAIL settings", " KEFU_LOG_FORMAT"],
    ], _show(proc)
    assert "secret-looking-value" not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- .env


def test_dotenv_in_the_working_directory_is_read_and_the_environment_wins(
    tmp_path: Path,
) -> None:
    from_file = tmp_path / "from-dotenv.db"
    from_env = tmp_path / "from-environment.db"
    for path in (from_file, from_env):
        upgrade(f"sqlite:///{path}")
    (tmp_path / ".env").write_text(
        f"KEFU_DATABASE_URL=sqlite:///{from_file}\nKEFU_SECRET=from-dotenv-secret\n"
    )
    env = kefu_env(tmp_path)
    del env["KEFU_DATABASE_URL"], env["KEFU_SECRET"]
    proc = run_kefu(["check"], env, cwd=tmp_path)
    assert proc.returncode == 0, _show(proc)
    assert f"ok database {from_file}: " in proc.stdout, _show(proc)

    env["KEFU_DATABASE_URL"] = f"sqlite:///{from_env}"
    proc = run_kefu(["check"], env, cwd=tmp_path)
    assert proc.returncode == 0, _show(proc)
    assert f"ok database {from_env}: " in proc.stdout, _show(proc)  # the environment wins

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_kefu(["check"], env, cwd=elsewhere)  # no .env here: no secret, a generated one
    assert "ok secret: none yet" in proc.stdout, _show(proc)


# --------------------------------------------------------------------------- serve --help


def test_serve_help_shows_every_flags_default(tmp_path: Path) -> None:
    env = {**kefu_env(tmp_path), "COLUMNS": "400", "TERM": "dumb", "NO_COLOR": "1"}
    proc = run_kefu(["serve", "--help"], env, cwd=tmp_path)
    assert proc.returncode == 0, _show(proc)
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    flags = [p for p in serve.params if p.name != "help"]
    assert len(flags) >= 6
    for flag in flags:
        default = Settings.model_fields[flag.name].default
        shown = "none" if default == "" else str(default)
        option = flag.opts[0]
        line = next((ln for ln in proc.stdout.splitlines() if f" {option} " in ln), "")
        assert f"[KEFU_{flag.name.upper()}] [default: {shown}]" in line, (option, proc.stdout)


# --------------------------------------------------------------------------- settings in docs


def _settings_doc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "settings_doc.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_docs_settings_is_up_to_date() -> None:
    proc = _settings_doc("--check")
    assert proc.returncode == 0, _show(proc)


def test_the_docs_check_finds_a_missing_a_gone_and_an_undescribed_setting(
    tmp_path: Path,
) -> None:
    doc = tmp_path / "settings.md"
    assert _settings_doc("--file", str(doc)).returncode == 0  # written from the code alone
    text = re.sub(r"\|  \|$", "| described |", doc.read_text(), flags=re.M)
    doc.write_text(text)
    assert _settings_doc("--check", "--file", str(doc)).returncode == 0
    rows = text.splitlines(keepends=True)
    kept = [r for r in rows if not r.startswith("| `KEFU_RESUME_GRACE` |")]
    kept.append("| `KEFU_GONE_SETTING` | int | `1` | was here once |\n")
    kept = [r.replace("| described |", "|  |") if "`KEFU_PORT`" in r else r for r in kept]
    doc.write_text("".join(kept))
    proc = _settings_doc("--check", "--file", str(doc))
    assert proc.returncode == 1, _show(proc)
    assert "KEFU_RESUME_GRACE: not documented" in proc.stderr, _show(proc)
    assert "KEFU_GONE_SETTING: documented, but no such setting" in proc.stderr, _show(proc)
    assert "KEFU_PORT: no description" in proc.stderr, _show(proc)
    stale = text.replace("| `KEFU_PORT` | int | `8080` |", "| `KEFU_PORT` | int | `80` |")
    assert stale != text
    doc.write_text(stale)
    proc = _settings_doc("--check", "--file", str(doc))
    assert proc.returncode == 1, _show(proc)
    assert "types, defaults or order differ from the code" in proc.stderr, _show(proc)


def test_readme_names_every_setting_and_no_other() -> None:
    readme = (REPO / "README.md").read_text()
    names = {f"KEFU_{name.upper()}" for name in Settings.model_fields}
    missing = sorted(n for n in names if not re.search(rf"`{n}`", readme))
    assert missing == [], f"settings missing from README.md: {missing}"
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(KEFU_[A-Z0-9_]+)`", section))
    assert named - names == set(), f"README.md names settings that do not exist: {named - names}"


def _other_value(name: str) -> tuple[str, Any]:
    """A valid value for the setting `name` other than its default, as text and as parsed."""
    field = Settings.model_fields[name]
    default = field.default
    special = {
        "trusted_proxies": "10.0.0.0/8",
        "metrics_allow": "10.0.0.0/8",
        "database_url": "sqlite:///elsewhere.db",
        "broker_url": "redis://10.0.0.1:6379/0",
    }
    if name in special:
        return special[name], special[name]
    for rule in field.metadata:
        pattern = getattr(rule, "pattern", None)
        if pattern:
            choices = re.findall(r"\w+", pattern.replace("?i:", ""))
            choice = next(c for c in choices if c != default)
            return choice, choice
    if isinstance(default, bool):
        return str(not default).lower(), not default
    if isinstance(default, int | float):
        return str(default + 1), type(default)(default + 1)
    return "some-other-value", "some-other-value"


def test_every_setting_is_read_from_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in Settings.model_fields:
        monkeypatch.setenv(f"KEFU_{name.upper()}", _other_value(name)[0])
    settings = Settings()
    for name in Settings.model_fields:
        assert getattr(settings, name) == _other_value(name)[1], name
        assert getattr(settings, name) != Settings.model_fields[name].default, name
