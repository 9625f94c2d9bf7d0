"""A TCP relay from one host's address to the database server: the host's only way to it.

The test database listens on 127.0.0.1 only (or a Unix socket, for the embedded server), which a
network namespace cannot reach. Each host gets a relay in the test process, listening on the
root namespace's end of that host's veth pair and forwarding every connection to the server.
That makes the relay the host's network link: :meth:`Relay.cut` drops it (every connection
closed, new ones refused, as when a host falls off the network), :meth:`Relay.restore` brings it
back on the same address and port. :meth:`Relay.silence` is the other kind of partition, where
packets go nowhere and nobody is told: connections stay open and nothing passes either way
until :meth:`Relay.resume`, when what was held back arrives, as TCP delivers it once a link
that dropped packets heals.

It also tells when the host's server sessions have ended. A host whose processes died closes
its connections; the relay passes each close on as a half-close (``shutdown(SHUT_WR)``) and
keeps the connection until the server closes its end too, which a session does only once it
has finished the statement it was running and ended its transaction. So once
:meth:`Relay.connections` is 0 after a host died, nothing the host sent is still on its way
into the database: what it committed is there, the rest was rolled back.

Two threads per connection, one per direction, with blocking writes: neither side can stall
the other's direction when both write at once, as one thread per connection could.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# How often the accepting thread looks up from accept() to see whether it was cut: the longest
# a cut takes to stop accepting.
ACCEPT_TICK = 0.05


@dataclass(frozen=True)
class Upstream:
    """Where the database server listens: a TCP address, or a Unix socket's path."""

    host: str
    port: int

    def connect(self) -> socket.socket:
        if self.host.startswith("/"):  # a socket directory, as libpq reads host=/path
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(f"{self.host}/.s.PGSQL.{self.port}")
            return sock
        return socket.create_connection((self.host, self.port), timeout=10)


@dataclass
class _Link:
    """One forwarded connection: the host's end and the server's end."""

    downstream: socket.socket
    upstream: socket.socket
    ended: int = 0  # directions whose source closed: at 2 the connection is over

    def close(self) -> None:
        for sock in (self.downstream, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@dataclass
class Relay:
    address: str
    upstream: Upstream
    port: int = 0  # 0 until started: then the port the kernel chose, kept across cuts
    _listener: socket.socket | None = None
    _links: list[_Link] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _passing: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._passing.set()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Restored on the port it had: connections of the cut link may sit in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.address, self.port))
        listener.listen(64)
        listener.settimeout(ACCEPT_TICK)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept, listener)

    def cut(self) -> None:
        """The host falls off the network: new connections are refused, open ones closed."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        self._passing.set()  # a silenced link's threads wake to find their sockets closed
        self._join()

    def silence(self) -> None:
        """Nothing passes, either way, and nobody is told: connections stay open, new ones are
        accepted and hang, what is sent waits (a silent partition, packets dropped)."""
        self._passing.clear()

    def resume(self) -> None:
        """What was held back goes on, in order, and the link passes traffic again."""
        self._passing.set()

    def restore(self) -> None:
        """The host is back on the network, at the same address and port."""
        assert self._listener is None, "the relay is not cut"
        self.start()

    def close(self) -> None:
        self.cut()

    @property
    def is_cut(self) -> bool:
        return self._listener is None

    def connections(self) -> int:
        """Connections open through the relay, counting those the host closed until the server
        has closed its end too."""
        with self._lock:
            return len(self._links)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                downstream, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by cut()
            downstream.settimeout(None)
            try:
                upstream = self.upstream.connect()
            except OSError:
                downstream.close()  # the host sees its connection refused, as the server would
                continue
            upstream.settimeout(None)
            link = _Link(downstream, upstream)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    link.close()
                    return
                self._links.append(link)
            self._spawn(self._pump, link, downstream, upstream)
            self._spawn(self._pump, link, upstream, downstream)

    def _pump(self, link: _Link, source: socket.socket, target: socket.socket) -> None:
        """Copy one direction until its source closes (or resets), then pass the close on as a
        half-close; the connection ends when both directions have."""
        try:
            while data := source.recv(65536):
                self._passing.wait()
                target.sendall(data)
        except OSError:
            pass  # reset, or closed by cut(): the same end of this direction
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
        with self._lock:
            link.ended += 1
            over = link.ended == 2 and link in self._links
            if over:
                self._links.remove(link)
        if over:
            link.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        # Daemon threads: a link stuck in a write must not keep the test run from exiting.
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _join(self) -> None:
        """Wait for the threads of a cut link: none may forward anything after cut() returns."""
        with self._lock:
            threads = [t for t in self._threads if t is not threading.current_thread()]
        for thread in threads:
            thread.join(timeout=5)
