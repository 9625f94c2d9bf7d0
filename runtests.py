#!/usr/bin/env python3
"""Install the test dependencies in a virtualenv and run lint, types and the test suite.

    python3 runtests.py                         # this Python, newest supported Django
    python3 runtests.py --python python3.12 --django '>=6,<6.2'
    python3 runtests.py -- -k worker -x         # arguments after -- go to pytest
    python3 runtests.py --unit                  # only tests/unit: no database, seconds

The tests run against DATABASE_URL when it is set, otherwise against an embedded PostgreSQL
that the suite starts itself. Standard library only: this file runs before anything is installed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent
_VERSIONS = (
    "import django, psycopg, sys; "
    "print('Python', sys.version.split()[0], '| Django', django.get_version(), "
    "'| psycopg', psycopg.__version__)"
)


# A password in a key=value conninfo: password=secret, password = 'se cret', password='it\'s',
# and every other key naming one (sslpassword=, the client key's).
_KEYWORD_PASSWORD = re.compile(r"(\b\w*password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def masked(dsn: str) -> str:
    """``dsn`` (a URL or a key=value conninfo) with every password (every key that names one,
    ``sslpassword`` too) replaced by ``***``, for printing: CI logs are read by more people
    than the database's owners."""
    if "://" not in dsn:
        return _KEYWORD_PASSWORD.sub(r"\1***", dsn)
    parts = urlsplit(dsn)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and userinfo.partition(":")[2]:
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any("password" in key.lower() for key, _ in pairs):
            pairs = [(k, "***" if "password" in k.lower() else v) for k, v in pairs]
            query = urlencode(pairs, safe="/*")
    # Not urlunsplit: it drops the "//" of an empty host (postgresql:///db?host=/socket).
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def database_line(url: str | None) -> str:
    """What the run says about its database, password masked."""
    return f"database: {masked(url) if url else 'embedded PostgreSQL (DATABASE_URL is unset)'}"


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    printable = " ".join(str(c) for c in command)
    print(f"\n$ {printable}", flush=True)
    result = subprocess.run([str(c) for c in command], cwd=ROOT, env=env, check=False)  # noqa: S603
    if result.returncode != 0:
        sys.exit(f"runtests: failed ({result.returncode}): {printable}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--python", default=sys.executable, help="Interpreter for the virtualenv.")
    parser.add_argument("--django", default="", help="Django version specifier, e.g. '>=5.2,<5.3'.")
    parser.add_argument("--skip-lint", action="store_true", help="Only run the tests.")
    parser.add_argument(
        "--unit", action="store_true", help="Only the database-free tier (tests/unit)."
    )
    parser.add_argument("pytest_args", nargs="*", help="Passed to pytest (put them after --).")
    args = parser.parse_args()

    version = subprocess.run(  # noqa: S603
        [args.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    tag = hashlib.sha1(args.django.encode()).hexdigest()[:8] if args.django else "latest"  # noqa: S324
    venv = ROOT / ".venv-test" / f"py{version}-django-{tag}"
    python = venv / "bin" / "python"
    venv.parent.mkdir(exist_ok=True)
    # Runs at once (.ci/run's legs) install one at a time: an editable install writes its
    # metadata into this tree, and two at once can trip over each other's.
    with (venv.parent / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not python.exists():
            run(args.python, "-m", "venv", venv)
        run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(python, "-m", "pip", "install", "--quiet", "-e", ".[test]", f"Django{args.django}")
    run(python, "-c", _VERSIONS)

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    pytest_args = list(args.pytest_args)
    if args.unit:
        # Nothing listens there: the settings need a URL, and no unit test may connect.
        env["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
        pytest_args = ["tests/unit", *pytest_args]
    print(database_line(env.get("DATABASE_URL")), flush=True)
    if not args.skip_lint:
        run(python, "-m", "ruff", "check", ".")
        run(python, "-m", "ruff", "format", "--check", ".")
        run(python, "-m", "mypy", "django_pgjobs", "tests", "benchmarks", env=env)
    run(python, "-m", "pytest", *pytest_args, env=env)


if __name__ == "__main__":
    main()
