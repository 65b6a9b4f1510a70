"""Fencing: a batch that carries a token is refused when the device saw a newer one for what it guards.

A fence record (store kind `fences`, in its partition, so the device group replicates it like a lease)
holds, per scope name, the newest token that wrote it and its holder. The check and the records are
part of the batch's transaction (or draft): a batch and a newer writer's batch cannot both pass.
"""

from tandem.config.objects import Txn
from tandem.errors import LeaseLost
from tandem.models.fence import FENCES, Fence
from tandem.store import Body


def check_fence(txn: Txn, fence: Fence) -> None:
    """Refuse (`LeaseLost`) if a newer token of the same epoch wrote any of the fence's scope; else record this
    one (a token of another epoch, another lease store, is replaced: tokens of two stores do not compare)."""
    for name in fence.scope:
        seen: Body | None = txn.get(FENCES, fence.partition, name)
        if seen is None or seen["epoch"] != fence.epoch or seen["token"] < fence.token:
            txn.put(FENCES, fence.partition, name, {"partition": fence.partition, "name": name,
                                                   "epoch": fence.epoch, "token": fence.token,
                                                   "holder": fence.holder})
        elif seen["token"] > fence.token:
            raise LeaseLost(f"{name} in partition {fence.partition} was written with token {seen['token']} by "
                            f"{seen['holder']}, newer than this batch's {fence.token}: {fence.holder} lost its lease",
                            target="fence.token")
