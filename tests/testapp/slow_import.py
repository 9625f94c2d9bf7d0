"""A handler in a module no app imports at start-up, and slow to import: a child process of
``--pool process`` imports it when its first job comes (the worker names the module), so that
job's handler begins later than its claim by the import. Imported only by the tests of that."""

from __future__ import annotations

import time
from typing import Any

from django_pgjobs import job

IMPORT_SECONDS = 0.5
time.sleep(IMPORT_SECONDS)


@job("test.slow_import")
def slow_import(payload: dict[str, Any]) -> None:
    return None
