"""Errors: every expected failure ends as one line on stderr and exit status 1, never a traceback."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from tandem.cli.global_options import hoist
from tandem.cli.output import Output
from tandem.lab.errors import LabError


class CliError(Exception):
    """A failure the CLI itself detects (no device, bad option value, a lab already up...)."""

    def __init__(self, message: str, *, target: str | None = None, code: str = "cli_error") -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.code = code


def output_of(ctx: Any) -> Output:
    """The output the command line was set up with (plain output when it ran without the main callback)."""
    obj = getattr(ctx, "obj", None)
    output = getattr(obj, "output", None)
    return output if isinstance(output, Output) else Output()


def report(output: Output, exc: BaseException) -> bool:
    """Print `exc` if it is an expected failure; False when it is a bug that should surface."""
    from tandem.sdk import TandemError

    if isinstance(exc, TandemError):
        message = str(getattr(exc, "message", None) or exc)
        target = getattr(exc, "target", None)
        if output.json is False and target and "://" in target and target in message:
            target = None  # a URL the message already names
        output.error(message, code=getattr(exc, "code", None), target=target,
                     status=getattr(exc, "status_code", None))
        return True
    if isinstance(exc, (CliError, LabError)):
        output.error(exc.message, code=exc.code, target=exc.target)
        return True
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a dependency
        httpx = None  # type: ignore[assignment]
    if httpx is not None and isinstance(exc, httpx.TransportError):
        where = ""
        request = getattr(exc, "_request", None)
        if request is not None:
            where = f" {request.url.scheme}://{request.url.netloc.decode()}"
        output.error(f"cannot reach the device{where}: {exc or type(exc).__name__}", code="connection_error")
        return True
    return False


class TandemGroup(TyperGroup):
    """The root command group: takes its options after the subcommand too (`global_options`), and turns expected
    exceptions into `error: ...` and exit status 1."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist(self, ctx, args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if report(output_of(ctx), exc):
                raise typer.Exit(1) from None
            raise
