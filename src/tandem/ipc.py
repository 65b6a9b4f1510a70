"""Messages between a device's processes: JSON objects in length-prefixed frames over Unix socket pairs.

The management process starts the failover and data plane processes (`Child`), each with a socket
pair to it, plus one pair between the two. A message is a dict with a `type`; a request also has an
`id`, and its answer carries the same id in `reply_to` (with `error` when it failed).
"""

import argparse
import asyncio
import contextlib
import functools
import itertools
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tandem import logs
from tandem.pauses import configure_collections
from tandem.tasks import cancel

log = logging.getLogger("tandem.ipc")

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20
REALTIME_PRIORITY = 10
PRIORITY_NICE = -20
MANAGEMENT_NICE = 10
"""The management process's nice value where its children cannot raise their own priority (`raise_priority`,
no CAP_SYS_NICE): it yields the CPU to heartbeats and traffic by lowering its own (`management_nice`)."""
CAP_SYS_NICE = 23

Message = dict[str, Any]
"""A message as it is framed, between a device's processes or between peers: a JSON object with a `type`."""
Handler = Callable[[Message], Message | Awaitable[Message | None] | None]
"""Handles one message; for a request, returns the answer's fields (an exception: an error answer)."""


@dataclass(frozen=True)
class ProcessStatus:
    """A child process as the API shows it."""

    pid: int | None
    """None: not running now."""
    restarts: int
    """How often it was started again."""


class ChannelClosed(Exception):
    """The other process is gone (or the channel was closed)."""


class Channel:
    """One end of a socket pair, on an asyncio loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self.closed = False

    @classmethod
    async def open(cls, sock: socket.socket) -> "Channel":
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME)
        return cls(reader, writer)

    def send(self, message: Message) -> None:
        """Queue a message (never blocks; dropped when the channel is closed)."""
        if self.closed:
            return
        payload = orjson.dumps(message)
        self._writer.write(HEADER.pack(len(payload)) + payload)

    async def request(self, message: Message, timeout: float) -> Message:
        """Send a request and wait for its answer (`serve` must be running); TimeoutError, ChannelClosed,
        or RuntimeError with the other side's error."""
        if self.closed:
            raise ChannelClosed("the channel is closed")
        request_id = next(self._ids)
        future = self._waiting[request_id] = asyncio.get_running_loop().create_future()
        try:
            self.send({**message, "id": request_id})
            answer = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(request_id, None)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    async def receive(self) -> Message:
        try:
            header = await self._reader.readexactly(HEADER.size)
            (length,) = HEADER.unpack(header)
            if length > MAX_FRAME:
                raise ChannelClosed(f"frame of {length} bytes")
            return orjson.loads(await self._reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError, orjson.JSONDecodeError) as error:
            raise ChannelClosed(str(error) or type(error).__name__) from None

    async def serve(self, handler: Handler) -> None:
        """Read messages until the channel closes: answers complete requests made here; other messages go to
        `handler` (requests get its result, or its error, as their answer)."""
        try:
            while True:
                try:
                    message = await self.receive()
                except ChannelClosed:
                    return
                if "reply_to" in message:
                    future = self._waiting.get(message["reply_to"])
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                try:
                    result = handler(message)
                    if asyncio.iscoroutine(result):
                        result = await result
                except Exception as error:  # the requester gets it; this process goes on
                    if "id" not in message:
                        log.exception("message %s failed", message.get("type"))
                        continue
                    result, failure = None, {"error": str(error) or type(error).__name__}
                else:
                    failure = {}
                if "id" in message:
                    self.send({"type": "reply", "reply_to": message["id"], **(result or {}), **failure})
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ChannelClosed("the other process is gone"))
        with contextlib.suppress(Exception):
            self._writer.close()


def channel_pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


class Child:
    """A process of this device (`python -m MODULE ARGS` in directory `cwd`, in a session of its own: signals
    to the device's process group are the device's to pass on), given sockets by file descriptor, started again
    when it exits (after `RESTART_DELAY`), stopped with the device. `on_start` runs after each start
    with the new process's channel to this one."""

    RESTART_DELAY = 0.2

    def __init__(self, name: str, module: str, args: list[str], cwd: Path,
                 sockets: Callable[[], tuple[socket.socket, list[socket.socket]]],
                 on_start: Callable[[Channel], Awaitable[None]]) -> None:
        self.name = name
        self._module = module
        self._args = args
        self._cwd = cwd
        self._sockets = sockets
        """Makes, for each start: this side's socket to the child, and the child's sockets in the order
        its arguments name them (`--fd N`, passed in that order)."""
        self._on_start = on_start
        self.process: subprocess.Popen | None = None
        self.channel: Channel | None = None
        self.restarts = 0
        self.started_at = 0.0
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep_running())

    async def _keep_running(self) -> None:
        while not self._stopping:
            try:
                exit_code: Any = await self._run_once()
            except Exception as error:  # it could not start: say so, try again
                exit_code = f"a failure to start it ({error})"
                if self.process is not None and self.process.poll() is None:
                    self.process.kill()
            if not self._stopping:
                self.restarts += 1
                log.error("%s process exited with %s; starting it again", self.name, exit_code)
                await asyncio.sleep(self.RESTART_DELAY)

    async def _run_once(self) -> int:
        """Start the process, hand over its channel, wait until it exits; its exit code."""
        mine, theirs = self._sockets()
        fds = [s.fileno() for s in theirs]
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self._module, *self._args, *(arg for fd in fds for arg in ("--fd", str(fd)))],
                pass_fds=fds, cwd=self._cwd, start_new_session=True)
        finally:
            for sock in theirs:
                sock.close()
        self.started_at = time.monotonic()
        self.channel = await Channel.open(mine)
        try:
            await self._on_start(self.channel)
            return await asyncio.to_thread(self.process.wait)
        finally:
            self.channel.close()

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), timeout)
            except TimeoutError:
                process.kill()
                await asyncio.to_thread(process.wait)
        await cancel(self._task)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def status(self) -> ProcessStatus:
        return ProcessStatus(self.pid, self.restarts)


