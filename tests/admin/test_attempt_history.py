"""The job and dead-letter pages show every failed attempt the job keeps (worker, times,
exception, error), a task's result and metadata; hostile history written by SQL still renders."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_pgjobs import enqueue
from django_pgjobs.worker import Worker
from tests.admin.changelists import changelist
from tests.helpers import make_due_now
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_failed_attempt_is_listed_on_the_job_and_its_dead_letter(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    job_id = enqueue("test.fail", {"message": "smtp <down>"}, max_attempts=2)
    make_worker(worker_id="worker-one").run_once()
    page = admin_client_.get(reverse("admin:pgjobs_job_change", args=[job_id])).content.decode()
    assert "Failed attempts" in page and "worker-one" in page and "builtins.ValueError" in page
    assert "ValueError: smtp &lt;down&gt;" in page  # escaped
    make_due_now(job_id)
    make_worker(worker_id="worker-two").run_once()
    dead = admin_client_.get(
        reverse("admin:pgjobs_failedjob_change", args=[job_id])
    ).content.decode()
    assert "worker-one" in dead and "worker-two" in dead
    assert dead.index("worker-one") < dead.index("worker-two")  # oldest first


def test_a_task_shows_its_result_and_metadata(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    result = tasks.flaky_context.using(metadata={"tenant": "acme"}).enqueue(succeed_on=1)
    make_worker().run_once()
    page = admin_client_.get(reverse("admin:pgjobs_job_change", args=[result.id])).content.decode()
    assert "&quot;tenant&quot;: &quot;acme&quot;" in page
    assert "&quot;attempt&quot;: 1" in page  # the return value
    # Lists do not load the history, result or metadata.
    assert admin_client_.get(changelist("job")).status_code == 200


@pytest.mark.parametrize(
    "history",
    [
        '"not a list"',
        '[1, null, {"attempt": "x", "started_at": "yesterday", "error": 5}]',
        '[{"failed_at": "2026-01-01T00:00:00", "worker": "<script>alert(1)</script>"}]',
        # Times local time cannot hold (year 1 east of UTC, 9999 west of it).
        '[{"started_at": "0001-01-01T00:30:00+01:00", "failed_at": "9999-12-31T23:30:00-01:00"}]',
    ],
)
def test_a_hostile_history_renders_without_error(admin_client_: Client, history: str) -> None:
    job_id = enqueue("test.record")
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE pgjobs_job_queue SET error_history = %s::jsonb WHERE id = %s", [history, job_id]
        )
    response = admin_client_.get(reverse("admin:pgjobs_job_change", args=[job_id]))
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.content.decode()
