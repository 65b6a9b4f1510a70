"""A child process for test_child_shutdown: serves its channel; when the channel ends, takes CLEANUP seconds to
clean up, then writes its marker file (argument `--marker`)."""

import argparse
import asyncio
from pathlib import Path

from tandem import ipc

CLEANUP = 0.3


async def _run(args: argparse.Namespace, control: ipc.Channel) -> None:
    try:
        await control.serve(lambda message: None)
    finally:
        await asyncio.sleep(CLEANUP)
        Path(args.marker).write_text("cleaned up")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--marker", required=True)


if __name__ == "__main__":
    ipc.child_main("test-child", "A test child.", _arguments, _run)
