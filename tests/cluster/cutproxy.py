"""A TCP proxy a test can cut and heal: the network between a device's peer listener and the others.

A device started with `--peer-advertise` pointing at the proxy is reached by the other devices
only through it. `cut()` closes every proxied connection and resets new ones until `heal()`;
`hold()` keeps what clients send from reaching the target (a request on its way, delayed) until `release()`.
Plain threads and sockets: the bytes (mutual TLS) pass through untouched.
"""

import socket
import struct
import threading


def _close(sock: socket.socket, reset: bool = False) -> None:
    try:
        if reset:  # RST instead of FIN: the connection is refused, not ended politely
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv() on it
    except OSError:
        pass
    sock.close()


CAPTURE_LIMIT = 4 << 20


class CutProxy:
    """Listens on 127.0.0.1:`port`, forwards every connection to `target`."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.accepted = 0
        """Connections forwarded so far (not counting those refused while cut)."""
        self.captured = bytearray()
        """The first bytes that crossed the proxy, both ways (what an eavesdropper on the link sees)."""
        self._released = threading.Event()
        self._released.set()
        self.held = 0
        """Bytes from clients held back since the last `hold()`."""
        threading.Thread(target=self._accept_loop, name=f"cutproxy:{self.port}", daemon=True).start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Close every proxied connection and refuse new ones until `heal()`."""
        with self._lock:
            self._cut = True
            doomed, self._open = self._open, set()
        for sock in doomed:
            _close(sock)

    def heal(self) -> None:
        with self._lock:
            self._cut = False

    def hold(self) -> None:
        """Hold what clients send from now on (connections stay open) until `release()`."""
        self.held = 0
        self._released.clear()

    def release(self) -> None:
        """Send on what was held, and what comes next."""
        self._released.set()

    def close(self) -> None:
        self.cut()
        self._closed = True
        _close(self._listener)

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            if self._cut or self._closed:
                _close(client, reset=True)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client, reset=True)
                continue
            upstream.settimeout(None)
            with self._lock:
                refused = self._cut
                if not refused:
                    self._open.update((client, upstream))
                    self.accepted += 1
            if refused:
                _close(client, reset=True)
                _close(upstream, reset=True)
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, source is client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if len(self.captured) < CAPTURE_LIMIT:
                    self.captured += data
                if from_client and not self._released.is_set():
                    self.held += len(data)
                    self._released.wait()
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:  # one direction ended: end the connection
            mine = source in self._open
            self._open.discard(source)
            self._open.discard(sink)
        if mine:
            _close(source)
            _close(sink)
