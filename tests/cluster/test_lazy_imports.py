"""The embedded default needs neither asyncpg nor redis: they are imported only when used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CODE = """
import sys
from kefu.settings import Settings
from kefu.server.app import create_app
create_app(Settings(database_url="sqlite:///{db}", secret="x" * 40))
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("asyncpg", "redis"))
assert not bad, bad
"""


def test_one_node_imports_no_cluster_driver(tmp_path: Path) -> None:
    code = CODE.format(db=tmp_path / "k.db")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
