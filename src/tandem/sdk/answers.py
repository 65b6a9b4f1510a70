"""What a `ClusterPeer` write answers, shaped as netapp_ontap's `NetAppResponse`: `http_response`, `is_job`, `poll()`.

The object written (or the device's report of a delete) stays reachable: it is `resource`, and its attributes and
keys read through the answer, so `ClusterPeer(...).post().authentication` works as it did.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tandem.sdk.transport import Response

if TYPE_CHECKING:
    from tandem.sdk.peering import ClusterPeer


class Answer:
    """The answer to a write: the HTTP response, and the object written (`resource`)."""

    _OWN = ("resource", "http_response")

    def __init__(self, resource: "ClusterPeer | dict[str, Any]", http_response: Response) -> None:
        object.__setattr__(self, "resource", resource)
        object.__setattr__(self, "http_response", http_response)

    @property
    def is_job(self) -> bool:
        """Whether the device answered with a job (202): these writes are answered when done, so never."""
        return self.http_response.status_code == 202

    def poll(self, state: str | None = None, **options: Any) -> "Answer":
        """netapp_ontap's `poll()`: nothing to wait for (no job), so the answer itself. With `state`, the
        relationship's own `ClusterPeer.poll(state, ...)`: read again until its status is `state` (before these
        answers, `post()` returned the relationship, whose `poll()` waited for `available`: name the state)."""
        if state is not None:
            self._peer().poll(state, **options)
        return self

    def _peer(self) -> "ClusterPeer":
        if isinstance(self.resource, dict):
            raise AttributeError("a delete's answer has no relationship to poll")
        return self.resource

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in self._OWN:  # not set yet (a copy being made): no such attribute
            raise AttributeError(name)
        resource = self.resource
        if isinstance(resource, dict) and not hasattr(dict, name):  # a report: its keys (and a dict's methods)
            try:
                return resource[name]
            except KeyError:
                raise AttributeError(name) from None
        return getattr(resource, name)

    def __setattr__(self, name: str, value: Any) -> None:
        """Set a field of the relationship written (`answer.name = "x"; answer.patch()` changes it)."""
        setattr(self.resource, name, value)

    def _fields(self) -> dict[str, Any]:
        resource = self.resource
        return resource if isinstance(resource, dict) else resource.to_dict()

    def __getitem__(self, key: str) -> Any:
        return self._fields()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._fields()

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())

    def __repr__(self) -> str:
        return f"Answer({self.http_response.status_code}, {self.resource!r})"
