from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_pgjobs.worker import Worker


@pytest.fixture
def make_worker() -> Iterator[type[Worker]]:
    """Workers built by a test are closed (deregistered, threads stopped) after it."""
    made: list[Worker] = []

    class ClosingWorker(Worker):
        def __init__(self, **kwargs: object) -> None:
            kwargs.setdefault("concurrency", 2)
            super().__init__(**kwargs)  # type: ignore[arg-type]
            made.append(self)

    yield ClosingWorker
    for worker in made:
        worker.close()
