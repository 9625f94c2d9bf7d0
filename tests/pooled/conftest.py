"""A real PgBouncer in transaction mode in front of the test database: the ``pooled`` alias of
tests/settings.py goes through it, ``default`` goes straight to PostgreSQL.

Skipped only where the pgbouncer binary is missing; CI installs it and sets
PGJOBS_REQUIRE_PGBOUNCER=1, which turns that skip into a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from django_pgjobs.database import connection_params
from tests.helpers import wait_for

PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
# Fewer server connections than the clients a test makes: sessions really are shared, as a
# busy pooler shares them.
POOL_SIZE = 4


def _unavailable(why: str) -> NoReturn:
    if os.environ.get("PGJOBS_REQUIRE_PGBOUNCER"):
        pytest.fail(f"PGJOBS_REQUIRE_PGBOUNCER is set but {why}")
    pytest.skip(why)


def _config(directory: Path, server: dict[str, Any]) -> Path:
    """pgbouncer.ini: every database name goes to the same-named one on the test server, as
    its user (``auth_type = any``: the test server trusts it)."""
    target = {k: server[k] for k in ("host", "port", "user", "password") if server.get(k)}
    target.setdefault("port", 5432)
    path = directory / "pgbouncer.ini"
    path.write_text(
        "[databases]\n"
        f"* = {' '.join(f'{k}={v}' for k, v in target.items())}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {settings.POOLER_PORT}\n"
        "unix_socket_dir =\n"
        "auth_type = any\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {POOL_SIZE}\n"
        "max_client_conn = 500\n"
        # psycopg and Django send these at login; PgBouncer would refuse them otherwise.
        "ignore_startup_parameters = extra_float_digits, options\n"
    )
    return path


def _run_as(server: dict[str, Any]) -> list[str]:
    """PgBouncer refuses to run as root: as root, run it as the user that can reach the
    server's socket directory (the embedded server's own), else as nobody."""
    if os.geteuid() != 0:
        return []
    host = str(server.get("host") or "")
    owner = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else "nobody"
    return ["-u", owner]


@pytest.fixture(scope="package")
def pgbouncer(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """PgBouncer on settings.POOLER_PORT for these tests, stopped after them: its server
    connections, named by the clients that used them last, must not outlive them (tests
    elsewhere count the connections on the test database)."""
    if PGBOUNCER is None:
        _unavailable("needs pgbouncer (apt-get install pgbouncer)")
    directory = tmp_path_factory.mktemp("pgbouncer")
    server = connection_params("default")
    config = _config(directory, server)
    log = directory / "pgbouncer.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PGBOUNCER, *_run_as(server), str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_up(proc, log)
        yield proc
    finally:
        connections["pooled"].close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_until_up(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until a query through it succeeds; a clear failure, with its log, if it never does."""
    conninfo = {**connection_params("pooled"), "connect_timeout": 2}

    def answers() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"pgbouncer exited ({proc.returncode}):\n{log.read_text()}")
        try:
            with psycopg.connect(**conninfo) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    wait_for(answers, timeout=15, what=f"pgbouncer to answer (its log: {log})")
