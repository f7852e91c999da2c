"""Whether this run is CI: there a missing service or tool fails the test instead of skipping it."""

from __future__ import annotations

import os

TRUTHY = ("1", "true", "yes")


def in_ci() -> bool:
    """True when `CI` is set to 1, true or yes (any case), as CI systems set it."""
    return os.environ.get("CI", "").strip().lower() in TRUTHY
