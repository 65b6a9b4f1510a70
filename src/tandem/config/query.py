"""Collection queries: filters on fields, `fields=` projection and keyset paging."""

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
    """What a client asked of a collection. Filters match top-level fields exactly or by glob."""

    filters: dict[str, str] = field(default_factory=dict)
    fields: list[str] | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[str, str] | None = None

    @classmethod
    def parse(cls, params: Iterable[tuple[str, str]], known_fields: Iterable[str]) -> "Query":
        """Build a query from URL parameters; unknown fields and bad values are a 400 naming them."""
        known = set(known_fields)
        query = cls()
        for key, value in params:
            if key == "fields":
                names = [f for f in value.split(",") if f]
                unknown = [f for f in names if f not in known and f != "*"]
                if unknown:
                    raise BadRequest(f"unknown field {unknown[0]!r} in fields", target="fields")
                query.fields = None if "*" in names else names
            elif key == "limit":
                if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
                    raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", target="limit")
                query.limit = int(value)
            elif key == "after":
                partition, sep, name = value.partition("/")
                if not sep or not name:
                    raise BadRequest("after must be the cursor given in a previous page's next link",
                                     target="after")
                query.after = (partition, name)
            elif key in known:
                query.filters[key] = value
            else:
                raise BadRequest(f"unknown query parameter {key!r}", target=key)
        return query

    def matches(self, record: Body) -> bool:
        return all(_matches(record.get(name), pattern) for name, pattern in self.filters.items())

    def project(self, record: Body, identity: Iterable[str]) -> Body:
        if self.fields is None:
            return record
        wanted = [*identity, *self.fields]
        return {k: record[k] for k in wanted if k in record}

    def page(self, records: Iterator[tuple[tuple[str, str], Body]],
             identity: Iterable[str]) -> tuple[list[Body], tuple[str, str] | None]:
        """The matching records of one page, and the key to continue after (None on the last page)."""
        identity = tuple(identity)
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
