"""The command line (`kefu ...`, protocol section 9).

* `main.py`: the app, and `serve`, `users create`, `token`, `demo`,
  `db upgrade`, `check`, `backup`, `--version`;
* `admin.py` (`api-keys`) and `users.py` (`users list|update|disable|...`):
  the admin commands, through a running server's admin API when there is one;
* `records.py`: `export conversations` and `purge`;
* `tools.py`: what those borrow from `main` (settings, a started store, failures).
"""

from kefu.cli.main import app

__all__ = ["app"]
