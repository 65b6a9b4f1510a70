"""A child process ends its own way whether its parent goes or SIGTERM comes, and both at once (a parent
killed: the channel ends and pdeathsig's SIGTERM follows) do not cut its clean-up short (the failover
process gives its floating addresses up there)."""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("cleanup_child.py")


def start(marker: Path) -> tuple[subprocess.Popen, socket.socket]:
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = subprocess.Popen([sys.executable, str(CHILD), "--marker", str(marker), "--fd", str(child_end.fileno())],
                             pass_fds=[child_end.fileno()])
    child_end.close()
    return child, parent_end


def wait_started(marker: Path) -> None:
    time.sleep(1.0)  # its interpreter, imports and loop up (nothing to poll: it only serves)
    assert not marker.exists()


@pytest.mark.parametrize("how", ["parent gone, then SIGTERM", "SIGTERM"])
def test_the_clean_up_runs_to_its_end(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "marker"
    child, parent_end = start(marker)
    try:
        wait_started(marker)
        if how.startswith("parent gone"):
            parent_end.close()
            time.sleep(0.05)  # its clean-up has begun
        child.send_signal(signal.SIGTERM)
        assert child.wait(10) == 0
        assert marker.read_text() == "cleaned up"
    finally:
        if child.poll() is None:
            child.kill()
        parent_end.close()
