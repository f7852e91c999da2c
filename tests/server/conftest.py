"""The e2e fixtures (`make_server`, `server`) live in `support.servers`."""

from support.servers import _shared_server, make_server, server  # noqa: F401
