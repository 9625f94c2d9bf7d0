"""A fair queue's turns in a real worker process that serves other queues too: every key with
due jobs gets one start before any key gets a second, also when another queue's jobs win some
of the worker's claims (the new-user trial saw C C B C A with four other queues)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.db import transaction

from django_pgjobs import enqueue
from django_pgjobs.queues import set_queue_limits
from tests.helpers import start_worker
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_keys_take_turns_while_a_rate_limited_queue_wins_some_claims(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    set_queue_limits("fair", fair=True)
    # Its jobs come first whenever its 15 ms window has room: those claims take none of the
    # keys (with the fault, a key offered there lost its turn: B0 B1 B2 before A0 was seen).
    set_queue_limits("rated", rate_limit=1, rate_period=0.015)
    with transaction.atomic():
        for key, count in (("A", 6), ("B", 3), ("C", 3)):
            for n in range(count):
                enqueue("test.record", {"label": f"{key}{n}"}, queue="fair", partition_key=key)
        for n in range(30):
            enqueue("test.record", {"label": f"rated{n}"}, queue="rated", priority=5)
    log = tmp_path / "worker.log"
    # One thread, nothing claimed ahead: each claim takes one job.
    settings = {"PREFETCH": 0, "POLL_INTERVAL": 0.2, "HEARTBEAT_SECONDS": 0.2}
    processes.append(start_worker("--burst", "--concurrency", "1", log=log, settings=settings))
    assert processes[0].wait(timeout=60) == 0, log.read_text()
    labels = list(Run.objects.order_by("id").values_list("label", flat=True))
    assert sum(label.startswith("rated") for label in labels) == 30
    keys = [label[0] for label in labels if not label.startswith("rated")]
    assert keys == list("ABCABCABCAAA"), " ".join(labels)  # from the first key, round robin
