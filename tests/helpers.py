"""Test helpers: second connections, worker subprocesses, and bounded waits on milestones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import make_conninfo

from django_pgjobs.database import connection_params

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def database_conninfo() -> str:
    """A conninfo string for the test database (which pytest-django has created by now)."""
    params = {k: v for k, v in connection_params("default").items() if v not in (None, "")}
    params.pop("client_encoding", None)
    params.pop("prepare_threshold", None)
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def second_connection(*, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection that is not Django's: it sees only what other sessions committed."""
    return psycopg.connect(database_conninfo(), autocommit=autocommit)


def wait_for(predicate: Callable[[], T], *, timeout: float = 15.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    For milestones another process reaches (a handler started, a lease expired); the bound
    turns a hang into a clear failure instead of a stuck suite.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def start_worker(
    *args: str,
    settings: dict[str, Any] | None = None,
    log: Path | None = None,
    command: str = "pgjobs_worker",
) -> subprocess.Popen[bytes]:
    """Start ``manage.py pgjobs_worker`` (or another command) as a real process on the test
    database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_conninfo(),
        "PGJOBS_TEST_SETTINGS": json.dumps(settings or {}),
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "django", command, *args]
    if log is None:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def drain(worker: Any, rounds: int = 50) -> None:
    """Run ``worker.run_once()`` until nothing is claimable now (work due later, such as a
    suspended workflow, stays queued)."""
    for _ in range(rounds):
        stats = worker.run_once()
        if not stats.claimed and not worker._inflight:
            return
    raise AssertionError("the worker kept finding work")


def workflow_job(workflow_id: str) -> Any:
    """The newest job that runs the workflow (key ``workflow:<id>``)."""
    from django_pgjobs.models import Job

    return Job.objects.filter(key=f"workflow:{workflow_id}").latest("created_at")
