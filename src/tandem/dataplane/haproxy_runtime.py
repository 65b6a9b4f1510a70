"""HAProxy's runtime API (the stats socket and the master CLI, Unix sockets): commands, `show stat`."""

import asyncio
import csv
import io
from pathlib import Path

ANSWER_TIMEOUT = 5.0


async def command(socket: Path, line: str, timeout: float = ANSWER_TIMEOUT) -> str:
    """Send one command line to an HAProxy CLI socket; its whole answer."""
    if "\n" in line or "\r" in line or ";" in line:
        raise ValueError("one command per line, without separators")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(socket)
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            return (await reader.read()).decode(errors="replace")
        finally:
            writer.close()


async def worker_pid(socket: Path) -> int | None:
    """The pid of the worker answering on the stats socket (None: none answers)."""
    try:
        answer = await command(socket, "show info", timeout=1.0)
    except (OSError, TimeoutError):
        return None
    for line in answer.splitlines():
        if line.startswith("Pid:"):
            return int(line.split(":", 1)[1])
    return None


async def show_stat_text(socket: Path) -> str:
    """`show stat` as HAProxy answers it (CSV: `stat_rows` reads it)."""
    return await command(socket, "show stat")


def stat_rows(answer: str) -> list[dict[str, str]]:
    """A `show stat` answer as rows (pxname, svname, status, scur, stot, bin, bout, req_tot, check_status, ...)."""
    return list(csv.DictReader(io.StringIO(answer.lstrip("# "))))


async def set_server(socket: Path, backend: str, server: str, weight: int, state: str) -> None:
    """Change a server's weight and state (ready, drain, maint) without a reload."""
    for line in (f"set server {backend}/{server} state {state}", f"set weight {backend}/{server} {weight}"):
        await _expect(socket, line)


async def _expect(socket: Path, line: str, success: str = "") -> None:
    """Send `line`; RuntimeError unless the answer starts with `success` (empty: unless it is empty)."""
    answer = (await command(socket, line)).strip()
    if not (answer.startswith(success) if success else not answer):
        raise RuntimeError(f"haproxy refused {line!r}: {answer}")


async def add_server(socket: Path, backend: str, server: str, arguments: str, checked: bool) -> None:
    """Add a server (`arguments`: its address, weight and options) to a backend; it starts in maintenance, its
    health checks (when `checked`) enabled."""
    await _expect(socket, f"add server {backend}/{server} {arguments}", "New server registered")
    if checked:
        await _expect(socket, f"enable health {backend}/{server}")


async def remove_server(socket: Path, backend: str, server: str) -> None:
    """Take a server out of its backend (RuntimeError while it still has connections)."""
    await _expect(socket, f"set server {backend}/{server} state maint")
    await _expect(socket, f"del server {backend}/{server}", "Server deleted")
