"""The priorities a device's helpers run at (`tandem.ipc`)."""

import os
import subprocess
import sys

from tandem import ipc

NICE_OF_ITSELF = [sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"]


def test_a_helper_started_at_the_management_priority_yields_as_the_management_process_does() -> None:
    assert os.getpriority(os.PRIO_PROCESS, 0) < ipc.MANAGEMENT_NICE
    done = subprocess.run(NICE_OF_ITSELF, capture_output=True, text=True, check=True,
                          preexec_fn=ipc.at_management_priority)
    assert int(done.stdout) == ipc.MANAGEMENT_NICE


def test_a_helper_already_yielding_more_keeps_its_priority() -> None:
    def lowest() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, 19)
        ipc.at_management_priority()

    done = subprocess.run(NICE_OF_ITSELF, capture_output=True, text=True, check=True, preexec_fn=lowest)
    assert int(done.stdout) == 19
