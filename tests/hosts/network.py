"""Hosts as Linux network namespaces, each linked to the test process by a veth pair.

Host ``n`` is a network namespace holding one end of a veth pair; the other end stays in the
root namespace, where the host's :class:`~tests.hosts.relay.Relay` listens. Each pair is a /30
of a private /24 (10.213.<net>.0/24): the root end is ``.4n+1``, the host's end ``.4n+2``. A
host's processes (started with ``ip netns exec``) see no loopback server and no other host:
their only way to the database is their relay, which the test can cut.

Names are unique per run: the run takes a /24 nobody uses by creating its first namespace,
``pgjobs-hosts-<net>-0``, which fails if another run (or the leftovers of a crashed one) has it.
Teardown removes this run's namespaces, veth pairs and processes only, and runs however the
test ended. A run killed outright leaves them behind under names no later run will take;
its processes die with it (``setpriv --pdeathsig``), so none keeps writing to the database.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from django_pgjobs.database import connection_params
from tests.helpers import database_conninfo, start_worker
from tests.hosts.relay import Relay, Upstream

PRIVATE_NETS = "10.213.{net}.0/24"
NAMESPACE = "pgjobs-hosts-{net}-{index}"
LINK = "pgjh{net}-{index}"  # the root end; the host's end adds "p" (at most 15 characters)


class NamespacesUnavailable(Exception):
    """This machine cannot make network namespaces here (not root, no ``ip``, no privilege)."""


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NamespacesUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def check_namespaces_possible() -> None:
    """Raise :class:`NamespacesUnavailable`, saying why, where namespaces cannot be made."""
    if os.geteuid() != 0:
        raise NamespacesUnavailable("network namespaces need root (ip netns add)")
    if shutil.which("ip") is None:
        raise NamespacesUnavailable("the `ip` command (iproute2) is not installed")


def upstream() -> Upstream:
    """Where the test database's server listens (127.0.0.1, or the embedded server's socket)."""
    params = connection_params("default")
    return Upstream(host=str(params.get("host") or "/tmp"), port=int(params.get("port") or 5432))  # noqa: S108 - libpq's default socket directory


@dataclass
class Host:
    index: int
    namespace: str
    link: str  # the root namespace's end of the veth pair
    address: str  # the host's own address, inside its namespace
    relay: Relay  # listening on the root end's address: the host's way to the database
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How the host's handlers sign what they record (PGJOBS_TEST_HOST): h0, h1 ..."""
        return f"h{self.index}"

    def conninfo(self) -> str:
        """The test database, reached through this host's relay."""
        return make_conninfo(database_conninfo(), host=self.relay.address, port=self.relay.port)

    def start(
        self, *args: str, log: Path, settings: dict[str, Any], command: str = "pgjobs_worker"
    ) -> subprocess.Popen[bytes]:
        """Start a command of manage.py on this host, reaching the database through its relay;
        its handlers record their runs as this host's."""
        via = ["ip", "netns", "exec", self.namespace]
        if shutil.which("setpriv"):  # dies with the test run, however that ends
            via += ["setpriv", "--pdeathsig", "KILL"]
        proc = start_worker(
            *args, command=command, settings=settings, log=log, conninfo=self.conninfo(),
            via=via, env={"PGJOBS_TEST_HOST": self.label},
        )  # fmt: skip
        self.processes.append(proc)
        return proc

    def pids(self) -> list[int]:
        """Every process in this host's namespace, children too."""
        return [int(pid) for pid in ip("netns", "pids", self.namespace).split()]

    def kill(self) -> None:
        """SIGKILL every process of this host at once, as when the machine dies."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.processes:
            proc.wait(timeout=10)
        self.processes.clear()


@contextlib.contextmanager
def network_of(count: int) -> Iterator[Sequence[Host]]:
    """``count`` hosts with their relays; removed on exit, processes first."""
    check_namespaces_possible()
    made: list[Host] = []
    try:
        net = _take_a_free_net()
        subnet = ipaddress.IPv4Network(PRIVATE_NETS.format(net=net))
        for index in range(count):
            made.append(_make_host(net, index, subnet, first=index == 0))
        yield made
    finally:
        for host in made:
            _remove(host)


def _take_a_free_net() -> int:
    """A /24 no address on this machine is in, taken by creating its first namespace."""
    in_use = ip("-4", "-o", "addr", "show")
    for net in random.sample(range(1, 255), 254):
        if f" 10.213.{net}." in in_use:
            continue
        try:
            ip("netns", "add", NAMESPACE.format(net=net, index=0))
        except NamespacesUnavailable as exc:
            if "File exists" in str(exc):
                continue  # another run's, or a crashed one's
            raise
        return net
    raise NamespacesUnavailable("no free 10.213.x.0/24 left for the hosts")


def _make_host(net: int, index: int, subnet: ipaddress.IPv4Network, *, first: bool) -> Host:
    namespace = NAMESPACE.format(net=net, index=index)
    link = LINK.format(net=net, index=index)
    gateway, address = subnet[4 * index + 1], subnet[4 * index + 2]
    host = Host(index, namespace, link, str(address), Relay(str(gateway), upstream()))
    if not first:  # the first was made to take the /24
        ip("netns", "add", namespace)
    try:
        ip("link", "add", link, "type", "veth", "peer", "name", f"{link}p", "netns", namespace)
        ip("addr", "add", f"{gateway}/30", "dev", link)
        ip("link", "set", link, "up")
        ip("-n", namespace, "addr", "add", f"{address}/30", "dev", f"{link}p")
        ip("-n", namespace, "link", "set", f"{link}p", "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        host.relay.start()
    except BaseException:
        _remove(host)
        raise
    return host


def _remove(host: Host) -> None:
    """Kill the host's processes, close its relay, delete its veth pair and namespace. Each
    step runs whatever the one before did: teardown must not leave half a host."""
    with contextlib.suppress(NamespacesUnavailable, subprocess.TimeoutExpired):
        host.kill()
    host.relay.close()
    with contextlib.suppress(NamespacesUnavailable):
        ip("link", "del", host.link)  # deletes both ends
    with contextlib.suppress(NamespacesUnavailable):
        ip("netns", "del", host.namespace)
