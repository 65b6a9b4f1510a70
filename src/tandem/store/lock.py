"""The lock a running device holds on its data directory: one `tandem serve` per directory, and no restore into
a directory whose device runs."""

import fcntl
import os
from pathlib import Path

LOCK_FILE = "lock"


class Locked(Exception):
    """Another process holds the data directory."""


def hold(data_dir: Path) -> int:
    """Take the data directory's lock until the descriptor returned is closed or the process ends; `Locked` if
    another process holds it."""
    descriptor = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise Locked(f"a device runs on {data_dir} (another `tandem serve` holds it)") from None
    return descriptor

