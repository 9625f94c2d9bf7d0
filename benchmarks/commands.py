"""What every benchmark shares: the commands of its child processes (the library's worker, as
tuned and as a user types it, and the raw-SQL baseline), the environment that carries the
database to them, and the scratch database itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent


def masked(conninfo: str) -> str:
    """``conninfo`` (a URL or key=value string) as key=value with its password hidden, to print."""
    params = conninfo_to_dict(conninfo)
    if params.get("password"):
        params["password"] = "***"  # noqa: S105 (a mask, not a password)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def child_environment(url: str) -> dict[str, str]:
    """The environment of every child process: the database travels here, never on a command
    line, where ``ps`` shows it to every user of the machine."""
    return {
        **os.environ,
        "BENCH_DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "PYTHONPATH": str(ROOT),
    }


def worker_command(*options: str) -> list[str]:
    """A library worker (``pgjobs_worker``) on the benchmark database."""
    return [sys.executable, "-m", "django", "pgjobs_worker", "-v", "0", *options]


def defaults_command(*options: str) -> list[str]:
    """The worker as a user types it (``manage.py pgjobs_worker``, here through ``django-admin``'s
    ``-m django`` with the settings in the environment): nothing but ``options``."""
    return [sys.executable, "-m", "django", "pgjobs_worker", *options]


def baseline_command(mode: str, number: int) -> list[str]:
    """A raw-SQL baseline process (baseline.py) on the benchmark database."""
    return [sys.executable, str(ROOT / "benchmarks" / "baseline.py"), mode, str(number)]


def setup_database(server_url: str) -> str:
    name = f"pgjobs_bench_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    params = {k: str(v) for k, v in conninfo_to_dict(server_url).items() if v}
    params["dbname"] = name
    return make_conninfo(**params)


def migrated_database() -> tuple[str, str]:
    """A fresh benchmark database on DATABASE_URL's server (else an embedded one), migrated, with
    Django set up on it: (the server's URL, the database's)."""
    from django_pgjobs.contrib.embedded import database_url

    server_url = os.environ.get("DATABASE_URL") or database_url(ROOT / ".pgdata-bench")
    url = setup_database(server_url)
    print(f"benchmark database: {masked(url)}", flush=True)
    os.environ.update(BENCH_DATABASE_URL=url, DJANGO_SETTINGS_MODULE="benchmarks.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return server_url, url


def drop_database(server_url: str, url: str) -> None:
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
