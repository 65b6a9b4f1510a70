"""Collection queries: filters on fields, `fields=` projection and keyset paging.

A field may be dotted (`status.state`, `remote.ip_addresses`), as ONTAP's clients send them: a filter on a path
through a list matches when any element does; `fields=` keeps the paths named (and the record's identity).
`return_records=false` asks for the count alone, `max_records` is `limit`'s ONTAP name, and `return_timeout` is
accepted (every answer here is immediate)."""

import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tandem.errors import BadRequest
from tandem.store import Body

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000


@dataclass
class Query:
    """What a client asked of a collection. Filters match fields (dotted paths too) exactly or by glob."""

    filters: dict[str, str] = field(default_factory=dict)
    fields: list[str] | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[str, str] | None = None
    return_records: bool = True
    """False: the answer gives the number of matching records only (ONTAP's `return_records=false`)."""
    matched: int | None = None
    """With `return_records` false, the number of matching records, once `page` has counted them."""

    @classmethod
    def parse(cls, params: Iterable[tuple[str, str]], known_fields: Iterable[str]) -> "Query":
        """Build a query from URL parameters; unknown fields and bad values are a 400 naming them."""
        known = set(known_fields)

        def is_known(name: str) -> bool:
            return name.partition(".")[0] in known and all(name.split("."))

        query = cls()
        for key, value in params:
            if key == "fields":
                names = [f for f in value.split(",") if f]
                unknown = [f for f in names if not is_known(f) and f not in ("*", "**")]
                if unknown:
                    raise BadRequest(f"unknown field {unknown[0]!r} in fields", target="fields")
                query.fields = None if {"*", "**"} & set(names) else names
            elif key in ("limit", "max_records"):
                if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
                    raise BadRequest(f"{key} must be an integer from 1 to {MAX_LIMIT}", target=key)
                query.limit = int(value)
            elif key == "return_records":
                if value.lower() not in ("true", "false"):
                    raise BadRequest("return_records must be true or false", target=key)
                query.return_records = value.lower() == "true"
            elif key == "return_timeout":
                if not value.isdigit():
                    raise BadRequest("return_timeout must be a number of seconds", target=key)
            elif key == "after":
                partition, sep, name = value.partition("/")
                if not sep or not name:
                    raise BadRequest("after must be the cursor given in a previous page's next link",
                                     target="after")
                query.after = (partition, name)
            elif is_known(key):
                query.filters[key] = value
            else:
                raise BadRequest(f"unknown query parameter {key!r}", target=key)
        return query

    def matches(self, record: Body) -> bool:
        return all(_field_matches(record, name, pattern) for name, pattern in self.filters.items())

    def project(self, record: Body, identity: Iterable[str]) -> Body:
        if self.fields is None:
            return record
        out: Body = {}
        for name in [*identity, *self.fields]:
            _copy_path(record, out, name.split("."))
        return out

    def page(self, records: Iterator[tuple[tuple[str, str], Body]],
             identity: Iterable[str]) -> tuple[list[Body], tuple[str, str] | None]:
        """The matching records of one page, and the key to continue after (None on the last page)."""
        identity = tuple(identity)
        if not self.return_records:
            self.matched = sum(1 for _key, record in records if self.matches(record))
            return [], None
        out: list[Body] = []
        last_key: tuple[str, str] | None = None
        for key, record in records:
            if not self.matches(record):
                continue
            if len(out) == self.limit:
                return out, last_key
            out.append(self.project(record, identity))
            last_key = key
        return out, None


def _field_matches(record: Body, name: str, pattern: str) -> bool:
    """Whether a value at `name` matches: any element of a list on the way. A top-level field a record lacks is
    empty (as it always was); a dotted path a record lacks, or an empty list, matches nothing (a mistyped path
    never widens a bulk change)."""
    path = name.split(".")
    values = list(_values(record, path))
    if values:
        return any(_matches(value, pattern) for value in values)
    return len(path) == 1 and name not in record and _matches(None, pattern)


def _values(value: Any, path: list[str]) -> Iterator[Any]:
    """The values at `path` in `value`, through lists (each element); none where the path is missing."""
    if isinstance(value, list):
        for element in value:
            yield from _values(element, path)
    elif not path:
        yield value
    elif isinstance(value, dict) and path[0] in value:
        yield from _values(value[path[0]], path[1:])


def _copy_path(source: Any, target: dict[str, Any], path: list[str]) -> None:
    """Copy what `source` holds at `path` into `target`, keeping the nesting (a list keeps each element's part)."""
    if not isinstance(source, dict) or path[0] not in source:
        return
    value = source[path[0]]
    if len(path) == 1:
        target[path[0]] = value
    elif isinstance(value, dict):
        _copy_path(value, target.setdefault(path[0], {}), path[1:])
    elif isinstance(value, list):
        parts: list[dict[str, Any]] = [{} for _ in value]
        for element, part in zip(value, parts, strict=True):
            _copy_path(element, part, path[1:])
        if any(parts):  # a path no element has adds nothing
            merged = target.setdefault(path[0], [{} for _ in value])
            for into, part in zip(merged, parts, strict=False):
                into.update(part)


def _matches(value: Any, pattern: str) -> bool:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = ""
    elif isinstance(value, (list, dict)):
        return False
    else:
        text = str(value)
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(text, pattern)
    return text == pattern
