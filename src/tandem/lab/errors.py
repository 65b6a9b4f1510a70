"""What the lab reports: its expected failures, and where it says how things go."""

from typing import Protocol

from rich.console import Console

REQUEST_ERROR = "cli_error"
"""The code of a request the lab turns down before it acts (a busy port, a lab already up, a device that is
not running...): the code the CLI gives the failures it finds itself, which these were."""


class LabError(Exception):
    """A failure the lab detects (a bad address, a device that does not start, a virtual server that does not
    answer...): one line for the user, naming what is at fault."""

    def __init__(self, message: str, *, target: str | None = None, code: str = "lab_error") -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.code = code


class Reporter(Protocol):
    """Where the lab says how things go (the CLI's `Output`): notes, and a console for progress bars."""

    json: bool
    err: Console

    def note(self, text: str) -> None: ...
