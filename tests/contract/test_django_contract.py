"""Django's own tests for task backends (``tests/tasks/`` of Django's source distribution), run
against PgJobsBackend: ImmediateBackend's scenarios with a real worker executing each task,
DummyBackend's and the framework's with tasks enqueued only. See :mod:`tests.contract`."""

from __future__ import annotations

import pytest

from tests.contract.loader import load_test_cases
from tests.contract.source import REQUIRED, SuiteUnavailable

try:
    _CASES = load_test_cases()
except SuiteUnavailable as exc:
    if REQUIRED:
        raise
    pytest.skip(
        f"Django's task tests could not be fetched ({exc}); set PGJOBS_REQUIRE_DJANGO_CONTRACT=1 "
        "to make this an error",
        allow_module_level=True,
    )

# pytest collects the unittest classes it finds here.
globals().update(_CASES)
