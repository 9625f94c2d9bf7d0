"""Three hosts (network namespaces, see network.py) for the tests of this package.

Skipped where namespaces cannot be made (not root, no ``ip``, no privilege to create one); CI
runs as root on a machine that can, and sets PGJOBS_REQUIRE_NETNS=1, which turns that skip into
a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from typing import Any, NoReturn

import pytest

from tests.hosts.network import Host, NamespacesUnavailable, network_of

HOSTS = 3


@pytest.fixture(scope="package")
def network(django_db_setup: Any) -> Iterator[Sequence[Host]]:
    """The hosts, made once for the package (a few ip commands each) and removed after it;
    their relays forward to the test database's server (hence django_db_setup first)."""
    with ExitStack() as stack:
        try:
            made = stack.enter_context(network_of(HOSTS))
        except NamespacesUnavailable as exc:
            _unavailable(str(exc))
        yield made


@pytest.fixture
def hosts(network: Sequence[Host]) -> Iterator[Sequence[Host]]:
    """The hosts for one test: every process it started on them is killed after it, and a
    relay it cut is restored and one it silenced resumed, pass or fail (else the next test's
    worker on that host could not reach the database)."""
    yield network
    for host in network:
        host.relay.resume()
        host.kill()
        if host.relay.is_cut:
            host.relay.restore()


def _unavailable(why: str) -> NoReturn:
    if os.environ.get("PGJOBS_REQUIRE_NETNS"):
        pytest.fail(f"PGJOBS_REQUIRE_NETNS is set but {why}")
    pytest.skip(f"needs network namespaces: {why}")
