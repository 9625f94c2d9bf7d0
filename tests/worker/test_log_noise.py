"""What a worker says about attempts it lost: once per stale handler, and after a lost reply
what the rows show rather than "dropped"."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.test import override_settings

from django_pgjobs import cancel_job, enqueue, get_job, queries
from django_pgjobs.models import FailedJob
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.queues import set_queue_limits
from django_pgjobs.worker import Worker
from django_pgjobs.worker.completer import Completer
from tests.helpers import in_thread, wait_for
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@override_settings(PGJOBS={"HEARTBEAT_SECONDS": 0.05})
def test_a_cancel_of_a_running_job_is_one_warning_not_one_a_heartbeat_nor_one_more_at_its_end(
    make_worker: type[Worker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One line per state change: the cancel, when the worker learns it. Not again at each
    heartbeat that finds the attempt still running, nor when its outcome is dropped."""
    release = tmp_path / "release"
    job_id = enqueue("test.block", {"release": str(release)})
    worker = make_worker(concurrency=1)
    with caplog.at_level(logging.WARNING, logger="django_pgjobs"):
        thread = in_thread(lambda: worker.run(burst=True))
        try:
            wait_for(lambda: Run.objects.filter(label="block:started").exists())
            cancel_job(job_id)
            beats: set[Any] = set()

            def five_more_heartbeats() -> bool:
                beats.update(WorkerRow.objects.values_list("last_heartbeat_at", flat=True))
                return len(beats) > 5

            wait_for(five_more_heartbeats, what="heartbeats while the stale handler runs")
        finally:
            release.touch()
            thread.join(30)
    assert not thread.is_alive()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"test.block {job_id} (attempt 1/3) was cancelled or taken over while its handler ran: "
        "the handler is told (is_cancelled()), and what it still does is dropped"
    ], caplog.text
    [line] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    fields = (line.name, line.__dict__["job_id"], line.__dict__["outcome"])
    assert fields == ("django_pgjobs.jobs", str(job_id), "lost")
    assert 0 < line.__dict__["duration"] < 30  # how long its handler had run by then
    assert worker.stats.lost == 1
    assert get_job(job_id).status == "cancelled"


def lose_the_reply(
    monkeypatch: pytest.MonkeyPatch,
    other: psycopg.Connection[Any],
    names: list[str],
    meanwhile: str | None = None,
) -> list[str]:
    """Fault injection: the first of these statements commits, then the worker's connection is
    terminated before it reads the reply, as when the network drops at that moment. The SQL
    ``meanwhile`` runs on ``other`` before the worker is back."""
    real = {name: getattr(queries, name) for name in names}
    hit: list[str] = []

    class LostReply:
        """A completion sent behind a claim that commits, then its connection drops before the
        worker reads the reply (closed on the worker's side: a reply already in its socket
        would otherwise still be read)."""

        def __init__(self, sent: Any, conn: psycopg.Connection[Any]) -> None:
            self.sent, self.conn = sent, conn
            pid = conn.info.backend_pid
            wait_for(
                lambda: (
                    other.execute(
                        "SELECT state = 'idle' FROM pg_stat_activity WHERE pid = %s", [pid]
                    ).fetchone()
                    == (True,)
                ),
                what="the completion sent to commit",
            )
            hit.append("send_completion")
            if meanwhile is not None:
                other.execute(meanwhile)

        def reply(self) -> Any:
            self.conn.pgconn.finish()
            return self.sent.reply()  # raises: the connection is gone, reply and all

    def terminate(pid: int) -> None:
        if meanwhile is not None:
            other.execute(meanwhile)
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        wait_for(
            lambda: (
                other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
                is None
            ),
            what="the worker's backend to end",
        )

    def commit_then_lose_the_reply(name: str) -> Callable[..., Any]:
        def run(cur: Any, **kwargs: Any) -> Any:
            for original, function in real.items():
                monkeypatch.setattr(queries, original, function)
            if name == "send_completion":  # sent unwaited: its reply is read later
                return LostReply(real[name](cur, **kwargs), cur)
            real[name](cur, **kwargs)  # autocommit: committed
            hit.append(name)
            terminate(cur.connection.info.backend_pid)
            cur.execute("SELECT 1")  # raises: the connection is gone, reply and all
            raise AssertionError("the terminated connection answered")

        return run

    for name in names:
        monkeypatch.setattr(queries, name, commit_then_lose_the_reply(name))
    return hit


