"""Stored records as the API presents them: hidden fields dropped, a pool with its members."""


from tandem.config import units
from tandem.models import Pool
from tandem.store import Body, Store, Transaction

HIDDEN_FIELDS = {"password_hash", *units.INTERNAL_FIELDS}
"""Stored but never presented."""


def pool_members(reader: Transaction | Store, pool: Body) -> list[Body]:
    """The members of a stored pool record, in `address:port` order."""
    prefix = units.overlay_prefix(pool["name"], pool.get("incarnation", ""))
    return units.resolve(pool, reader.records(units.OVERLAYS, partition=pool["partition"], prefix=prefix))


def present(reader: Transaction | Store, kind: str, body: Body) -> Body:
    """A stored record of `kind` as the API shows it."""
    shown = {k: v for k, v in body.items() if k not in HIDDEN_FIELDS}
    if kind == Pool.kind:
        shown["members"] = pool_members(reader, body)
    return shown
