from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from django_pgjobs.contrib.embedded import _forget_dead_users, database_settings


def test_dead_pids_are_forgotten_so_the_server_can_stop(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    (tmp_path / ".handle_pids.json").write_text(json.dumps([dead_pid, 1]))
    _forget_dead_users(tmp_path)
    assert json.loads((tmp_path / ".handle_pids.json").read_text()) == [1]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://app:secret@db.internal:6432/shop?sslmode=require",
            ("shop", "app", "secret", "db.internal", "6432", {"sslmode": "require"}),
        ),
        (
            "postgresql://postgres:@/postgres?host=/var/run/postgresql",
            ("postgres", "postgres", "", "/var/run/postgresql", "", {}),
        ),
        ("host=127.0.0.1 dbname=jobs user=postgres", ("jobs", "postgres", "", "127.0.0.1", "", {})),
    ],
)
def test_database_settings_from_urls(url: str, expected: tuple[object, ...]) -> None:
    db = database_settings(url)
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (
        db["NAME"],
        db["USER"],
        db["PASSWORD"],
        db["HOST"],
        db["PORT"],
        db["OPTIONS"],
    ) == expected
