"""Output formatting: tables for people, JSON for scripts, errors on stderr."""

import datetime
import json

import pytest

from tandem.cli.output import Column, Output, error_line, format_value, to_json


@pytest.mark.parametrize(("value", "text"), [
    (None, ""),
    (True, "yes"),
    (False, "no"),
    (5.0, "5"),
    (0.25, "0.25"),
    (80, "80"),
    (["a", "b"], "a, b"),
    ({"x": 1}, "x=1"),
    (datetime.datetime(2024, 1, 2, 3, 4, 5, 678, tzinfo=datetime.UTC), "2024-01-02T03:04:05+00:00"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_json_records_are_an_array_on_stdout(capsys):
    records = [{"name": "web", "port": 80, "enabled": True, "monitor": None}]
    Output("json").records(records, [Column("name")])
    out, err = capsys.readouterr()
    assert json.loads(out) == records
    assert err == ""


def test_json_empty_list_is_an_empty_array(capsys):
    Output("json").records([], [Column("name")])
    out, _ = capsys.readouterr()
    assert json.loads(out) == []


def test_json_record_is_an_object(capsys):
    Output("json").record({"name": "dev-1", "last_commit_id": 3})
    out, _ = capsys.readouterr()
    assert json.loads(out) == {"name": "dev-1", "last_commit_id": 3}


def test_to_json_handles_dates():
    stamp = datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)
    assert json.loads(to_json({"at": stamp})) == {"at": "2024-01-02T00:00:00+00:00"}


def test_table_shows_headers_and_values_literally(capsys):
    records = [{"address": "2001:db8::1", "key": "[2001:db8::1]:80", "enabled": False},
               {"address": "10.0.0.1", "key": "[bold]10.0.0.1:80[/bold]", "enabled": True}]
    Output("table").records(records, [Column("address"), Column("key", "member"), Column("enabled")])
    out, _ = capsys.readouterr()
    assert "address" in out and "member" in out and "enabled" in out
    assert "[2001:db8::1]:80" in out  # not eaten as Rich markup
    assert "[bold]10.0.0.1:80[/bold]" in out
    assert "no" in out and "yes" in out


def test_table_renderer_column(capsys):
    column = Column("members", render=lambda value, _record: str(len(value)))
    Output("table").records([{"members": [1, 2, 3]}], [column])
    out, _ = capsys.readouterr()
    assert "3" in out


def test_empty_table_says_so_on_stderr(capsys):
    Output("table").records([], [Column("name")], empty="no pools")
    out, err = capsys.readouterr()
    assert out == ""
    assert "no pools" in err


def test_table_record_lists_fields(capsys):
    Output("table").record({"name": "web", "lb_method": "round-robin", "members": []}, skip=("members",))
    out, _ = capsys.readouterr()
    assert "lb method" in out and "round-robin" in out
    assert "members" not in out


def test_long_values_are_not_truncated(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    fingerprint = ":".join(["ab"] * 32)
    Output("table").records([{"name": "dev-1", "fingerprint": fingerprint, "url": "https://127.0.10.1:8443"}],
                            [Column("name"), Column("url", no_wrap=True), Column("fingerprint", no_wrap=True)])
    out, _ = capsys.readouterr()
    assert fingerprint in out


def test_error_line():
    assert error_line("no such pool") == "error: no such pool"
    assert error_line("bad address", "address") == "error: bad address (target: address)"


def test_error_table_mode_on_stderr(capsys):
    Output("table").error("'999.1.1.1' is not an IPv4 address", target="address", code="validation_error")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "error: '999.1.1.1' is not an IPv4 address (target: address)\n"


def test_error_json_mode_on_stderr(capsys):
    Output("json").error("duplicate", code="conflict", target="name", status=409)
    out, err = capsys.readouterr()
    assert out == ""
    assert json.loads(err) == {"error": {"code": "conflict", "message": "duplicate", "target": "name",
                                         "status": 409}}


def test_done_prints_data_only_in_json(capsys):
    Output("json").done("created pool web", {"name": "web"})
    out, _ = capsys.readouterr()
    assert json.loads(out) == {"name": "web"}
    Output("table").done("created pool web", {"name": "web"})
    out, _ = capsys.readouterr()
    assert out.strip() == "created pool web"
