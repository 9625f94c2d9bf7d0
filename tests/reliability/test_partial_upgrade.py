"""A worker or scheduler on a database `migrate` has not fully upgraded refuses to start (and the
database check says why), instead of retrying a missing column for ever."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from django_pgjobs.checks import check_migrations_applied
from django_pgjobs.database import unapplied_migrations
from django_pgjobs.migrations import __path__ as migrations_path
from tests.helpers import start_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LATEST = sorted(p.stem for p in Path(migrations_path[0]).glob("0*.py"))[-1]


@pytest.fixture
def partly_upgraded() -> Iterator[str]:
    """The newest pgjobs migration is not applied, as after deploying code without migrating;
    it is applied again afterwards. Yields its name."""
    previous = sorted(p.stem for p in Path(migrations_path[0]).glob("0*.py"))[-2]
    call_command("migrate", "pgjobs", previous, verbosity=0)
    yield LATEST
    call_command("migrate", "pgjobs", verbosity=0)


@pytest.mark.parametrize(
    "command", [["pgjobs_worker"], ["pgjobs_scheduler"]], ids=["worker", "scheduler"]
)
def test_a_worker_or_scheduler_refuses_a_partly_upgraded_database(
    partly_upgraded: str,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    command: list[str],
) -> None:
    log = tmp_path / "out.log"
    proc = start_worker(*command[1:], command=command[0], log=log)
    processes.append(proc)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"it started anyway; its log:\n{log.read_text()}") from None
    output = log.read_text()
    assert code != 0, output
    assert f"unapplied django-pgjobs migration(s) ({partly_upgraded})" in output
    assert "run `python manage.py migrate`" in output


def test_the_database_check_warns_about_unapplied_migrations(partly_upgraded: str) -> None:
    assert unapplied_migrations("default") == [partly_upgraded]
    [warning] = check_migrations_applied(app_configs=None, databases=["default"])
    assert warning.id == "pgjobs.W001"
    assert partly_upgraded in warning.msg
    assert warning.hint == "Run `python manage.py migrate`."
    # Django asks for database checks only when told which databases (check --database).
    assert check_migrations_applied(app_configs=None, databases=None) == []
    out = StringIO()
    call_command("check", "--database", "default", stdout=out, stderr=out)
    assert "pgjobs.W001" in out.getvalue()


def test_a_fully_migrated_database_passes() -> None:
    assert unapplied_migrations("default") == []
    assert check_migrations_applied(app_configs=None, databases=["default"]) == []
