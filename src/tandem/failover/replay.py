"""What the failover process keeps across its restarts so that heartbeats stay unreplayable: the greatest
(boot, seq) heard of each member (a heartbeat captured before a restart is still a replay after it) and this
device's own last boot epoch (its next one is greater even if the clock stepped back).

One small JSON file of the data directory, `run/heartbeats.json` (mode 0600), replaced atomically at most
every `SAVE_EVERY` seconds while heartbeats arrive, and when the process stops. A crash loses at most the
heartbeats of that last moment: those could be replayed once each, within the clock window, after the restart.
"""

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

log = logging.getLogger("tandem.failover")

STATE_FILE = "run/heartbeats.json"
"""Relative to the data directory (the working directory of the failover process)."""
SAVE_EVERY = 0.25
"""Seconds between two saves at most."""


@dataclass
class ReplayState:
    boot: int = 0
    """This device's last boot epoch."""
    last: dict[str, tuple[int, int]] = field(default_factory=dict)
    """The greatest (boot, seq) heard of each member, by device id."""


def load(path: Path) -> ReplayState:
    """The state saved at `path`; an empty one if there is none (a warning if it is unreadable)."""
    try:
        data = orjson.loads(path.read_bytes())
        return ReplayState(int(data["boot"]), {str(device): (int(boot), int(seq))
                                               for device, (boot, seq) in data["last"].items()})
    except FileNotFoundError:
        return ReplayState()
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        log.warning("%s is unreadable (%s): heartbeats heard before this start are forgotten", path, error)
        return ReplayState()


def save(path: Path, state: ReplayState) -> None:
    """Replace the file at `path` with `state` (written aside, then renamed: never half written)."""
    data = orjson.dumps({"boot": state.boot, "last": state.last})
    aside = path.with_name(path.name + ".new")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        os.replace(aside, path)
    except OSError:
        with contextlib.suppress(OSError):
            aside.unlink()
        raise
