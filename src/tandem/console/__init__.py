"""The web console: pages on /ui/ of every device, server-rendered (Jinja2, htmx shipped in the package), live
through server-sent events, and a client of the device's own API in process (same login, roles, validation
and audit)."""

from tandem.console.app import Dispatch, create_console

__all__ = ["Dispatch", "create_console"]
