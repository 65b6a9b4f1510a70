"""ClusterManager.create leaves every device as it was when it fails: input only a device would refuse
is refused before the first change, and a step that fails after it has what was done undone.

Four real devices on loopback, shared by the module: every test leaves each of them alone in a domain
of its own, with no device group (`as_before` checks it before and after).
"""

from collections.abc import Iterator
from typing import Any

import pytest

from devices import running
from tandem import Client, ClusterManager, DeviceGroup, Partition, TandemError, TrustedDevice
from tandem.models.fingerprints import format_fingerprint
from waiting import wait_until

TIMEOUT = 30.0
NAMES = ("dev-1", "dev-2", "dev-3", "dev-4")


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Client]]:
    """dev-1..dev-4, each alone; a pinned admin Client for each."""
    with running(tmp_path_factory.mktemp("rollback"), NAMES) as opened:
        yield opened


def state(client: Client) -> tuple[list[str], list[str]]:
    """What the device trusts and its device groups."""
    return (sorted(d["name"] for d in client.trust()["devices"]),
            sorted(g.name for g in DeviceGroup.get_collection(connection=client)))


@pytest.fixture
def as_before(clients: list[Client]) -> Iterator[list[Client]]:
    """The devices, checked alone with no group before the test and again after it."""
    alone = [([name], []) for name in NAMES]
    assert [state(c) for c in clients] == alone
    yield clients
    assert [state(c) for c in clients] == alone


def join(member: Client, newcomer: Client) -> None:
    """`member` adds `newcomer` to its trust domain."""
    TrustedDevice.add(newcomer.url, newcomer.username, newcomer.password, format_fingerprint(newcomer.fingerprint),
                      connection=member)


def part(member: Client, leaving: Client) -> None:
    """`member` removes `leaving` from its trust domain; waited until both are alone again."""
    names = [str(c.device()["name"]) for c in (member, leaving)]
    TrustedDevice(name=names[1]).delete(connection=member)
    wait_until(lambda: [state(member)[0], state(leaving)[0]] == [[names[0]], [names[1]]], TIMEOUT,
               f"{names[1]} alone again")


@pytest.mark.parametrize(
    ("arguments", "status", "code", "target", "message"),
    [
        ({"device_group_partition": "nope"}, 422, "validation_error", "device_group_partition",
         "partition 'nope' does not exist on dev-1"),
        ({"device_group_name": "bad name!"}, None, "invalid_argument", "device_group_name",
         "device_group_name 'bad name!' is not a valid name"),
        ({"device_group_name": "x" * 70}, None, "invalid_argument", "device_group_name", "is not a valid name"),
        ({"device_group_partition": "bad/partition"}, None, "invalid_argument", "device_group_partition",
         "is not a valid name"),
    ],
    ids=["missing-partition", "bad-name", "long-name", "bad-partition"],
)
def test_a_group_the_root_would_refuse_changes_nothing(
    as_before: list[Client], arguments: dict[str, Any], status: int | None, code: str, target: str, message: str
) -> None:
    lines: list[str] = []
    with pytest.raises(TandemError) as caught:
        ClusterManager().create(devices=as_before[:2], **{"device_group_name": "dg", **arguments},
                                timeout=TIMEOUT, progress=lines.append)
    error = caught.value
    assert (error.status_code, error.code, error.target) == (status, code, target)
    assert message in error.message
    assert not any("adds" in line for line in lines), lines


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        ({"type": "sync-only", "partitions": ["Common"]}, "partition Common is already synced by device group solo"),
        ({"type": "sync-failover", "partitions": ["tenant"]}, "dev-1 is already in sync-failover group solo"),
    ],
    ids=["partition-synced", "device-in-failover-group"],
)
def test_a_group_that_clashes_with_one_of_the_root_changes_nothing(
    as_before: list[Client], existing: dict[str, Any], message: str
) -> None:
    root = as_before[0]
    if "tenant" in existing["partitions"]:
        Partition(name="tenant", connection=root).post()
    DeviceGroup(name="solo", members=["dev-1"], connection=root, **existing).post()
    try:
        with pytest.raises(TandemError) as caught:
            ClusterManager().create(devices=as_before[:2], device_group_name="dg", timeout=TIMEOUT)
        assert (caught.value.status_code, caught.value.code) == (409, "conflict")
        assert message in caught.value.message
        assert state(as_before[1]) == (["dev-2"], [])
        assert state(root) == (["dev-1"], ["solo"])
    finally:
        DeviceGroup(name="solo").delete(connection=root)


