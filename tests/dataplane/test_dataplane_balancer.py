"""Member choice: round-robin, least-connections, random and source-hash over enabled, healthy members."""

import pytest

from tandem.dataplane import Balancer

A, B, C = ("10.0.0.1", 80, True), ("10.0.0.2", 80, True), ("10.0.0.3", 80, True)


def picks(balancer: Balancer, count: int) -> list[str | None]:
    return [(t.address if (t := balancer.pick()) else None) for _ in range(count)]


def test_round_robin_cycles_in_order() -> None:
    assert picks(Balancer("round-robin", [A, B, C]), 7) == [
        "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]


def test_candidates_give_each_eligible_member_once_from_the_cursor() -> None:
    balancer = Balancer("round-robin", [A, B, C])
    assert [t.address for t in balancer.candidates()] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert [t.address for t in balancer.candidates()] == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]


def test_disabled_and_down_members_are_skipped_unchecked_is_eligible() -> None:
    health = {"10.0.0.2:80": "down", "10.0.0.3:80": "unchecked"}
    balancer = Balancer("round-robin", [A, B, C, ("10.0.0.4", 80, False)], health=lambda k: health.get(k, "up"))
    assert picks(balancer, 4) == ["10.0.0.1", "10.0.0.3", "10.0.0.1", "10.0.0.3"]
    health["10.0.0.2:80"] = "up"
    assert set(picks(balancer, 3)) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}


def test_no_eligible_member() -> None:
    assert Balancer("round-robin", []).pick() is None
    assert list(Balancer("least-connections", [("10.0.0.1", 80, False)]).candidates()) == []
    assert Balancer("round-robin", [A], health=lambda k: "down").pick() is None


def test_least_connections_prefers_fewest_then_rotates_ties() -> None:
    counts = {"10.0.0.1:80": 3, "10.0.0.2:80": 1, "10.0.0.3:80": 1}
    balancer = Balancer("least-connections", [A, B, C], connections=lambda k: counts[k])
    assert [t.address for t in balancer.candidates()] == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
    assert [t.address for t in balancer.candidates()] == ["10.0.0.3", "10.0.0.2", "10.0.0.1"]
    counts["10.0.0.1:80"] = 0
    assert balancer.pick().address == "10.0.0.1"


def test_member_keys_and_ipv6() -> None:
    balancer = Balancer("round-robin", [("2001:db8::1", 443, True)])
    assert balancer.pick().key == "[2001:db8::1]:443"


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="lb method"):
        Balancer("fastest", [A])


def test_source_hash_keeps_a_client_on_its_member_and_skips_one_down() -> None:
    balancer = Balancer("source-hash", [A, B, C])
    clients = [f"192.0.2.{n}" for n in range(32)]
    first = {client: balancer.pick(client).key for client in clients}
    assert first == {client: balancer.pick(client).key for client in clients}
    assert len(set(first.values())) == 3
    down = first[clients[0]]
    balancer.health = lambda key: "down" if key == down else "up"
    assert balancer.pick(clients[0]).key != down
    assert all(balancer.pick(c).key == k for c, k in first.items() if k != down)


def test_random_spreads_over_eligible_members_only() -> None:
    balancer = Balancer("random", [A, B, ("10.0.0.3", 80, False)])
    assert {balancer.pick().key for _ in range(200)} == {"10.0.0.1:80", "10.0.0.2:80"}
