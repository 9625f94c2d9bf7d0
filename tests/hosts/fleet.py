"""The processes a test runs on the hosts: their settings, starting a worker on each host, and
their logs for a failure's message."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from django.db.models.functions import Now
from django.test import override_settings

from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.observability.explanation import rescue_hold_seconds
from tests.helpers import wait_for
from tests.hosts.network import Host

T = TypeVar("T")

# Short leases, so that a dead or cut-off host's jobs come back within seconds; the rescue's
# other waits follow from these (see test_host_loss.py).
FAST: dict[str, Any] = {"LEASE_SECONDS": 2.0, "HEARTBEAT_SECONDS": 0.5, "POLL_INTERVAL": 0.5}
CONCURRENCY = 4


def worker_id(host: Host) -> str:
    return f"{host.label}-worker"


def start_workers(
    hosts: Sequence[Host], tmp_path: Path, settings: dict[str, Any] | None = None
) -> None:
    """A worker on each host (``CONCURRENCY`` threads, its scheduler thread on), serving the
    default queue and one of its host's own (named as the host: for a job only that host may
    run); returns once every one has registered, so that none starts late in the race for
    jobs. ``settings``: their PGJOBS (FAST if not given)."""
    for host in hosts:
        host.start(
            "--worker-id", worker_id(host), "--concurrency", str(CONCURRENCY),
            "--queues", f"default,{host.label}",
            log=tmp_path / f"{host.label}-worker.log", settings=settings or FAST,
        )  # fmt: skip
    ids = [worker_id(host) for host in hosts]
    wait_on_hosts(
        tmp_path,
        lambda: WorkerRow.objects.filter(id__in=ids).count() == len(ids),
        timeout=60,
        what="a worker registered from every host",
    )


def wait_until_rescuing(tmp_path: Path, settings: dict[str, Any] | None = None) -> None:
    """Return once every worker has run longer than its rescue hold: a worker rescues nothing
    for that long after it starts (Housekeeper.hold_rescue: others may be reconnecting after an
    outage), so before then a dead host's jobs would wait for the hold, not for their leases."""
    with override_settings(PGJOBS=settings or FAST):
        hold = rescue_hold_seconds()
    wait_on_hosts(
        tmp_path,
        lambda: (
            not WorkerRow.objects.filter(started_at__gt=Now() - timedelta(seconds=hold)).exists()
        ),
        timeout=hold + 10,
        what=f"every worker past its rescue hold ({hold:g} s)",
    )


def still_running(hosts: Sequence[Host], tmp_path: Path) -> None:
    """Every process the test started on the hosts is still running: none crashed or gave up
    along the way, leaving the others to pass the test without it."""
    exited = [p.args for host in hosts for p in host.processes if p.poll() is not None]
    assert not exited, f"exited: {exited}; logs:\n{logs(tmp_path)}"


def wait_on_hosts(
    tmp_path: Path, predicate: Callable[[], T], *, what: str, timeout: float = 15.0
) -> T:
    """``wait_for``, whose failure shows the logs of the hosts' processes as they are then."""
    try:
        return wait_for(predicate, timeout=timeout, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; logs:\n{logs(tmp_path)}") from None


def logs(tmp_path: Path) -> str:
    """Every log of the test's processes, for a failure's message."""
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')}"
        for log in sorted(tmp_path.glob("*.log"))
    )
