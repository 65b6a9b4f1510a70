"""Secrets the lab and the CLI read from files (never from arguments)."""

from pathlib import Path

from tandem.lab.errors import LabError


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
