"""`tandem audit`: the device's audit trail, newest first (`GET /api/audit`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from tandem.cli.connection import Settings, connect
from tandem.cli.errors import CliError
from tandem.cli.output import Column, format_epoch

COLUMNS = [
    Column("at", "time", render=lambda v, _r: format_epoch(v), no_wrap=True),
    Column("user"), Column("role"), Column("source"), Column("via"), Column("action"), Column("target"),
    Column("status"), Column("detail"),
]


def _when(text: str | None, option: str) -> str | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        raise CliError(f"{text!r} is not a time (ISO 8601: 2026-12-01T18:00:00+00:00)", target=option) from None


def audit(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", show_default=False, help="Only this user's.")] = None,
    via: Annotated[str | None, typer.Option("--via", show_default=False,
                                            help="Only by: api, batch, or `agent HOST_ID`.")] = None,
    action: Annotated[str | None, typer.Option("--action", show_default=False,
                                               help="Only actions holding this (`DELETE`, `/api/pools`).")] = None,
    status: Annotated[int | None, typer.Option("--status", show_default=False, min=100, max=599,
                                               help="Only those answered with this status (403: refusals).")] = None,
    since: Annotated[str | None, typer.Option("--since", show_default=False, help="From this time (ISO 8601).")
                     ] = None,
    until: Annotated[str | None, typer.Option("--until", show_default=False, help="Up to this time.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="The latest N entries.")] = 100,
) -> None:
    """The device's audit trail, newest first: who, how (api, batch, agent), what, the status, why a refusal.

    Each entry: the user, role and source address; via api, batch or `agent HOST_ID`; the method and route, on which
    path; the status answered; and why a refusal was refused."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    params: dict[str, Any] = {"limit": limit, **{k: v for k, v in (
        ("user", user), ("via", via), ("action", action), ("status", status), ("since", _when(since, "--since")),
        ("until", _when(until, "--until"))) if v is not None}}
    answer = connect(settings).request("GET", "/api/audit", params=params)
    settings.output.records(answer.get("records", []) if isinstance(answer, dict) else [], COLUMNS,
                            empty="no audit entries")
