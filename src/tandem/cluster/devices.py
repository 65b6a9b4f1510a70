"""The trusted devices as the API shows them (with this device's link to each), and adding and removing
them (`tandem.trust.admission`)."""

from tandem._version import __version__
from tandem.errors import NotFound
from tandem.models.cluster import JoinRequest, TrustedDevice, TrustedDeviceView, TrustRequest
from tandem.sync.engine import SyncEngine
from tandem.trust import admission
from tandem.trust.domain import Domain

FIELDS = list(TrustedDeviceView.model_fields)


class TrustedDevices:
    """The devices of this device's trust domain."""

    def __init__(self, domain: Domain, sync: SyncEngine) -> None:
        self._domain = domain
        self._sync = sync

    @property
    def domain_id(self) -> str:
        return self._domain.domain_id

    def views(self) -> list[TrustedDeviceView]:
        """Every trusted device, by name, with whether this device's link to it is up."""
        return [self._view(d) for d in self._domain.devices()]

    def view(self, name: str) -> TrustedDeviceView:
        record = self._domain.device_named(name)
        if record is None:
            raise NotFound(f"no trusted device {name!r}", target=name)
        return self._view(record)

    async def add(self, request: TrustRequest) -> TrustedDeviceView:
        """Bring the device `request` names into the domain; its view."""
        return self._view(await admission.add_device(self._domain, request))

    def remove(self, name: str) -> None:
        admission.remove_device(self._domain, name)

    def join(self, request: JoinRequest) -> TrustedDevice:
        """Join the domain a member invites this device into; this device's record."""
        return admission.join(self._domain, request)

    def _view(self, record: TrustedDevice) -> TrustedDeviceView:
        itself = record.id == self._domain.device_id
        link = self._sync.peers.get(record.id)
        connected = None if itself else bool(link and link.connected)
        message = "" if itself else (link.message if link else "no link")
        return TrustedDeviceView(name=record.name, id=record.id, fingerprint=record.fingerprint,
                                 management_url=record.management_url,
                                 management_fingerprint=record.management_fingerprint, peer_url=record.peer_url,
                                 self=itself, connected=connected, message=message,
                                 version=__version__ if itself else (link.link.release if link else None))
