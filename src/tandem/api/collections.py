"""Collection answers: records, their count and the link to the next page."""

from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from pydantic import BaseModel, Field

from tandem.api.openapi import errors
from tandem.api.responses import JSON
from tandem.config import Query
from tandem.errors import BadRequest

QUERIED = errors(400)
"""`responses=` of an operation that reads a collection query (fields, filters, paging): 400 if it is wrong."""


class Page(BaseModel):
    """A collection answer: one page of records (the fields asked for) and the link to the next page."""

    records: list[dict[str, Any]]
    num_records: int
    next: str | None
    links: dict[str, Any] = Field(default_factory=dict, alias="_links")
    """`{"next": {"href": ...}}` while there is a next page (where ONTAP's clients look for it)."""


def parse_query(request: Request, known_fields: list[str]) -> Query:
    return Query.parse(request.query_params.multi_items(), known_fields)


def page_response(request: Request, records: list[dict], after: tuple[str, str] | None,
                  matched: int | None = None) -> JSON:
    """`{"records", "num_records", "next"}` where `next` continues after the last record of this page; with
    `matched` (the query's count, `return_records=false`), no records and that count."""
    if matched is not None:
        return JSON({"records": [], "num_records": matched, "next": None})
    next_link = None
    if after is not None:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
        params.append(("after", f"{after[0]}/{after[1]}"))
        next_link = f"{request.url.path}?{urlencode(params)}"
    links = {"next": {"href": next_link}} if next_link else {}  # where ONTAP's clients look for the next page
    return JSON({"records": records, "num_records": len(records), "next": next_link, "_links": links})


def require_filter(query: Query) -> None:
    """Bulk changes must name what they change, and take no parameter of a read."""
    if query.fields is not None or not query.return_records:
        raise BadRequest("fields and return_records are for reads, not for a bulk change", target="query")
    if not query.filters:
        raise BadRequest("give at least one filter (e.g. name=*) to change or delete several records",
                         target="query")


def paged(request: Request, records: list[dict[str, Any]], known: list[str], key: str = "name") -> JSON:
    """A collection answer (fields, filters, paging) over records named by their field `key`."""
    query = parse_query(request, known)
    keyed = iter((("", r[key]), r) for r in sorted(records, key=lambda r: r[key])
                  if query.after is None or ("", r[key]) > query.after)
    page, after = query.page(keyed, (key,))
    return page_response(request, page, after, query.matched)
