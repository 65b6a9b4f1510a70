"""Contexts, as kubeconfig has them: named connections (a device's URL, its certificate's fingerprint or a CA
bundle, a user and the file of their password; never a password itself), kept in `contexts.json` of the user's
configuration directory (`$XDG_CONFIG_HOME/tandem`, default `~/.config/tandem`; the file 0600, its directory
0700), one of them current. A command without `--url` or `--device` uses the context named by `--context` (or
`TANDEM_CONTEXT`), else the current one, else the lab."""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tandem.cli.errors import CliError
from tandem.models.fields import NAME_RE

FILE_NAME = "contexts.json"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tandem"


@dataclass(frozen=True)
class Context:
    """One named connection."""

    url: str
    fingerprint: str | None = None
    ca_file: str | None = None
    """An absolute path: the CA bundle that verifies the device's certificate (rather than a pin)."""
    username: str | None = None
    password_file: str | None = None
    """An absolute path: the password is read from it at each use."""


@dataclass
class Contexts:
    """Every context, and the current one."""

    contexts: dict[str, Context] = field(default_factory=dict)
    current: str | None = None

    def named(self, name: str) -> Context:
        context = self.contexts.get(name)
        if context is None:
            known = ", ".join(sorted(self.contexts)) or "none: add one with `tandem context add`"
            raise CliError(f"no context {name!r} (the contexts: {known})", target="--context")
        return context


def load(directory: Path | None = None) -> Contexts:
    """The contexts kept (none when there is no file yet); CliError if the file is unreadable or malformed."""
    path = (directory or config_dir()) / FILE_NAME
    try:
        data = json.loads(path.read_text())
        contexts = {name: Context(**body) for name, body in data["contexts"].items()}
        current = data.get("current")
    except FileNotFoundError:
        return Contexts()
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise CliError(f"cannot read the contexts in {path}: {error}") from None
    return Contexts(contexts, current if current in contexts else None)


def save(contexts: Contexts, directory: Path | None = None) -> Path:
    """Write the contexts (0600, replaced whole); the file."""
    directory = directory or config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / FILE_NAME
    temporary = path.with_name(FILE_NAME + ".new")
    temporary.unlink(missing_ok=True)  # a leftover keeps its mode through O_TRUNC
    body = {"current": contexts.current, "contexts": {name: asdict(c) for name, c in sorted(contexts.contexts.items())}}
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(json.dumps(body, indent=2) + "\n")
    os.replace(temporary, path)
    return path


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise CliError(f"{name!r} is not a context name (letters, digits, _.-; up to 63)", target="NAME")
    return name
