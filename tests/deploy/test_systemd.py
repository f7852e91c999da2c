"""deploy/kefu.service: what it promises, and `systemd-analyze` where the machine has it.

`systemd-analyze verify` reads the unit as systemd would and names every key
it does not know or cannot parse (it exits 0 even then, so any output fails);
`systemd-analyze security --offline` scores its sandbox. Neither needs systemd
running. The tool is not required in CI: without it those two are skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kefu.settings import Settings
from support.servers import REPO

UNIT = REPO / "deploy" / "kefu.service"
DATABASE = "sqlite:////var/lib/kefu/kefu.db"


def directives(text: str | None = None) -> list[tuple[str, str]]:
    lines = (text if text is not None else UNIT.read_text()).splitlines()
    found = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.append((key.strip(), value.strip()))
    return found


def values(key: str) -> list[str]:
    return [v for k, v in directives() if k == key]


def one(key: str) -> str:
    (value,) = values(key)
    return value


def test_runs_the_installed_kefu_on_its_state_directory() -> None:
    assert one("ExecStart") == "/opt/kefu/bin/kefu serve"
    assert "deploy/install.sh" in UNIT.read_text() and "/opt/kefu" in UNIT.read_text()
    assert one("StateDirectory") == "kefu"
    assert one("WorkingDirectory") == "/var/lib/kefu"
    assert one("Environment") == f"KEFU_DATABASE_URL={DATABASE}"
    settings = Settings(database_url=DATABASE)
    assert settings.secret_file() == Path("/var/lib/kefu/kefu.db.secret")  # kept with it
    assert one("EnvironmentFile") == "-/etc/kefu/kefu.env"  # "-": optional
    for value in values("Environment"):
        name = value.partition("=")[0]
        assert name.removeprefix("KEFU_").lower() in Settings.model_fields, name


def test_stops_with_sigterm_and_is_sandboxed() -> None:
    assert one("KillSignal") == "SIGTERM"  # kefu closes its sockets with 1012 on it
    assert one("DynamicUser") == "yes" or values("User"), "never as root"
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
    }
    for key, value in expected.items():
        assert one(key) == value, key
    families = set(one("RestrictAddressFamilies").split())
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX"}, families
    assert int(one("LimitNOFILE")) >= 65536


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (it is not needed in CI)")
    return tool


def installed_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart on a kefu that exists here (verify checks the file)."""
    kefu = Path(sys.executable).parent / "kefu"
    assert kefu.exists(), kefu
    unit = tmp_path / "kefu.service"
    unit.write_text(UNIT.read_text().replace("/opt/kefu/bin/kefu", str(kefu)))
    return unit


def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    done = subprocess.run(
        [analyze(), "verify", "--man=no", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr
    )


def test_systemd_analyze_verify_would_see_a_mistake(tmp_path: Path) -> None:
    """The check above is not blind: a misspelt key and a bad value are reported."""
    unit = installed_unit(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHome=maybe\nProtecHome=1"))
    done = subprocess.run(
        [analyze(), "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert "ProtecHome" in done.stderr and "maybe" in done.stderr, done.stderr


def test_systemd_analyze_security_scores_it_safe(tmp_path: Path) -> None:
    done = subprocess.run(
        [analyze(), "security", "--offline=yes", "--no-pager", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in done.stderr and done.returncode != 0:
        pytest.skip(f"this systemd-analyze has no --offline: {done.stderr.strip()}")
    score = re.search(r"Overall exposure level for kefu\.service: ([\d.]+)", done.stdout)
    assert score is not None, done.stdout[-2000:] + done.stderr
    # an unsandboxed service scores about 10; this unit about 1.4 (the static test above
    # checks the keys one by one: one of them alone moves the score little)
    assert float(score.group(1)) < 2.0, done.stdout[-2000:]
