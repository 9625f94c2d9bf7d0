"""Django's own tests for task backends (``tests/tasks/`` of Django's source distribution), fetched
once with pip and kept under ``.venv-test/django-contract/`` (git ignores it).

Django's wheel has no tests, so the sdist is downloaded: the installed Django's on Django 6, and
:data:`BACKPORT_SUITE_VERSION`'s on Django 5.2, whose tests the ``django_tasks`` backport then
meets (its own sdist has no tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import django

# The Django release whose tests/tasks/ the backport (django-tasks 0.12, Django 5.2) is run
# against: the backport follows Django's Tasks framework, and 6.1 is the release it mirrors.
BACKPORT_SUITE_VERSION = "6.1.3"
# The files of tests/tasks/ the harness reads (test_custom_backend.py is left out: see
# rewrite.EXCLUDED_FILES).
FILES = ("tasks.py", "test_tasks.py", "test_immediate_backend.py", "test_dummy_backend.py")

CACHE = Path(__file__).resolve().parents[2] / ".venv-test" / "django-contract"
# CI sets it: there, a suite that cannot be fetched fails the run instead of skipping.
REQUIRED = os.environ.get("PGJOBS_REQUIRE_DJANGO_CONTRACT") == "1"


class SuiteUnavailable(Exception):
    """Django's tests could not be fetched (no network, no pip); the message says why."""


def suite_version() -> str:
    return django.get_version() if django.VERSION >= (6,) else BACKPORT_SUITE_VERSION


def fetch_suite(version: str) -> Path:
    """The directory holding Django ``version``'s ``tests/tasks/`` files, downloading and
    extracting them on the first call."""
    target = CACHE / f"django-{version}" / "tasks"
    if all((target / name).is_file() for name in FILES):
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        sdist = _download(version, Path(scratch))
        extracted = Path(scratch) / "tasks"
        extracted.mkdir()
        with tarfile.open(sdist) as archive:
            for name in FILES:
                member = f"django-{version}/tests/tasks/{name}"
                try:
                    source = archive.extractfile(member)
                except KeyError:
                    raise SuiteUnavailable(f"{sdist.name} has no {member}") from None
                if source is None:
                    raise SuiteUnavailable(f"{member} in {sdist.name} is not a file")
                (extracted / name).write_bytes(source.read())
        target.parent.mkdir(parents=True, exist_ok=True)
        # A rename: a concurrent run sees all the files or none.
        try:
            extracted.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    return target


def _download(version: str, into: Path) -> Path:
    # --python-version: Django 6 needs Python 3.12, and only its test files are wanted here.
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
        "--python-version", "3.12", "--dest", str(into), f"Django=={version}",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SuiteUnavailable(f"pip download Django=={version}: {exc}") from exc
    found = sorted(into.glob(f"[dD]jango-{version}.tar.gz"))
    if done.returncode or not found:
        last = ((done.stderr or done.stdout).strip().splitlines() or ["no output"])[-1]
        raise SuiteUnavailable(f"pip download Django=={version} failed: {last[:300]}")
    return found[0]
