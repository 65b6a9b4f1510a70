"""ONTAP's forms of a cluster peer request, taken as ONTAP takes them: plain addresses, date-time expiries, `ipspace`
and `initial_allowed_svms` objects; and what stays refused."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from tandem.models.peering import INTERCLUSTER_PORT, PeerCreate, PeerPatch, expires_in

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_plain_addresses_take_the_intercluster_port() -> None:
    body = PeerCreate.model_validate({"remote": {"ip_addresses": ["10.0.0.1", "10.0.0.2:7444", "[fd00::1]",
                                                                  "fd00::1:7444"]}})
    assert body.remote is not None
    port = INTERCLUSTER_PORT  # an IPv6 address alone goes in brackets: without them its last group is a port
    assert body.remote.ip_addresses == [f"10.0.0.1:{port}", "10.0.0.2:7444", f"[fd00::1]:{port}", "[fd00::1]:7444"]
    with pytest.raises(ValidationError):
        PeerCreate.model_validate({"remote": {"ip_addresses": ["not an address"]}})


def test_expiry_is_a_duration_or_a_date_time() -> None:
    assert expires_in("PT2H", NOW) == timedelta(hours=2)
    assert expires_in("2026-12-02T12:00:00Z", NOW) == timedelta(days=1)
    assert expires_in("12/02/2026 12:00:00", NOW) == timedelta(days=1)  # ONTAP's examples' form, UTC
    assert expires_in("2026-12-01T13:00:00+01:00", NOW) == timedelta(0)
    with pytest.raises(ValueError, match="neither an ISO 8601 duration"):
        expires_in("tomorrow", NOW)
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert PeerCreate.model_validate({"authentication": {"generate_passphrase": True, "expiry_time": soon}})
    for text, message in (("2018-12-25T12:34:56Z", "later than now"),
                          ((datetime.now(UTC) + timedelta(days=8)).isoformat(), "beyond 7 days")):
        with pytest.raises(ValidationError, match=message):
            PeerCreate.model_validate({"authentication": {"generate_passphrase": True, "expiry_time": text}})


def test_ontap_names_and_object_forms_are_aliases() -> None:
    body = PeerCreate.model_validate({"ipspace": {"name": "Default"},
                                      "initial_allowed_svms": [{"name": "web"}, "dns"]})
    assert (body.ipspace, body.initial_allowed_partitions) == ("Default", ["web", "dns"])
    assert PeerPatch.model_validate({"initial_allowed_svms": ["web"]}).initial_allowed_partitions == ["web"]
    with pytest.raises(ValidationError):
        PeerCreate.model_validate({"initial_allowed_svms": [{"name": "web", "color": "red"}]})
