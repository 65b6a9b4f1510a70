"""Which connection resources use: explicit `connection=`, then `with client:`, then `CONNECTION`.

    tandem.sdk.connection.CONNECTION = client      # or set_default(client)
    with other_client:                         # default inside this block (and this context only)
        Pool.find(name="web")
"""

from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from tandem.sdk.errors import TandemError

if TYPE_CHECKING:
    from tandem.sdk.client import Client

CONNECTION: "Client | None" = None
"""The module-wide default connection."""

_CONTEXT: ContextVar["Client | None"] = ContextVar("tandem_sdk_connection", default=None)


def set_default(client: "Client | None") -> None:
    """Make `client` the module-wide default connection (None clears it)."""
    global CONNECTION
    CONNECTION = client


def push(client: "Client") -> Token["Client | None"]:
    """Make `client` the default of the current context; give the token to `pop`."""
    return _CONTEXT.set(client)


def pop(token: Token["Client | None"]) -> None:
    """Restore the default the context had before the matching `push`."""
    _CONTEXT.reset(token)


def get_connection(connection: "Client | None" = None) -> "Client":
    """The connection to use: the one given, else the context's, else the module default."""
    if connection is not None:
        return connection
    found = _CONTEXT.get() or CONNECTION
    if found is None:
        raise TandemError(
            None,
            "no_connection",
            "no connection: pass connection=, use `with client:` or set tandem.sdk.connection.CONNECTION",
        )
    return found
