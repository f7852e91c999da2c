"""deploy/install.sh, the one install the image and a host share, run for real.

Builds the wheel from the sources, installs it with the script into a fresh
virtual environment (packages come from the package index), then starts
`kefu serve` from there, away from the checkout, and asks it for its status,
its version and its health the way the Dockerfile's and the compose file's
health checks do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from support.servers import REPO, free_port

pytestmark = pytest.mark.timeout(900)  # the first run downloads kefu's dependencies

STARTUP_TIMEOUT = 30.0


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without KEFU_* and without the checkout on the import path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KEFU_", "PYTHON", "VIRTUAL_ENV", "PIP_"))
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def run(args: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(into: Path) -> Path:
    """The wheel of the sources as they are, built from a copy (the checkout stays as it is)."""
    source = into / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    dist = into / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), "."],
        env=clean_env(),
        cwd=source,
    )
    (wheel,) = dist.glob("kefu-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(prefix, install.sh's output): the wheel installed by deploy/install.sh."""
    work = tmp_path_factory.mktemp("install")
    wheel = build_wheel(work)
    prefix = work / "opt-kefu"
    out = run(
        ["sh", str(REPO / "deploy" / "install.sh"), str(wheel), str(prefix)],
        env=clean_env(PYTHON=sys.executable),
        cwd=work,
    )
    yield prefix, out


@pytest.fixture
def serving(installed: tuple[Path, str], tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """`kefu serve` of the installed prefix on a free port, SQLite in tmp_path."""
    prefix, _ = installed
    port = free_port()
    env = clean_env(KEFU_DATABASE_URL=f"sqlite:///{tmp_path / 'kefu.db'}", KEFU_PORT=str(port))
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(prefix / "bin" / "kefu"), "serve"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(trust_env=False, timeout=1) as http:
            while True:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-4000:]
                try:
                    if http.get(f"http://127.0.0.1:{port}/v1/ws/status").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-4000:]
                time.sleep(0.1)
        yield prefix, port
        proc.send_signal(signal.SIGTERM)
        # a clean stop; uvicorn re-raises the signal it stopped on once it is done
        assert proc.wait(30) in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_install_script_makes_a_venv_with_the_cluster_extra(installed: tuple[Path, str]) -> None:
    prefix, out = installed
    from kefu import __version__

    assert out.strip().splitlines()[-1] == f"kefu {__version__}", out  # it ends with --version
    where = run(
        [
            str(prefix / "bin" / "python"),
            "-c",
            "import asyncpg, redis, kefu; print(kefu.__file__)",
        ],
        env=clean_env(),
        cwd=prefix,
    ).strip()
    assert Path(where).is_relative_to(prefix), f"kefu imported from {where}, not the venv"
    version = run([str(prefix / "bin" / "kefu"), "--version"], env=clean_env(), cwd=prefix)
    assert version.strip() == f"kefu {__version__}"


def test_install_script_refuses_a_missing_wheel(tmp_path: Path) -> None:
    done = subprocess.run(
        ["sh", str(REPO / "deploy" / "install.sh"), str(tmp_path / "no.whl"), str(tmp_path / "p")],
        env=clean_env(PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "no wheel at" in done.stderr, done.stderr
    assert not (tmp_path / "p").exists()


def test_installed_kefu_serves(serving: tuple[Path, int]) -> None:
    _, port = serving
    resp = httpx.get(f"http://127.0.0.1:{port}/v1/ws/status", trust_env=False, timeout=5)
    assert resp.status_code == 200
    assert resp.json()["status"] == 1
    assert resp.json()["data"]["online_user_num"] == 0


def health_checks() -> dict[str, list[str]]:
    """The health-check commands that ask kefu itself: the Dockerfile's and compose's."""
    checks = {}
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("CMD [") and "healthz" in line:
            checks["Dockerfile"] = json.loads(line.strip().removeprefix("CMD "))
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    checks["compose"] = compose["services"]["kefu1"]["healthcheck"]["test"][1:]
    assert len(checks) == 2, checks
    return checks


def test_health_checks_pass_on_a_live_node_and_fail_without_one(
    serving: tuple[Path, int],
) -> None:
    prefix, port = serving
    path = f"{prefix / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"  # the image's PATH
    closed = free_port()
    for name, command in health_checks().items():
        # compose's runs in the container, where kefu listens on 8080
        live = [part.replace(":8080/", f":{port}/") for part in command]
        env = clean_env(PATH=path, KEFU_PORT=str(port))
        done = subprocess.run(live, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (name, done.stderr)
        dead = [part.replace(":8080/", f":{closed}/") for part in command]
        env["KEFU_PORT"] = str(closed)
        done = subprocess.run(dead, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode != 0, f"{name}'s health check passes with no server"
