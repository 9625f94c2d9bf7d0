"""The benchmarks hand their database to child processes through the environment, never on a
command line (``ps`` shows command lines to every user of the machine), and print it masked.
tests/test_benchmarks_smoke.py checks the command lines of a real run."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from benchmarks.commands import (
    baseline_command,
    child_environment,
    defaults_command,
    masked,
    worker_command,
)
from benchmarks.peers.orchestra import as_url

URL = "postgresql://bench:s3cret@db.internal:6432/pgjobs_bench_1?sslmode=require"


def test_children_get_the_database_from_the_environment_not_argv() -> None:
    commands = [
        worker_command("--burst", "--concurrency", "8"),
        defaults_command("--burst"),
        *(baseline_command(mode, 10) for mode in ("drain", "drain-delete", "listen", "workflows")),
    ]
    for command in commands:
        assert not any("s3cret" in arg or "db.internal" in arg for arg in command), command
    assert child_environment(URL)["BENCH_DATABASE_URL"] == URL


@pytest.mark.parametrize(
    "conninfo",
    [URL, "host=db.internal user=bench password='it\\'s s3cret' dbname=pgjobs_bench_1"],
)
def test_printed_databases_are_masked(conninfo: str) -> None:
    shown = masked(conninfo)
    assert "s3cret" not in shown
    params = conninfo_to_dict(shown)
    assert params["password"] == "***"
    assert (params["host"], params["user"], params["dbname"]) == (
        "db.internal",
        "bench",
        "pgjobs_bench_1",
    )


def test_a_database_without_a_password_is_shown_as_it_is() -> None:
    assert conninfo_to_dict(masked("host=127.0.0.1 dbname=x user=postgres")) == {
        "host": "127.0.0.1",
        "dbname": "x",
        "user": "postgres",
    }


def test_peers_get_their_database_as_a_url_that_keeps_every_parameter() -> None:
    """asyncpg and DBOS (SQLAlchemy) read URLs only; a password with URL syntax in it survives."""
    url = as_url(conninfo_to_dict("host=db.internal port=6432 user=bench password='s3/cr@t x' "
                                  "dbname=pgjobs_bench_peers_dbos_1 sslmode=require"))  # fmt: skip
    assert url == (
        "postgresql://bench:s3%2Fcr%40t%20x@db.internal:6432/pgjobs_bench_peers_dbos_1"
        "?sslmode=require"
    )
    assert conninfo_to_dict(url)["password"] == "s3/cr@t x"
    socket = as_url({"host": "/var/run/postgresql", "dbname": "d"})
    assert conninfo_to_dict(socket)["host"] == "/var/run/postgresql"
