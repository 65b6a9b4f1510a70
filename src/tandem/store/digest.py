"""Digests of the stored objects, per partition: equal digests, equal replicas.

A partition's digest is 64 buckets, each the XOR of the hashes of the versions (key, stamp, deleted)
of its objects in that bucket, so that a change updates it in place (XOR out the old version's hash,
XOR in the new one's) and a scope's digest is the XOR of its partitions' digests.
"""

import hashlib

BUCKETS = 64

Digest = list[int]


def bucket_of(kind: str, partition: str, name: str) -> int:
    key = "\0".join((kind, partition, name)).encode()
    return hashlib.blake2b(key, digest_size=2).digest()[0] % BUCKETS


def version_hash(kind: str, partition: str, name: str, hlc: int, origin: str, deleted: bool) -> int:
    text = "\0".join((kind, partition, name, str(hlc), origin, str(int(deleted))))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def home_partition(kind: str, partition: str, name: str) -> str:
    """The partition an object counts in: its own, or for a partition object, itself ('' for neither)."""
    return name if kind == "partitions" and partition == "" else partition


def combine(digests: list[Digest]) -> Digest:
    out = [0] * BUCKETS
    for digest in digests:
        for i, value in enumerate(digest):
            out[i] ^= value
    return out