def child_sockets(fds: list[int]) -> list[socket.socket]:
    """In a child: the sockets its parent passed, by descriptor."""
    return [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd) for fd in fds]


def exit_with_parent() -> None:
    """In a child: be sent SIGTERM when the parent process dies (Linux), whatever kills it, so that it ends as
    when the parent stops it (the failover process gives its floating addresses up)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)


def raise_priority(realtime: bool) -> str:
    """Put this process before the management process for the CPU, where allowed (root): real-time
    round-robin scheduling (as keepalived's VRRP process), or a lower nice value. Says what it got."""
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(REALTIME_PRIORITY))
            return f"real-time priority {REALTIME_PRIORITY}"
        except (OSError, AttributeError):
            pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY_NICE)
    except OSError:
        return "the management process's priority (not allowed to raise it)"
    with contextlib.suppress(OSError):  # the scheduler weighs sessions first (autogroups): this one's too
        Path("/proc/self/autogroup").write_text(str(PRIORITY_NICE))
    return f"nice {PRIORITY_NICE}"


@functools.cache
def may_raise_priority() -> bool:
    """Whether this process may take real-time priority and lower nice values (CAP_SYS_NICE, as root)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    return False


def management_nice() -> int:
    """The nice value of management work: 0 where the failover and data plane processes go ahead of it
    (real-time, nice -20), so that it is not behind every other program of the host (at nice 10 the API
    waited up to 90 ms for a CPU behind an agent and its clients, bench/agent.py, change_p99_ms); else
    `MANAGEMENT_NICE`, so that they come first all the same."""
    return 0 if may_raise_priority() else MANAGEMENT_NICE


def at_management_priority() -> None:
    """Run at the management priority (`management_nice`; a nice value is only ever raised here, which needs
    no privilege): the management process, and a helper that loads configurations, in the child before it
    runs (`preexec_fn`). An HAProxy that parsed each shard's configuration at the data plane's nice -20 held
    both CPUs for seconds after 10,000 services arrived, the devices' API with them (bench/agent.py,
    change_p99_ms)."""
    os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), management_nice()))


def out_of_realtime() -> None:
    """In a program the failover process starts (a notify or tracker script), before it runs: out of its real-time
    scheduling, at the management priority."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    at_management_priority()


def share_priority(pid: int) -> None:
    """Give every thread of process `pid` this process's nice value where it is lower than theirs (a program
    started at the management priority, whose traffic is served by `pid`: an HAProxy worker). Threads gone
    meanwhile are passed over."""
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in threads:
        with contextlib.suppress(OSError):
            if os.getpriority(os.PRIO_PROCESS, tid) > mine:
                os.setpriority(os.PRIO_PROCESS, tid, mine)


def child_main(name: str, description: str, arguments: Callable[[argparse.ArgumentParser], None],
               run: Callable[[argparse.Namespace, Channel], Awaitable[None]], realtime: bool = False) -> None:
    """The entry point of child process `name`: its arguments (plus `--fd` of its channel to the parent), logging
    (as the parent's, `logs.setup_child`), its priority (`raise_priority`), an event loop; `run` with the channel
    until the parent is gone or SIGTERM (which closes the channel)."""
    parser = argparse.ArgumentParser(description=description)
    arguments(parser)
    parser.add_argument("--fd", type=int, action="append", default=[])
    args = parser.parse_args()
    logs.setup_child(name)
    configure_collections()
    log.info("%s: runs at %s", description, raise_priority(realtime))

    async def main() -> None:
        exit_with_parent()
        (control,) = child_sockets(args.fd)
        channel = await Channel.open(control)
        # SIGTERM ends it as its parent's going does: the channel closes and `run` ends its own way. (Cancelling
        # `run` could cut short the clean-up the parent's death began a moment before: the failover process
        # giving its floating addresses up when its parent is killed.)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, channel.close)
        await run(args, channel)

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
