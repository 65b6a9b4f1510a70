"""Users in the trust domain's records: a device that joins a domain brings those of its users the domain does not
have, with their stamps, and never brings back one the domain deleted."""

from pathlib import Path

from tandem.models.cluster import TrustedDevice, UserRecord
from tandem.store import Store
from tandem.trust.domain import Domain


def domain(path: Path, name: str) -> Domain:
    store = Store(path / f"{name}.db")
    me = TrustedDevice(id=store.device_id, name=name, fingerprint=":".join(["ab"] * 32), cert="x",
                       management_url=f"https://{name}:8443", peer_url=f"{name}:8444")
    return Domain(store, me)


def user(name: str, password_hash: str = "h") -> UserRecord:
    return UserRecord(name=name, role="auditor", password_hash=password_hash)


def test_joining_brings_the_devices_own_users_but_not_one_the_domain_deleted(tmp_path: Path) -> None:
    cluster, joining = domain(tmp_path, "dev-1"), domain(tmp_path, "dev-2")
    cluster.put_user(user("admin", "cluster-admin"))
    cluster.put_user(user("bob"))
    cluster.delete_user("bob")
    for name in ("admin", "bob", "carol"):
        joining.put_user(user(name, f"own-{name}"))
    carol_stamp = joining.user_stamp("carol")
    joining.adopt(cluster.join_request())
    assert {u.name: u.password_hash for u in joining.users()} == {"admin": "cluster-admin", "carol": "own-carol"}
    assert joining.user_stamp("carol") == carol_stamp  # as it was: it outranks no later change
    assert joining.user("bob") is None
