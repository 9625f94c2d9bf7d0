"""The two settings lines the docs give for a development database work as written: with
DATABASE_URL set they use that server, without it they start an embedded PostgreSQL that
Django connects to, migrates and enqueues into (docs/howto/install.md, README.md)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db.utils import ConnectionHandler

from tests.helpers import ROOT, database_conninfo, wait_for
from tests.unit.test_docs import sections

INSTALL = ROOT / "docs" / "howto" / "install.md"
SECTION = "A PostgreSQL for development"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def documented_lines() -> str:
    """The settings the install page gives; the README's section must give the same."""
    [lines] = PYTHON_BLOCK.findall(sections(INSTALL)[SECTION])
    [in_readme] = PYTHON_BLOCK.findall(sections(ROOT / "README.md")[SECTION])
    assert in_readme == lines
    return str(lines)


def test_the_docs_give_two_lines() -> None:
    lines = documented_lines().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("from django_pgjobs.contrib.embedded import")
    assert lines[1].startswith("DATABASES = ")
    # The example project's settings are the documented lines, so the quick start proves them too.
    example = (ROOT / "example_project" / "config" / "settings.py").read_text()
    assert all(line in example.splitlines() for line in lines)


@pytest.mark.django_db
def test_with_database_url_set_the_lines_use_that_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_conninfo())
    namespace: dict[str, Any] = {"BASE_DIR": tmp_path}
    exec(documented_lines(), namespace)  # noqa: S102 (the docs' own lines)
    connections = ConnectionHandler(namespace["DATABASES"])
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT current_database(), count(*) FROM pgjobs_job_queue")
            name, _ = cursor.fetchone()
    finally:
        connections.close_all()
    assert name == os.environ.get("PGJOBS_TEST_DB", "test_pgjobs")
    assert not (tmp_path / ".pgdata").exists()


# A startproject-like settings module around the documented lines.
SETTINGS = """
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "docs-test"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_pgjobs"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""
USE_IT = """
import json, django
django.setup()
from django.core.management import call_command
from django.db import connection
from django_pgjobs import enqueue
call_command("migrate", verbosity=0)
enqueue("docs.hello", {"n": 1})
with connection.cursor() as cursor:
    cursor.execute("SELECT current_setting('server_version'), count(*) FROM pgjobs_job_queue")
    version, jobs = cursor.fetchone()
print(json.dumps({"version": version, "jobs": jobs}))
"""


@pytest.mark.slow
def test_without_database_url_the_lines_start_an_embedded_server(tmp_path: Path) -> None:
    (tmp_path / "devsettings.py").write_text(SETTINGS + documented_lines())
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="devsettings", PYTHONPATH=f"{tmp_path}:{ROOT}")

    def use_it() -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-c", USE_IT],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
        return result

    first = use_it()
    assert int(first["version"].split(".")[0]) >= 13
    assert first["jobs"] == 1
    data = tmp_path / ".pgdata"
    assert (data / "PG_VERSION").exists()
    # The server stops when the last process using it exits, and the data stays for next time.
    wait_for(lambda: not (data / "postmaster.pid").exists(), timeout=30, what="server stopped")
    assert use_it()["jobs"] == 2


@pytest.mark.slow
def test_a_process_stopped_with_sigterm_lets_go_of_the_embedded_server(tmp_path: Path) -> None:
    """Before: SIGTERM skipped atexit, so the server outlived e.g. `runserver --noreload`."""
    (tmp_path / "devsettings.py").write_text(SETTINGS + documented_lines())
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="devsettings", PYTHONPATH=f"{tmp_path}:{ROOT}")
    ready = tmp_path / "ready"
    # Settings read (the server started), then wait for a signal, as a server process would.
    serve = f"import django, pathlib, signal; django.setup(); pathlib.Path({str(ready)!r}).touch()"
    serve += "; signal.pause()"
    proc = subprocess.Popen([sys.executable, "-c", serve], cwd=tmp_path, env=env)
    try:
        wait_for(ready.exists, timeout=120, what="the embedded server started")
        data = tmp_path / ".pgdata"
        assert (data / "postmaster.pid").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        wait_for(lambda: not (data / "postmaster.pid").exists(), timeout=30, what="server stopped")
    finally:
        proc.kill()
        proc.wait()
