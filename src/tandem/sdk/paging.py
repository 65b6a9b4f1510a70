"""Paging: the records of a collection, page after page (`{"records": [...], "next": ...}`).

    for record in records(client, "/api/leases", {"partition": "apps"}): ...
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tandem.sdk.client import Client

PAGE_LIMIT = 10_000
"""Records asked for per page of a collection (the API's maximum)."""


def records(
    connection: "Client", path: str, params: dict[str, Any] | None = None, *, max_records: int | None = None
) -> Iterator[dict[str, Any]]:
    """The records of the collection at `path` (`params`: its filters), following each page's `next` link,
    at most `max_records`. Pages ask for `limit=10000` records (fewer when `max_records` is smaller) unless
    `params` has a `limit`. Lazy: the first page is asked for when the first record is."""
    first = dict(params or {})
    first.setdefault("limit", PAGE_LIMIT if max_records is None else max(1, min(max_records, PAGE_LIMIT)))
    query: dict[str, Any] | None = first
    count = 0
    next_path: str | None = path
    while next_path and (max_records is None or count < max_records):
        page = connection.request("GET", next_path, params=query)
        for record in page.get("records", ()):
            yield record
            count += 1
            if max_records is not None and count >= max_records:
                return
        next_path, query = page.get("next"), None
