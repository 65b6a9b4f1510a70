"""Collection queries as ONTAP's clients send them: dotted filters (through lists too), dotted `fields=`, the count
alone, `max_records`."""

import pytest

from tandem.api.collections import require_filter
from tandem.config import Query
from tandem.errors import BadRequest

PEERS = [
    {"uuid": "1", "name": "east", "status": {"state": "available"}, "remote": {"ip_addresses": ["10.0.0.1:1"]}},
    {"uuid": "2", "name": "west", "status": {"state": "pending"}, "remote": {"ip_addresses": ["10.0.0.2:1"]}},
]
KNOWN = ["uuid", "name", "status", "remote"]


def page(params: list[tuple[str, str]]) -> tuple[Query, list[dict]]:
    query = Query.parse(params, KNOWN)
    records, _after = query.page(iter((("", p["uuid"]), p) for p in PEERS), ("uuid",))
    return query, records


def test_dotted_filters_and_fields() -> None:
    assert [p["name"] for p in page([("status.state", "available")])[1]] == ["east"]
    assert [p["name"] for p in page([("remote.ip_addresses", "10.0.0.2*")])[1]] == ["west"]
    assert page([("fields", "name,status.state"), ("name", "west")])[1] == [
        {"uuid": "2", "name": "west", "status": {"state": "pending"}}]
    assert page([("fields", "remote.ip_addresses"), ("max_records", "1")])[1] == [
        {"uuid": "1", "remote": {"ip_addresses": ["10.0.0.1:1"]}}]


def test_a_path_a_record_lacks_matches_nothing() -> None:
    assert page([("name.typo", "*")])[1] == [] and page([("status.colour", "")])[1] == []
    assert len(page([("name", "*")])[1]) == 2


def test_bulk_changes_take_no_read_parameter() -> None:
    require_filter(Query.parse([("name", "east")], KNOWN))
    for params in ([("name", "east"), ("fields", "name")], [("name", "east"), ("return_records", "false")]):
        with pytest.raises(BadRequest, match="for reads"):
            require_filter(Query.parse(params, KNOWN))


def test_the_count_alone() -> None:
    query, records = page([("return_records", "false"), ("status.state", "*")])
    assert (records, query.matched) == ([], 2)
    assert page([("return_records", "True")])[0].matched is None


@pytest.mark.parametrize(("params", "target"), [
    ([("colour.state", "x")], "colour.state"), ([("fields", "status.")], "fields"),
    ([("return_records", "maybe")], "return_records"), ([("max_records", "0")], "max_records")])
def test_unknown_paths_and_bad_values_are_refused(params: list[tuple[str, str]], target: str) -> None:
    with pytest.raises(BadRequest) as refused:
        Query.parse(params, KNOWN)
    assert refused.value.target == target
