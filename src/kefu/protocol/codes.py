"""Error status codes and WebSocket close codes of the protocol (sections 3 and 10).

The switchboard names why it closes a socket (`Hangup`); the codes are here only.
"""

from kefu.core.errors import CoreError, NotFound
from kefu.core.model import Hangup

INVALID_PARAMS = 100000
NO_DATA = 100001
NO_PERMISSION = 100002
DUPLICATE = 100006
NOT_AUTHENTICATED = 999999
UNKNOWN = 0

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_AUTH_TIMEOUT = 4401
CLOSE_REVOKED = 4403
CLOSE_KICKOUT = 4409

HANGUP_CODES: dict[Hangup, int] = {
    Hangup.IDLE: CLOSE_NORMAL,
    Hangup.KICKOUT: CLOSE_KICKOUT,
    Hangup.REVOKED: CLOSE_REVOKED,
}


def status_of(error: CoreError) -> int:
    """The protocol status of a switchboard refusal."""
    return NO_DATA if isinstance(error, NotFound) else NO_PERMISSION
