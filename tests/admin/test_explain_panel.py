"""The job page's panel: explain_job's answer, with the jobs in its way and the worker linked."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_pgjobs import enqueue
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queues import pause_queue, set_queue_limits

pytestmark = pytest.mark.django_db(transaction=True)


def page(client: Client, job_id: object) -> str:
    response = client.get(reverse("admin:pgjobs_job_change", args=[job_id]))
    assert response.status_code == 200
    return response.content.decode()


def claim(worker: str = "w1") -> None:
    with connection.cursor() as cur:
        claim_jobs(cur, worker_id=worker, limit=10, lease_seconds=60, queues=None, job_names=None)


def test_a_paused_queue_s_job_says_so(viewer_client: Client) -> None:
    pause_queue("mail")
    html = page(viewer_client, enqueue("test.record", queue="mail"))
    assert 'id="pgjobs-explain" data-blocker="paused"' in html
    assert "<h2>Why is this job not running?</h2>" in html
    assert "Queue paused.</strong> Queue mail is paused" in html


def test_the_jobs_in_its_way_and_the_worker_holding_one_are_linked(admin_client_: Client) -> None:
    with connection.cursor() as cur:
        cur.execute("INSERT INTO pgjobs_workers (id, queues) VALUES ('w1', '[]')")
    set_queue_limits("q", concurrency=1)
    running, waiting = enqueue("test.record", queue="q"), enqueue("test.record", queue="q")
    claim()  # takes the one due first
    html = page(admin_client_, waiting)
    assert 'data-blocker="queue_concurrency"' in html
    link = reverse("admin:pgjobs_job_change", args=[running])
    assert f'In its way: <a href="{link}">{running}</a>' in html
    held = page(admin_client_, running)
    assert "<h2>Where this job stands</h2>" in held and 'data-blocker="running"' in held
    worker = reverse("admin:pgjobs_worker_change", args=["w1"])
    assert f'Worker: <a href="{worker}">w1</a>' in held


def test_stored_text_in_the_panel_is_escaped(admin_client_: Client) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue) VALUES "
            "('<script>alert(1)</script>', 'q') RETURNING id"
        )
        job_id = cur.fetchone()[0]
    html = page(admin_client_, job_id)
    assert 'data-blocker="no_worker"' in html
    assert "<script>alert(1)</script>" not in html
