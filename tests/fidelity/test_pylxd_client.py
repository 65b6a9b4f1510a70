"""The real `pylxd` client (PyPI pylxd 2.4) against a Tandem pair: the cluster and its members on LXD's paths and in
LXD's envelope, as pylxd's documentation reads them, with a session carrying Tandem credentials."""

import pytest
import requests
from cluster_helpers import Cluster
from pylxd import Client
from pylxd.exceptions import LXDAPIException, NotFound
from pylxd.models import ClusterMember

from devices import ADMIN_PASSWORD, RunningDevice


def session(device: RunningDevice, username: str = "admin", password: str = ADMIN_PASSWORD) -> requests.Session:
    """A requests session with Tandem credentials (HTTP Basic) that trusts the device's certificate alone (the
    environment's CA bundle, which requests would prefer, is not consulted)."""
    made = requests.Session()
    made.auth = (username, password)
    made.verify = str(device.data_dir / "identity" / "cert.pem")
    made.trust_env = False
    return made


def test_the_cluster_and_its_members_as_pylxd_reads_them(formed_pair: Cluster) -> None:
    client = Client(endpoint=formed_pair["dev-1"].device.url, session=session(formed_pair["dev-1"].device))
    assert client.trusted and client.has_api_extension("clustering")
    cluster = client.cluster.get()
    assert (cluster.server_name, cluster.enabled) == ("dev-1", True)
    members = cluster.members.all()
    assert sorted(m.server_name for m in members) == ["dev-1", "dev-2"]
    # pylxd 2.4's own `cluster.members.get(name)` passes the cluster as an argument too and raises TypeError before
    # any request (its manager binds both); the model's classmethod is what it calls.
    member = ClusterMember.get(client, "dev-2")
    assert (member.server_name, member.url, member.status, member.database) == (
        "dev-2", formed_pair["dev-2"].device.url, "Online", True)
    assert isinstance(member.message, str) and member.roles is not None
    urls = {name: formed_pair[name].device.url for name in ("dev-1", "dev-2")}
    assert {m.server_name: m.url for m in members} == urls
    with pytest.raises(NotFound) as missing:
        ClusterMember.get(client, "dev-9")
    assert "dev-9" in str(missing.value) and missing.value.response.status_code == 404


def test_the_same_authentication_as_the_api(formed_pair: Cluster) -> None:
    device = formed_pair["dev-1"].device
    with pytest.raises(LXDAPIException):  # pylxd reads the refusal of its first request
        Client(endpoint=device.url, session=session(device, password="wrong password"))
    anonymous = session(device)
    anonymous.auth = None
    assert anonymous.get(f"{device.url}/1.0/cluster").status_code == 401
