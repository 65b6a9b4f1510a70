"""Stored records as the API presents them: hidden fields dropped, a pool with its members, a certificate
without its key and with what its leaf shows."""

from dataclasses import asdict
from datetime import UTC, datetime

from tandem.config import units
from tandem.models import Certificate, Pool
from tandem.models.pem import chain_info
from tandem.store import Body, Store, Transaction

HIDDEN_FIELDS = set(units.INTERNAL_FIELDS)
"""Stored but never presented."""
SECRET_FIELDS = {Certificate.kind: {"key"}}
"""Fields of a resource's model stored and replicated (and mirrored) but never presented: write-only."""


def pool_members(reader: Transaction | Store, pool: Body) -> list[Body]:
    """The members of a stored pool record, in `address:port` order."""
    prefix = units.overlay_prefix(pool["name"], pool.get("incarnation", ""))
    return units.resolve(pool, reader.records(units.OVERLAYS, partition=pool["partition"], prefix=prefix))


def model_fields(reader: Transaction | Store, kind: str, body: Body) -> Body:
    """A stored record of `kind` as the fields of its model, write-only ones included (a certificate's
    key): what a change is merged into and what a mirror copies. Never shown to a user."""
    fields = {k: v for k, v in body.items() if k not in HIDDEN_FIELDS}
    if kind == Pool.kind:
        fields["members"] = pool_members(reader, body)
    return fields


def without_secrets(kind: str, body: Body) -> Body:
    """`body` without the write-only fields of `kind`."""
    secret = SECRET_FIELDS.get(kind)
    return {k: v for k, v in body.items() if k not in secret} if secret else body


def present(reader: Transaction | Store, kind: str, body: Body) -> Body:
    """A stored record of `kind` as the API shows it."""
    shown = without_secrets(kind, model_fields(reader, kind, body))
    if kind == Certificate.kind:
        shown |= asdict(chain_info(body["certificate"]).shown(datetime.now(UTC)))
    return shown
