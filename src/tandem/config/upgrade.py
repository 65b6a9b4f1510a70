"""Stores written by earlier versions, brought to the present format once, when a device opens them.

Format 3 keeps an index of references (`integrity.references`): it is built from the objects.
Before format 2, members were objects of their own, named `POOL/ADDRESS:PORT`. When a device opens such a store,
each pool's live members are folded into its record (its member list; incarnation and last
replacement empty, which the overlays of that pool are named and judged by) and the old member
objects are dropped, in place and without commits: every device of a group holds the same objects
and makes the same change, and versions keep their stamps, so replicas stay equal.
"""

from collections import defaultdict

from tandem.config import integrity, units
from tandem.store import Body, Store

FORMAT = "3"
"""The configuration format of this version (`config_format` in the store's metadata)."""


def upgrade(store: Store) -> int:
    """Bring the store's configuration to `FORMAT`; the number of pools whose members were folded in."""
    if store.meta("config_format") == FORMAT:
        return 0
    legacy: dict[tuple[str, str], list[Body]] = defaultdict(list)
    old_names = []
    for version in store.kind_versions(units.OVERLAYS):
        if version.name.count("/") != 1:
            continue
        old_names.append((version.partition, version.name))
        if version.body is not None:
            legacy[(version.partition, version.name.partition("/")[0])].append(version.body)
    folded = 0
    with store.atomic():
        for record in list(store.records(units.POOLS)):
            if "incarnation" in record.body:
                continue
            members = units.keyed(legacy.get((record.partition, record.name), []))
            store.rewrite_body(units.POOLS, record.partition, record.name, record.body | {
                "members": [members[key] for key in sorted(members)], "incarnation": "", "members_since": ""})
            folded += 1
        for partition, name in old_names:
            store.remove_version(units.OVERLAYS, partition, name)
        store.reindex(integrity.PARTITIONED_KINDS)
        store.set_meta("config_format", FORMAT)
    return folded
