"""What the management process would send its data plane, for a store alone (no trust domain, no failover)."""

from tandem.dataplane.feed import Desired, Feed
from tandem.store import Store


def desired_of(store: Store) -> Desired:
    """What a device holding `store`, in no traffic group, may serve (`Feed.build`, all read anew)."""
    return Feed(store).build((), [])
