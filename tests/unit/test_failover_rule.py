"""The failover rule and heartbeat authentication, without a network."""

import secrets

from tandem.failover.heartbeat import Receiver, Sender, heartbeat_key, seal
from tandem.failover.rule import ACTIVE, OFFLINE, STANDBY, Member, decide

ORDER = ["a", "b", "c"]


def member(name, state=STANDBY, alive=True, offline=False, declined=False, score=100, down=()):
    return Member(name, f"id-{name}", alive, offline, state, declined, score, down)


def test_the_first_alive_candidate_takes_over_when_no_one_is_active():
    members = [member("a", alive=False), member("b"), member("c")]
    assert decide(members[1], members, ORDER, False)[0] == ACTIVE
    assert decide(members[2], members, ORDER, False)[0] == STANDBY


def test_the_active_keeps_it_while_alive_without_failback_and_yields_with_it():
    members = [member("a"), member("b", ACTIVE)]
    assert decide(members[0], members, ORDER, auto_failback=False)[0] == STANDBY
    assert decide(members[1], members, ORDER, auto_failback=False)[0] == ACTIVE
    state, reason = decide(members[0], members, ORDER, auto_failback=True)
    assert state == ACTIVE and "auto-failback" in reason


def test_two_actives_after_a_partition_leave_exactly_one():
    members = [member("a", ACTIVE), member("b", ACTIVE), member("c")]
    outcomes = {m.name: decide(m, members, ORDER, False)[0] for m in members}
    assert outcomes == {"a": ACTIVE, "b": STANDBY, "c": STANDBY}
    reversed_order = ["c", "b", "a"]
    outcomes = {m.name: decide(m, members, reversed_order, False)[0] for m in members}
    assert outcomes == {"a": STANDBY, "b": ACTIVE, "c": STANDBY}


def test_offline_and_forced_standby():
    members = [member("a", ACTIVE, declined=True), member("b")]
    assert decide(members[0], members, ORDER, False)[0] == STANDBY
    after = [member("a", STANDBY, declined=True), member("b")]
    assert decide(after[1], after, ORDER, auto_failback=True)[0] == ACTIVE
    assert decide(after[0], after, ORDER, auto_failback=True)[0] == STANDBY
    alone = [member("a", STANDBY, declined=True), member("b", alive=False)]
    assert decide(alone[0], alone, ORDER, False)[0] == ACTIVE  # a decline holds only while another can serve
    offline = [member("a", offline=True), member("b")]
    assert decide(offline[0], offline, ORDER, False)[0] == OFFLINE
    assert decide(offline[1], offline, ORDER, False)[0] == ACTIVE


def test_failback_waits_for_its_delay():
    members = [member("a"), member("b", ACTIVE)]
    assert decide(members[0], members, ORDER, auto_failback=True, failback_in=2.5) == (STANDBY, "")
    assert decide(members[0], members, ORDER, auto_failback=True, failback_in=0.0)[0] == ACTIVE
    alone = [member("a"), member("b", alive=False)]
    assert decide(alone[0], alone, ORDER, auto_failback=True, failback_in=2.5)[0] == ACTIVE  # no one serves: at once


def test_with_quorum_the_minority_side_serves_nothing():
    cut_off = [member("a", ACTIVE), member("b", alive=False), member("c", alive=False)]
    assert decide(cut_off[0], cut_off, ORDER, False, quorum=True) == (STANDBY, "no quorum: hears 1 of 3 members")
    assert decide(cut_off[0], cut_off, ORDER, False)[0] == ACTIVE  # without quorum it keeps serving
    majority = [member("a", alive=False), member("b"), member("c")]
    assert decide(majority[1], majority, ORDER, False, quorum=True)[0] == ACTIVE
    pair = [member("a", ACTIVE), member("b", alive=False)]
    assert decide(pair[0], pair, ORDER, False, quorum=True)[0] == STANDBY  # 1 of 2 is no majority


def test_a_standby_that_outscores_the_active_takes_over_once_its_hold_is_over():
    members = [member("a", ACTIVE, score=50, down=("gateway 198.18.0.1",)), member("b")]
    assert decide(members[1], members, ORDER, False, takeover_in=0.3) == (STANDBY, "")
    assert decide(members[1], members, ORDER, False) == (ACTIVE, "a score 50 < b score 100: gateway 198.18.0.1 down")
    assert decide(members[0], members, ORDER, False) == (ACTIVE, "")  # it serves until b took over
    both = [member("a", ACTIVE, score=50, down=("gateway 198.18.0.1",)), member("b", ACTIVE)]
    assert decide(both[0], both, ORDER, False) == (
        STANDBY, "b is also active: a score 50 < b score 100: gateway 198.18.0.1 down")
    assert decide(both[1], both, ORDER, False) == (ACTIVE, "")
    equal = [member("a"), member("b", ACTIVE)]
    assert decide(equal[0], equal, ORDER, False) == (STANDBY, "")  # equal scores: HA order and auto-failback rule
    nobody = [member("a", score=50), member("b")]
    assert decide(nobody[1], nobody, ORDER, False)[0] == ACTIVE  # no one active: the best score takes it
    assert decide(nobody[0], nobody, ORDER, False)[0] == STANDBY


def test_heartbeats_are_authenticated_and_replays_dropped():
    secret = secrets.token_hex(32)
    key = heartbeat_key(secret)
    sender = Sender("dev-a")
    receiver = Receiver(key)
    first = seal(key, sender.next(False, {}))
    assert receiver.open(first)[0].device == "dev-a"
    assert receiver.open(first) is None and receiver.counters.replayed == 1
    forged = seal(heartbeat_key(secrets.token_hex(32)), sender.next(False, {}))
    assert receiver.open(forged) is None and receiver.counters.forged == 1
    tampered = bytearray(seal(key, sender.next(False, {})))
    tampered[-5] ^= 1
    assert receiver.open(bytes(tampered)) is None and receiver.counters.forged == 2
    assert receiver.open(b"short") is None and receiver.counters.forged == 3
    restarted = Sender("dev-a")  # a new boot epoch: numbers start again but are newer
    assert receiver.open(seal(key, restarted.next(False, {}))) is not None
    assert receiver.counters.received == 2


def test_each_heartbeat_counts_once_per_path_and_replays_are_dropped_on_every_path():
    key = heartbeat_key(secrets.token_hex(32))
    sender = Sender("dev-a")
    kept = Sender("dev-a")
    kept.seq = 5  # the last run heard dev-a's 5th heartbeat of this boot
    receiver = Receiver(key, last={"dev-a": (kept.boot, 5)})
    sender.boot = kept.boot
    old = sender.next(False, {})  # number 1: older than what the last run heard, on any path
    assert receiver.open(seal(key, old.model_copy(update={"path": 1}))) is None
    sender.seq = 5
    beat = sender.next(False, {})
    on_path_0, on_path_1 = (seal(key, beat.model_copy(update={"path": n})) for n in (0, 1))
    assert receiver.open(on_path_1) == (beat.model_copy(update={"path": 1}), True)  # first copy: it counts
    assert receiver.open(on_path_0) == (beat, False)  # the same number on the other path: that path is alive
    assert receiver.open(on_path_0) is None and receiver.open(on_path_1) is None  # replays on either path
    assert receiver.last["dev-a"] == (beat.boot, beat.seq) and receiver.counters.replayed == 3
