"""How a command finds its device and its credentials.

Precedence, first match wins:

- URL: `--url` (or `TANDEM_URL`), or `--device URL`; else `--device NAME`: that device of the lab in
  `--lab-dir` (`TANDEM_LAB_DIR`, default /tmp/tandem-lab), else the context of that name; else the context
  named by `--context` (or `TANDEM_CONTEXT`), else the current context (`tandem context`); else the lab's first
  device; else an error.
- user: `--username` (or `TANDEM_USERNAME`); else the context's; default `admin`.
- password: `--password-file FILE`; else `TANDEM_PASSWORD`; else the context's password file; else the lab
  device's admin password file (when the URL is a lab device's); else a hidden prompt on a terminal.
  A password is never taken as a command-line argument.
- certificate: `--insecure` skips verification; else `--fingerprint` (or `TANDEM_FINGERPRINT`)
  pins the device's certificate; else `--ca-file` (or `TANDEM_CA_FILE`) verifies it and its name by that CA
  bundle; else the context's fingerprint or CA bundle; else the lab device's fingerprint; else the system CAs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tandem.cli import contexts
from tandem.cli.errors import CliError
from tandem.cli.output import Output
from tandem.lab.secrets import read_password_file
from tandem.lab.state import LabDevice, LabState, default_lab_dir, load_lab
from tandem.models.fingerprints import format_fingerprint

if TYPE_CHECKING:
    from tandem.sdk import Client

DEFAULT_USERNAME = "admin"


@dataclass
class Settings:
    """The global options of one `tandem` invocation."""

    output: Output = field(default_factory=Output)
    url: str | None = None
    username: str | None = None
    password_file: Path | None = None
    fingerprint: str | None = None
    ca_file: Path | None = None
    insecure: bool = False
    device: str | None = None
    lab_dir: Path | None = None
    timeout: float = 30.0
    context: str | None = None
    _client: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class Target:
    """Where to connect and as whom. `source` says where the URL came from (for messages)."""

    url: str
    username: str
    password: str | None = field(repr=False)
    fingerprint: str | None
    verify: bool | str
    """False: no verification; a path: by that CA bundle; True: by the system's CAs."""
    source: str


def fingerprint_option(value: str) -> str:
    """`--fingerprint` in any accepted form (`tandem.models.fingerprints`) → the display form; CliError if it
    is not a SHA-256 fingerprint."""
    try:
        return format_fingerprint(value)
    except ValueError as exc:
        raise CliError(str(exc), target="--fingerprint") from None


def _lab(settings: Settings) -> LabState | None:
    lab_dir = settings.lab_dir or default_lab_dir()
    try:
        return load_lab(lab_dir)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def is_context(settings: Settings, name: str) -> bool:
    """Whether `--device NAME` names a context: there is one of that name and no lab device of that name."""
    if name not in contexts.load().contexts:
        return False
    lab = _lab(settings)
    return lab is None or all(device.name != name for device in lab.devices)


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def resolve_target(settings: Settings, env: Mapping[str, str] | None = None,
                   prompt: bool | None = None) -> Target:
    """Work out the device and credentials of a command (see the module docstring)."""
    env = os.environ if env is None else env
    lab_device: LabDevice | None = None
    context, context_name = None, None
    if settings.fingerprint and settings.ca_file:
        raise CliError("--fingerprint and --ca-file both say how to verify the device: give one", target="--ca-file")
    if settings.device and "://" in settings.device:  # --device means a lab device's name or a URL everywhere
        if settings.url:
            raise CliError("--device and --url both name a device: give one", target="--device")
        settings = dataclasses.replace(settings, url=settings.device, device=None)
    if settings.device and not settings.url and is_context(settings, settings.device):
        settings = dataclasses.replace(settings, context=settings.device, device=None)
    if not settings.url and not settings.device:
        kept = contexts.load()
        context_name = settings.context or kept.current
        if context_name is not None:
            context = kept.named(context_name)
            pinned = settings.fingerprint or settings.ca_file
            settings = dataclasses.replace(
                settings, url=context.url, username=settings.username or context.username,
                fingerprint=settings.fingerprint or (None if pinned else context.fingerprint),
                ca_file=settings.ca_file or (None if pinned or not context.ca_file else Path(context.ca_file)))

    if settings.url:
        if settings.device:
            raise CliError("--device picks a lab device; it cannot be combined with --url", target="--device")
        url = settings.url.rstrip("/")
        if "://" not in url:
            raise CliError(f"{settings.url!r} is not a URL (like https://192.0.2.10:8443)", target="--url")
        source = f"context {context_name}" if context is not None else "--url"
        lab = _lab(settings)
        if lab is not None:
            lab_device = next((d for d in lab.devices if _same_url(d.url, url)), None)
    else:
        lab = _lab(settings)
        if lab is None:
            if settings.device:
                where = settings.lab_dir or default_lab_dir()
                raise CliError(f"--device {settings.device}: no lab is up in {where} (start one with "
                               "`tandem lab up`)", target="--device")
            raise CliError("no device to talk to: give --url (or set TANDEM_URL), or start a lab with "
                           "`tandem lab up`", target="--url")
        try:
            lab_device = lab.device(settings.device)
        except LookupError as exc:
            raise CliError(str(exc), target="--device") from None
        url = lab_device.url
        source = f"lab device {lab_device.name}"

    username = settings.username or DEFAULT_USERNAME

    password: str | None
    if settings.password_file is not None:
        password = read_password_file(settings.password_file)
    elif env.get("TANDEM_PASSWORD"):
        password = env["TANDEM_PASSWORD"]
    elif context is not None and context.password_file:
        password = read_password_file(Path(context.password_file),
                                      option=f"the password file of context {context_name}")
    elif lab_device is not None and username == DEFAULT_USERNAME and lab_device.password_file:
        password = read_password_file(Path(lab_device.password_file), option="lab admin password file")
    else:
        password = None
    if password is None:
        interactive = sys.stdin.isatty() if prompt is None else prompt
        if not interactive:
            raise CliError(f"no password for {username} at {url}: give --password-file FILE or set "
                           "TANDEM_PASSWORD", target="--password-file")
        import typer

        password = typer.prompt(f"Password for {username} at {url}", hide_input=True, err=True)

    fingerprint: str | None = None
    verify: bool | str = True
    if settings.insecure:
        verify = False
    elif settings.fingerprint:
        fingerprint = fingerprint_option(settings.fingerprint)
    elif settings.ca_file is not None:
        verify = str(settings.ca_file)
    elif lab_device is not None and lab_device.fingerprint:
        fingerprint = lab_device.fingerprint

    return Target(url=url, username=username, password=password, fingerprint=fingerprint,
                  verify=verify, source=source)


def connect(settings: Settings) -> Client:
    """A logged-in-on-demand SDK client for the command's device (one per invocation)."""
    if settings._client is None:
        from tandem.sdk import Client

        target = resolve_target(settings)
        settings._client = Client(target.url, target.username, target.password,
                                  verify=target.verify, fingerprint=target.fingerprint,
                                  timeout=settings.timeout)
    return settings._client


def close(settings: Settings) -> None:
    client, settings._client = settings._client, None
    if client is not None:
        closer = getattr(client, "close", None)
        if callable(closer):
            with contextlib.suppress(Exception):  # closing must never hide the command's outcome
                closer()
