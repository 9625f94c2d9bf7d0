from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import stop


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker subprocesses a test starts are killed on teardown, pass or fail."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        stop(proc)
