"""How commands print: Rich tables for people, JSON for scripts (`--output json`).

Every command goes through one `Output`: records and objects are rendered as tables in
`table` mode and as JSON on stdout in `json` mode (lists as arrays, objects as objects).
Errors always go to stderr: `error: MESSAGE (target: FIELD)` or, in json mode,
`{"error": {"code", "message", "target", "status"}}`.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text


class OutputFormat(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


@dataclass(frozen=True)
class Column:
    """One column of a table: the record key it shows, its heading and an optional formatter."""

    key: str
    header: str | None = None
    render: Callable[[Any, Mapping[str, Any]], str] | None = None
    no_wrap: bool = False

    @property
    def title(self) -> str:
        return self.header or self.key.replace("_", " ")

    def cell(self, record: Mapping[str, Any]) -> str:
        value = record.get(self.key)
        if self.render is not None:
            return self.render(value, record)
        return format_value(value)


def format_value(value: Any) -> str:
    """A value as a table cell: empty for None, yes/no for booleans, lists joined by commas."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, datetime.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, list | tuple):
        return ", ".join(format_value(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    return str(value)


def format_epoch(value: Any) -> str:
    """A time in seconds since the epoch, in local time to the millisecond (anything else as it is)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return format_value(value)
    return datetime.datetime.fromtimestamp(value).astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json_default, ensure_ascii=False)


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None
    # When piped, Rich assumes 80 columns and would fold long values (fingerprints, URLs):
    # give tables room unless the user set COLUMNS.
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 512
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


class Output:
    """Where and how a command prints."""

    def __init__(self, fmt: OutputFormat | str = OutputFormat.table) -> None:
        self.format = OutputFormat(fmt)
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def json(self) -> bool:
        """Output for scripts (JSON, or the same data as YAML), not tables for people."""
        return self.format is not OutputFormat.table

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = _console()
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = _console(stderr=True)
        return self._err

    # -- data -----------------------------------------------------------------------------

    def records(self, records: Sequence[Mapping[str, Any]], columns: Sequence[Column], *,
                title: str | None = None, empty: str = "nothing found") -> None:
        """A list of records: a JSON array, or a table with `columns`."""
        if self.json:
            self.print_json(list(records))
            return
        if not records:
            self.err.print(Text(empty, style="dim"))
            return
        if title:
            self.out.print(Text(title, style="bold"))
        table = Table(header_style="bold")
        for column in columns:
            table.add_column(column.title, no_wrap=column.no_wrap, overflow="fold")
        for record in records:
            table.add_row(*(Text(column.cell(record)) for column in columns))
        self.out.print(table)

    def record(self, record: Mapping[str, Any], *, fields: Iterable[str] | None = None,
               title: str | None = None, skip: Iterable[str] = ()) -> None:
        """One object: a JSON object, or a two-column field/value table."""
        if self.json:
            self.print_json(dict(record))
            return
        skipped = set(skip)
        keys = list(fields) if fields is not None else [k for k in record if k not in skipped]
        if title:
            self.out.print(Text(title, style="bold"))
        table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        for key in keys:
            table.add_row(Text(key.replace("_", " ")), Text(format_value(record.get(key))))
        self.out.print(table)

    def stream(self, record: Mapping[str, Any], columns: Sequence[Column]) -> None:
        """One record of a stream as it comes: a JSON line, or its columns on one line."""
        if self.format is OutputFormat.yaml:
            sys.stdout.write("---\n" + _yaml(dict(record)))
            sys.stdout.flush()
            return
        if self.json:
            sys.stdout.write(json.dumps(dict(record), separators=(",", ":"), default=str) + "\n")
            sys.stdout.flush()
            return
        self.out.print(Text("  ".join(column.cell(record) for column in columns)), soft_wrap=True)

    def changed(self, message: str, record: Mapping[str, Any]) -> None:
        """A change and the object it left: the object as JSON for scripts; a line and its fields for people."""
        if self.json:
            self.print_json(dict(record))
            return
        self.done(message)
        self.record(record)

    def done(self, message: str, data: Any = None) -> None:
        """The outcome of a change: a line for people, `data` (when given) as JSON for scripts."""
        if self.json:
            if data is not None:
                self.print_json(data)
            return
        self.out.print(Text(message, style="green"))

    def note(self, message: str) -> None:
        """Progress or advice for people; on stderr so that it never mixes with JSON."""
        self.err.print(Text(message), style="dim" if self.json else None)

    @contextlib.contextmanager
    def working(self, description: str) -> Iterator[Callable[[str], None]]:
        """A spinner with the time spent, on stderr, while long work runs; yields a function that names the
        current step. People on a terminal see it; scripts (JSON, or no terminal) see nothing."""
        if self.json or not self.err.is_terminal:
            yield lambda _step: None
            return
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=self.err, transient=True) as progress:
            task = progress.add_task(description, total=None)
            yield lambda step: progress.update(task, description=f"{description}: {step}")

    def print_json(self, data: Any) -> None:
        """`data` as JSON, or as YAML with `--output yaml`."""
        sys.stdout.write(_yaml(data) if self.format is OutputFormat.yaml else to_json(data) + "\n")
        sys.stdout.flush()

    # -- errors ---------------------------------------------------------------------------

    def error(self, message: str, *, code: str | None = None, target: str | None = None,
              status: int | None = None) -> None:
        """An error on stderr: `error: MESSAGE (target: FIELD)`, or a JSON error object."""
        if self.json:
            body: dict[str, Any] = {"code": code or "error", "message": message, "target": target}
            if status is not None:
                body["status"] = status
            sys.stderr.write(to_json({"error": body}) + "\n")
            sys.stderr.flush()
            return
        sys.stderr.write(error_line(message, target) + "\n")
        sys.stderr.flush()


def _yaml(data: Any) -> str:
    """`data` as YAML: the values JSON would give (times as strings, and so on), keys in their order."""
    import yaml  # lazily: only `--output yaml` needs it

    return yaml.safe_dump(json.loads(to_json(data)), sort_keys=False, allow_unicode=True)


def error_line(message: str, target: str | None = None) -> str:
    line = f"error: {message}"
    if target:
        line += f" (target: {target})"
    return line
