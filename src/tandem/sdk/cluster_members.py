"""The cluster's membership view (LXD style, as in pylxd): `client.cluster`.

    cluster = client.cluster.get()
    cluster.server_name, cluster.enabled, cluster.cluster_name, cluster.uuid, cluster.member_config
    for member in cluster.members.all():
        print(member.server_name, member.status, member.message, member.roles)
    member = cluster.members.get("dev-2")      # TandemError not_found when no member has that name
    member.evacuate()                          # its traffic groups go to the others; it takes none
    member.restore()
    client.cluster.rename("site-a")

Statuses (`Online`, `Offline`, `Evacuated`) are those the device asked sees now: see
docs/clustering.md, "Membership view".
"""

from typing import TYPE_CHECKING, Any, Self, get_args

from tandem.models.cluster import MemberStatus
from tandem.sdk.paging import records
from tandem.sdk.resource import segment

if TYPE_CHECKING:
    from tandem.sdk.client import Client

ONLINE, OFFLINE, EVACUATED = get_args(MemberStatus)

_CLUSTER = "/api/cluster"
_MEMBERS = "/api/cluster/members"


class _Record:
    """An object read from the device: the record's fields are its attributes."""

    def __init__(self, client: "Client", record: dict[str, Any]) -> None:
        self._client = client
        self.__dict__.update(record)

    def to_dict(self) -> dict[str, Any]:
        """The fields as the device sent them."""
        return {key: value for key, value in self.__dict__.items() if key[0] != "_"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"


class ClusterMember(_Record):
    """A member of the cluster: `server_name`, `url`, `database`, `status`, `message`, `roles`."""

    server_name: str
    url: str
    database: bool
    status: str
    message: str
    roles: list[str]

    def evacuate(self) -> Self:
        """Hand this member's traffic groups to the other members and keep it from taking any (idempotent;
        allowed when nobody can take them: `message` then says so); the attributes are read again."""
        return self._post("evacuate")

    def restore(self) -> Self:
        """Let this member take traffic groups again (idempotent); the attributes are read again."""
        return self._post("restore")

    def _post(self, action: str) -> Self:
        self.__dict__.update(self._client.request("POST", f"{_MEMBERS}/{segment(self.server_name)}/{action}"))
        return self


class ClusterMembers:
    """The members of the cluster of one device: `all()`, `get(name)`."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    def all(self) -> list[ClusterMember]:
        """Every member (the trusted devices, the one asked included), by name."""
        return [ClusterMember(self._client, record) for record in records(self._client, _MEMBERS)]

    def get(self, name: str) -> ClusterMember:
        """One member; TandemError `not_found` (404) when no member has that name."""
        return ClusterMember(self._client, self._client.request("GET", f"{_MEMBERS}/{segment(name)}"))


class ClusterInfo(_Record):
    """The cluster as one device sees it: `server_name` (that device), `enabled` (it is in a trust domain
    with other devices), `member_config` (what a new member supplies: `[{"entity", "name", "key",
    "description"}]`), `cluster_name`, `uuid` (the trust domain's id); `members` (ClusterMembers)."""

    server_name: str
    enabled: bool
    member_config: list[dict[str, str]]
    cluster_name: str
    uuid: str

    @property
    def members(self) -> ClusterMembers:
        return ClusterMembers(self._client)


class Membership:
    """`client.cluster`: the cluster of the device the client talks to."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"Membership({self._client!r})"

    def get(self) -> ClusterInfo:
        """`GET /api/cluster`."""
        return ClusterInfo(self._client, self._client.request("GET", _CLUSTER))

    def rename(self, cluster_name: str) -> ClusterInfo:
        """Name the cluster (admins only; every member takes the name)."""
        return ClusterInfo(self._client, self._client.request("PATCH", _CLUSTER, json={"cluster_name": cluster_name}))
