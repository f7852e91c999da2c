"""The core's exceptions. The server maps each to a protocol status code.

    CoreError
    ├── NotPermitted   the socket may not do that (e.g. not its user)
    ├── NotFound       no such socket, user or waiter
    └── NotAvailable   the target cannot take it now (e.g. transfer to a busy waiter)

A handler raises before it changes any state, so a refused event leaves the
switchboard as it was.
"""


class CoreError(Exception):
    """Root of the switchboard's refusals."""


class NotPermitted(CoreError):
    pass


class NotFound(CoreError):
    pass


class NotAvailable(CoreError):
    pass