def test_a_device_in_another_domain_is_refused_before_any_change(as_before: list[Client]) -> None:
    dev1, dev2, dev3, dev4 = as_before
    join(dev4, dev3)
    try:
        with pytest.raises(TandemError) as caught:
            ClusterManager().create(devices=[dev1, dev2, dev3], device_group_name="dg", timeout=TIMEOUT)
        error = caught.value
        assert (error.status_code, error.code, error.target) == (409, "conflict", "dev-3")
        assert "dev-3 already belongs to a trust domain with dev-4" in error.message
        assert state(dev1) == (["dev-1"], []) and state(dev2) == (["dev-2"], [])
        assert state(dev3)[0] == state(dev4)[0] == ["dev-3", "dev-4"]
    finally:
        part(dev4, dev3)


def test_a_device_refusing_after_the_first_change_has_it_undone(as_before: list[Client]) -> None:
    """dev-3 joins dev-4's domain after the checks (while dev-1 adds dev-2), so it refuses dev-1 itself."""
    dev1, dev2, dev3, dev4 = as_before
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if line.startswith("dev-1 adds dev-2 "):
            join(dev4, dev3)

    try:
        with pytest.raises(TandemError) as caught:
            ClusterManager().create(devices=[dev1, dev2, dev3], device_group_name="dg", timeout=TIMEOUT,
                                    progress=progress)
        assert caught.value.status_code == 409
        assert "dev-3 already belongs to a trust domain with dev-4" in caught.value.message
        assert "undoing" not in caught.value.message
        failed = [line for line in lines if line.startswith("create failed (409 conflict: ")]
        assert len(failed) == 1 and "dev-3 already belongs" in failed[0], lines
        assert "dev-2 is alone in its own trust domain" in lines
        assert state(dev1) == (["dev-1"], []) and state(dev2) == (["dev-2"], [])
    finally:
        part(dev4, dev3)


def test_a_failure_after_the_group_is_created_has_group_and_trust_undone(as_before: list[Client]) -> None:
    lines: list[str] = []
    stop = RuntimeError("stopped by the test")

    def progress(line: str) -> None:
        lines.append(line)
        if line == "dev-1 sees dg In Sync":
            raise stop

    with pytest.raises(RuntimeError) as caught:
        ClusterManager().create(devices=as_before[:3], device_group_name="dg", timeout=TIMEOUT, progress=progress)
    assert caught.value is stop and not getattr(stop, "__notes__", None)
    assert "device group dg is deleted on every device" in lines
    assert lines.index("dev-3 is alone in its own trust domain") < lines.index("dev-2 is alone in its own trust domain")


def test_an_undo_that_fails_too_is_told_in_the_error(as_before: list[Client]) -> None:
    """The undo's failure (here at its last step) is added to the message of the error raised."""
    stop = TandemError(None, "stopped", "stopped by the test")

    def progress(line: str) -> None:
        if line == "dev-1 sees dg In Sync":
            raise stop
        if line == "dev-2 is alone in its own trust domain":
            raise RuntimeError("the undo stopped by the test")

    with pytest.raises(TandemError) as caught:
        ClusterManager().create(devices=as_before[:2], device_group_name="dg", timeout=TIMEOUT, progress=progress)
    assert caught.value is stop
    assert stop.message == ("stopped by the test (undoing the changes failed too, so some may remain: "
                            "the undo stopped by the test)")
