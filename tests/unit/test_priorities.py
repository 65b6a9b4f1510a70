"""The priorities a device's processes and helpers run at (`tandem.ipc`)."""

import contextlib
import os
import subprocess
import sys

from tandem import ipc

NICE_OF_ITSELF = [sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"]


def test_management_work_runs_at_nice_0_where_the_children_go_ahead_of_it_else_at_10() -> None:
    """As root the failover and data plane processes take real-time priority and nice -20, and management
    work keeps nice 0; without the privilege it yields to them by running at nice 10."""
    expected = 0 if os.geteuid() == 0 else ipc.MANAGEMENT_NICE
    assert ipc.management_nice() == expected

    def from_the_data_planes_priority() -> None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, ipc.PRIORITY_NICE)
        ipc.at_management_priority()

    done = subprocess.run(NICE_OF_ITSELF, capture_output=True, text=True, check=True,
                          preexec_fn=from_the_data_planes_priority)
    assert int(done.stdout) == expected


def test_a_helper_already_yielding_more_keeps_its_priority() -> None:
    def lowest() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, 19)
        ipc.at_management_priority()

    done = subprocess.run(NICE_OF_ITSELF, capture_output=True, text=True, check=True, preexec_fn=lowest)
    assert int(done.stdout) == 19