@pytest.mark.parametrize(
    ("name", "options", "outcome"),
    [
        ("test.record", {}, "completed"),
        ("test.fail", {"max_attempts": 1}, "buried"),
        ("test.fail_later", {"max_attempts": 3}, "retried"),
    ],
)
def test_an_outcome_whose_reply_was_lost_is_counted_as_what_the_rows_show(
    make_worker: type[Worker],
    register_handler: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    other_connection: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
    name: str,
    options: dict[str, Any],
    outcome: str,
) -> None:
    def fail(payload: Any) -> None:
        raise ValueError("always")

    register_handler("test.fail_later", fail, retry_delay=3600)
    job_id = enqueue(name, **options)
    statements = ["complete_jobs", "send_completion"] if outcome == "completed" else ["fail_job"]
    hit = lose_the_reply(monkeypatch, other_connection, statements)
    with caplog.at_level(logging.INFO, logger="django_pgjobs"):
        stats = make_worker(concurrency=1).run(burst=True)
    assert hit, "the fault was never injected"
    assert stats.db_errors == 1
    assert (stats.lost, getattr(stats, outcome)) == (0, 1), stats
    assert not messages(caplog, "dropped"), caplog.text
    assert not messages(caplog, "cancelled or taken over"), caplog.text
    if outcome == "buried":
        assert FailedJob.objects.filter(id=job_id).exists()
    else:
        assert get_job(job_id).status == {"completed": "completed", "retried": "pending"}[outcome]


def test_under_flow_control_a_completion_whose_reply_was_lost_before_the_claim_is_not_lost(
    make_worker: type[Worker],
    monkeypatch: pytest.MonkeyPatch,
    other_connection: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flow-controlled worker writes its successes just before it claims: a write that
    committed and lost its reply is checked against the rows, counted once, never lost."""
    set_queue_limits("default", concurrency=1)
    for _ in range(4):
        enqueue("test.record")
    before_claims: list[bool] = []
    real = Completer._claim_after_writing

    def claim_after_writing(self: Completer, *args: Any, **kwargs: Any) -> Any:
        before_claims.append(True)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Completer, "_claim_after_writing", claim_after_writing)
    hit = lose_the_reply(monkeypatch, other_connection, ["complete_jobs"])
    with caplog.at_level(logging.INFO, logger="django_pgjobs"):
        stats = make_worker(concurrency=1).run(burst=True)
    assert hit and before_claims
    assert stats.db_errors == 1
    assert (stats.lost, stats.completed) == (0, 4), stats
    assert not messages(caplog, "dropped"), caplog.text


def test_an_outcome_in_doubt_that_the_rows_no_longer_show_is_worded_as_unknown(
    make_worker: type[Worker],
    monkeypatch: pytest.MonkeyPatch,
    other_connection: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The completion committed, its reply was lost, and the row was deleted (by an operator)
    before the worker came back: it cannot tell, and says so."""
    enqueue("test.record")
    delete = "DELETE FROM pgjobs_job_queue"
    completions = ["complete_jobs", "send_completion"]
    hit = lose_the_reply(monkeypatch, other_connection, completions, meanwhile=delete)
    with caplog.at_level(logging.INFO, logger="django_pgjobs"):
        stats = make_worker(concurrency=1).run(burst=True)
    assert hit
    assert (stats.lost, stats.completed) == (1, 0)
    assert messages(caplog, "unknown: the connection dropped while it was written"), caplog.text
    assert not messages(caplog, "dropped: the job was rescued"), caplog.text
