"""How the kernel engine's table changes (`nftables_rules.Ruleset.transactions`): new chains are made before the
base chains point at them, a chain is never rewritten, and what a change leaves unused is deleted only by the
next change (a packet must never meet a map in the transaction that makes or deletes it)."""

from collections import defaultdict
from typing import Any

from tandem.dataplane.engine import ServedMember, ServedPool, ServedVirtual
from tandem.dataplane.nftables_rules import BASE_CHAINS, Ruleset, render


def ruleset(*weights: tuple[int, int], udp: bool = False) -> Ruleset:
    """Tcp virtual servers `tcp0`, `tcp1`... with two members of these weights (and a udp one)."""
    virtuals = []
    for n, (first, second) in enumerate(weights):
        members = (ServedMember("10.72.0.11", 9000, weight=first), ServedMember("10.72.0.12", 9000, weight=second))
        virtuals.append(ServedVirtual("Common", f"tcp{n}", "10.71.0.100", 80 + n, ServedPool("Common", f"web{n}",
                                                                                             members=members)))
    if udp:
        members = (ServedMember("10.72.0.11", 53),)
        virtuals.append(ServedVirtual("Common", "dns", "10.71.0.100", 53, ServedPool("Common", "dns", members=members),
                                      protocol="udp"))
    return render(virtuals, lambda pool, member: "up")


def touched(commands: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The chains each kind of command names (`add rule` as "rule", `flush chain` as "flush", ...)."""
    found: dict[str, set[str]] = defaultdict(set)
    for command in commands:
        (verb, thing), = command.items()
        (kind, value), = thing.items()
        if kind in ("chain", "rule"):
            key = "rule" if kind == "rule" else f"{verb} chain"
            found[key].add(value["chain"] if kind == "rule" else value["name"])
    return found


def write(rules: Ruleset, previous: Ruleset | None) -> tuple[list[list[dict[str, Any]]], Ruleset]:
    return rules.transactions(previous), rules.written_after(previous)


def test_a_change_makes_its_chains_first_and_then_points_the_base_chains_at_them() -> None:
    _, before = write(ruleset((1, 1)), None)
    after = ruleset((2, 1))
    (making, pointing), _ = write(after, before)
    new = after.chains.keys() - before.chains.keys()
    assert len(new) == 1  # the virtual server's chain: its members' chains are unchanged
    made = touched(making)
    assert made["add chain"] - set(BASE_CHAINS) == new and made["rule"] == new  # nothing in the table rewritten
    assert not made["flush chain"]
    pointed = touched(pointing)
    assert pointed == {"flush chain": set(BASE_CHAINS), "rule": {"prerouting", "output"}}
    (new_chain,) = new
    assert [command["add"]["rule"]["expr"][-1] for command in pointing if "rule" in command.get("add", {})] == [
        {"goto": {"target": new_chain}}] * 2


def test_a_change_with_no_new_map_is_one_transaction() -> None:
    """(a member out of service, leaving one: the virtual server's chain goes to it without a map)"""
    _, before = write(ruleset((2, 1)), None)
    (only,), _ = write(ruleset((0, 1)), before)
    made = touched(only)
    assert made["flush chain"] == set(BASE_CHAINS) and len(made["add chain"] - set(BASE_CHAINS)) == 1


def test_a_table_in_an_unknown_state_is_made_anew_in_one_transaction() -> None:
    """(the first write, or one after a refusal: never a moment with the base chains empty)"""
    rules = ruleset((2, 1))
    (only,) = rules.transactions(None)
    assert only[1] == {"delete": {"table": {"family": "inet", "name": "tandem"}}}
    made = touched(only)
    assert made["add chain"] == rules.chains.keys() and made["rule"] == rules.chains.keys() - {"postrouting"}


def test_the_same_rules_are_the_same_chain_and_the_counters_keep_their_names() -> None:
    assert ruleset((2, 1)).chains == ruleset((2, 1)).chains
    assert ruleset((1, 1)).counters == ruleset((2, 1)).counters
    _, written = write(ruleset((2, 1)), None)
    assert write(ruleset((2, 1)), written)[1] == written  # nothing to write again


def test_what_a_change_leaves_unused_is_deleted_by_the_next_write_only() -> None:
    _, first = write(ruleset((1, 1), udp=True), None)
    (making, _), second = write(ruleset((2, 1)), first)
    assert not any("delete" in command for command in making)
    dns_and_old = first.chains.keys() - second.chains.keys()
    assert second.retired_chains == dns_and_old and len(dns_and_old) == 3  # the udp server and its member; tcp0's
    assert len(second.retired_counters) == 2  # the udp server's and its member's

    (making, _), third = write(ruleset((3, 1)), second)
    made = touched(making)
    assert made["delete chain"] == made["flush chain"] == dns_and_old
    assert {command["delete"]["counter"]["name"] for command in making
            if "counter" in command.get("delete", {})} == second.retired_counters
    assert third.retired_chains == second.chains.keys() - third.chains.keys()

    (only,), fourth = write(ruleset((2, 1)), third)  # a chain retired comes back: kept as it is (no new map)
    made = touched(only)
    back = second.chains.keys() - set(BASE_CHAINS) - third.chains.keys()
    assert back and not back & (made["add chain"] | made["delete chain"] | made["rule"])
    assert fourth.retired_chains == third.chains.keys() - fourth.chains.keys()
