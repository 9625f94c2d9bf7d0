"""The connections real scheduler processes hold, counted in pg_stat_activity.

Only this test's processes use the test database, so every client connection on it other than
the test's own Django connection (which polls) is one of theirs. A backend leaves
pg_stat_activity a moment after its client hangs up, so counts are awaited, with a deadline, to be
exactly what the budget says: a connection too many that stays (an idle one kept from start-up,
say) fails the test.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from tests.helpers import start_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"POLL_INTERVAL": 0.2, "HEARTBEAT_SECONDS": 0.5, "LEASE_SECONDS": 5}


def others() -> Counter[str]:
    """The application_name of every client connection to the test database but this test's."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return Counter(name for (name,) in cur.fetchall())


def settle_on(expected: dict[str, int], what: str) -> None:
    try:
        wait_for(lambda: others() == Counter(expected), what=f"{what}: {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; there are {dict(others())}") from None


@pytest.fixture(autouse=True)
def alone(transactional_db: None) -> None:
    """Connections of an earlier test's processes are gone before this one counts."""
    settle_on({}, "no connection but this test's")


def stopped(processes: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for proc in processes:
        proc.send_signal(signal.SIGTERM)
    for proc, log in zip(processes, logs, strict=True):
        assert proc.wait(timeout=30) == 0, log.read_text()


def test_the_scheduler_process_keeps_only_its_own_connection(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """``pgjobs_scheduler`` used to keep the connection of its start-up checks, idle for as
    long as it ran."""
    log = tmp_path / "scheduler.log"
    processes.append(start_worker(command="pgjobs_scheduler", settings=FAST, log=log))
    settle_on({"pgjobs scheduler": 1}, "the scheduler's one connection")
    stopped(processes, [log])
