"""Secrets the lab and the CLI read from files (never from arguments)."""

import os
import secrets
from pathlib import Path

from tandem.lab.errors import LabError

ADMIN_USER = "admin"
"""The lab's user: every device's first admin, whose password the lab writes."""


def write_password(path: Path) -> None:
    """A new random password in `path` (mode 0600), unless the file is there already."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(18) + "\n")


def read_password_file(path: Path, option: str = "--password-file") -> str:
    """The password in `path`: its content without the final newline."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise LabError(f"password file {path} does not exist", target=option) from None
    except OSError as exc:
        raise LabError(f"cannot read password file {path}: {exc.strerror or exc}", target=option) from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise LabError(f"password file {path} is empty", target=option)
    return password
