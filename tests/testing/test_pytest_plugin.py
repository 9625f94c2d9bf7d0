"""The pytest plugin, as a user's project meets it: pytest run in a child process on a tiny
project, with the plugin loaded as the installed package's entry point loads it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

from tests.helpers import ROOT

PROJECT_TESTS = """
import pytest

from django_pgjobs import enqueue, enqueue_on_commit
from tests.testapp.models import Run


@pytest.mark.django_db
def test_in_a_testcase(pgjobs):
    enqueue("test.record", {"label": "fixture"})
    pgjobs.assert_enqueued("test.record", payload={"label": "fixture"})
    assert pgjobs.drain().completed == 1
    pgjobs.assert_not_enqueued("test.record")
    assert Run.objects.filter(label="fixture").count() == 1


@pytest.mark.django_db
def test_on_commit_captured_in_a_testcase(pgjobs, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        enqueue_on_commit("test.record", {"label": "captured"})
    assert pgjobs.drain().completed == 1


@pytest.mark.django_db
def test_on_commit_run_by_drain_in_a_testcase(pgjobs):
    enqueue_on_commit("test.record", {"label": "run by drain"})
    assert pgjobs.drain(on_commit=True).completed == 1


@pytest.mark.django_db(transaction=True)
def test_in_a_transaction_test(pgjobs):
    enqueue("test.fail")
    assert pgjobs.drain().retried == 1
    pgjobs.advance(3600)
    assert pgjobs.drain().buried == 1
"""

NO_DJANGO_TESTS = """
import sys


def test_loading_the_plugin_loaded_neither_django_nor_the_helpers():
    loaded = set(sys.modules)
    assert "django_pgjobs.testing.pytest_plugin" in loaded
    assert not {"django", "django_pgjobs.testing.in_process", "django_pgjobs.models"} & loaded
"""


def plugin_options() -> list[str]:
    """A checkout whose environment was installed before the entry point existed loads the
    plugin by name; an installed one has pytest find it."""
    if entry_points(group="pytest11", name="django_pgjobs"):
        return []
    return ["-p", "django_pgjobs.testing.pytest_plugin"]


def run_pytest(project: Path, *options: str, env: dict[str, str]) -> str:
    """Run pytest on ``project`` in a child process (in ``env``, with this checkout importable)
    and return its output; fails the test if pytest failed."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error"]
    done = subprocess.run(
        [*command, *plugin_options(), *options],
        cwd=project,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_fixture_serves_testcase_and_transaction_tests(tmp_path: Path) -> None:
    (tmp_path / "test_project.py").write_text(textwrap.dedent(PROJECT_TESTS))
    # The child creates (and drops) a test database of its own, beside this run's.
    database = os.environ.get("PGJOBS_TEST_DB", "test_pgjobs") + "_plugin"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PGJOBS_TEST_DB": database}
    assert "4 passed" in run_pytest(tmp_path, "--create-db", env=env)


def test_a_project_without_pytest_django_loses_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(textwrap.dedent(NO_DJANGO_TESTS))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    assert "1 passed" in run_pytest(tmp_path, "-p", "no:django", env=env)
