"""`kefu.core` stays pure (design.md, habits 2-3): stdlib from a short list, and itself.

Every module under src/kefu/core is parsed with `ast` (nothing is imported,
so a module cannot hide an import behind a side effect of running it).
Imports anywhere count, including inside functions and `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "src" / "kefu" / "core"

ALLOWED = frozenset(
    {
        "__future__",
        "dataclasses",
        "enum",
        "typing",
        "collections",
        "collections.abc",
        "bisect",
        "itertools",
        "functools",
        "heapq",
    }
)
# Named so a failure says why; anything outside ALLOWED fails anyway.
FORBIDDEN = frozenset(
    {
        "asyncio",
        "starlette",
        "sqlalchemy",
        "redis",
        "time",
        "random",
        "uuid",
        "datetime",
        "socket",
        "os",
        "msgspec",
    }
)
# Reading a clock or making an id, however the name was brought in.
FORBIDDEN_CALLS = frozenset(
    {
        "datetime.now",
        "datetime.utcnow",
        "datetime.today",
        "date.today",
        "time.time",
        "time.time_ns",
        "time.monotonic",
        "time.perf_counter",
        "uuid4",
        "uuid1",
        "__import__",
        "import_module",
    }
)


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_of(path: Path) -> str:
    """The package relative imports in `path` are resolved against."""
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of everything the module imports."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name == "kefu":  # `from kefu import core` names a module
                found += [(node.lineno, f"kefu.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, name))
    return found


def import_problem(name: str) -> str | None:
    top = name.partition(".")[0]
    if top in FORBIDDEN:
        return f"imports {name!r}, which the pure core must never use"
    if name in ALLOWED or name == "kefu.core" or name.startswith("kefu.core."):
        return None
    return f"imports {name!r}, which is not on the allowlist"


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return None


def call_problems(tree: ast.AST) -> list[str]:
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (name := dotted(node.func)):
            parts = name.split(".")
            # match on the tail: `datetime.datetime.now`, `dt.datetime.now`, `uuid.uuid4`, ...
            tails = {".".join(parts[i:]) for i in range(len(parts))}
            if hit := tails & FORBIDDEN_CALLS:
                problems.append(f"line {node.lineno}: calls {name}() ({sorted(hit)[0]})")
    return problems


def check_source(source: str, package: str) -> list[str]:
    tree = ast.parse(source)
    problems = [
        f"line {line}: {problem}"
        for line, name in imported_modules(tree, package)
        if (problem := import_problem(name))
    ]
    return problems + call_problems(tree)


CORE_MODULES = sorted(CORE.glob("**/*.py"))


def test_the_core_modules_are_found() -> None:
    names = {module_name(p) for p in CORE_MODULES}
    assert {"kefu.core", "kefu.core.switchboard", "kefu.core.events"} <= names


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: module_name(p))
def test_core_module_is_pure(path: Path) -> None:
    problems = check_source(path.read_text(encoding="utf-8"), package_of(path))
    assert not problems, f"{path.relative_to(CORE.parents[2])}:\n  " + "\n  ".join(problems)


# -- the checker itself: it must catch what it claims to ------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import time",
        "import os.path",
        "import uuid as u",
        "from datetime import datetime",
        "from random import choice",
        "import sqlalchemy.orm",
        "from starlette.websockets import WebSocket",
        "import redis.asyncio",
        "import msgspec",
        "import socket",
        "import json",  # stdlib, but not on the allowlist
        "from kefu.server import runtime",
        "from kefu import store",
        "from .. import settings",
        "from ..protocol import frames",
        "def f():\n    import time\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio\n",
        "x = datetime.now()",
        "x = datetime.datetime.now()",
        "x = dt.datetime.utcnow()",
        "x = time.time()",
        "x = uuid4()",
        "x = uuid.uuid4().hex",
        "m = __import__('time')",
        "m = importlib.import_module('time')",
    ],
)
def test_checker_catches(source: str) -> None:
    assert check_source(source, "kefu.core")


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import bisect\nimport heapq\nimport itertools\nimport functools",
        "from collections.abc import Callable\nfrom collections import deque",
        "from dataclasses import dataclass, field\nfrom enum import StrEnum",
        "from typing import Any",
        "from kefu.core import commands as c",
        "from kefu.core.model import Profile",
        "import kefu.core.events",
        "from . import model",
        "from .errors import NotFound",
        "from kefu import core",
        "x = self.now",  # an attribute named like a clock is fine; calling a clock is not
    ],
)
def test_checker_allows(source: str) -> None:
    assert check_source(source, "kefu.core") == []
