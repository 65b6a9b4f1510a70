"""pylxd's exception names for Tandem's errors: port `from pylxd.exceptions import NotFound` as
`from tandem.sdk.exceptions import NotFound`. Each is a `TandemError` too."""

from tandem.sdk.errors import Conflict, LXDAPIException, NotFound, TandemError

__all__ = ["Conflict", "LXDAPIException", "NotFound", "TandemError"]
