"""Write docs/settings.md from `kefu.settings.Settings`, or check that it is up to date.

    python scripts/settings_doc.py           # rewrite docs/settings.md
    python scripts/settings_doc.py --check   # exit 1, naming what differs, if it is stale

Names, types (with their bounds) and defaults come from the code; each
setting's description is kept in the file itself (the last column of its
row), so a rewrite keeps them. A new setting gets an empty description,
which `--check` reports until someone writes one; a setting that is gone
loses its row.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt

from kefu.settings import Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"

HEADER = """# Settings

Every setting is an environment variable `KEFU_<NAME>` (the name is not
case-sensitive). kefu also reads a `.env` file in the working directory
(`KEFU_PORT=8081` lines); a variable set in the environment wins over the
same one in `.env`. `kefu serve` takes the most used ones as flags too (`kefu
serve --help`), and `kefu check` says whether the settings are valid and the
database, the broker and the signing key can be used.

This page is generated from `kefu.settings.Settings` by
`python scripts/settings_doc.py` (names, types, defaults); the descriptions
are kept here. A test fails when it is out of date.

| variable | type | default | description |
| --- | --- | --- | --- |
"""

ROW = re.compile(r"^\| `KEFU_([A-Z0-9_]+)` \|[^|]*\|[^|]*\| (.*) \|$")
ALTERNATIVES = re.compile(r"^\^\((?:\?i:)?([\w|]+)\)\$$")


def type_of(name: str) -> str:
    """The type, with its bounds or choices: `int, >= 1`, `one of: text, json`."""
    field = Settings.model_fields[name]
    annotation = field.annotation
    base = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    bounds: list[str] = []
    for rule in field.metadata:
        if isinstance(rule, Ge):
            bounds.append(f">= {rule.ge}")
        elif isinstance(rule, Gt):
            bounds.append(f"> {rule.gt}")
        elif isinstance(rule, Le):
            bounds.append(f"<= {rule.le}")
        elif isinstance(rule, Lt):
            bounds.append(f"< {rule.lt}")
        elif getattr(rule, "pattern", None):
            choices = ALTERNATIVES.match(rule.pattern)
            if choices:
                return "one of: " + ", ".join(choices.group(1).split("|"))
            bounds.append(f"matching `{rule.pattern}`")
    return ", ".join([base, *bounds])


def default_of(name: str) -> str:
    value: Any = Settings.model_fields[name].default
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def descriptions(text: str) -> dict[str, str]:
    """The description of each setting documented in `text` (a settings.md)."""
    found = {}
    for line in text.splitlines():
        row = ROW.match(line)
        if row:
            found[row.group(1).lower()] = row.group(2).strip()
    return found


def render(kept: dict[str, str]) -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        about = kept.get(name) or field.description or ""
        rows.append(f"| `KEFU_{name.upper()}` | {type_of(name)} | {default_of(name)} | {about} |")
    return HEADER + "\n".join(rows) + "\n"


def problems(text: str) -> list[str]:
    """What is wrong with `text` as docs/settings.md; empty if it is what `render` writes."""
    kept = descriptions(text)
    names = set(Settings.model_fields)
    found = [f"KEFU_{n.upper()}: not documented" for n in names if n not in kept]
    found += [f"KEFU_{n.upper()}: documented, but no such setting" for n in kept if n not in names]
    found += [f"KEFU_{n.upper()}: no description" for n in names if n in kept and not kept[n]]
    if not found and text != render(kept):
        found.append("types, defaults or order differ from the code")
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is stale")
    parser.add_argument("--file", type=Path, default=DOC)
    args = parser.parse_args()
    text = args.file.read_text() if args.file.exists() else ""
    if args.check:
        wrong = problems(text)
        for problem in wrong:
            print(f"{args.file}: {problem}", file=sys.stderr)
        if wrong:
            print("run: python scripts/settings_doc.py, and describe new settings", file=sys.stderr)
        return 1 if wrong else 0
    args.file.write_text(render(descriptions(text)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
