"""The dead letters' bulk requeue action: one statement on the selection or on everything a
filtered change list selects, no row limit, and a message naming the job(s)."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from django_pgjobs.models import FailedJob, Job
from tests.admin.changelists import changelist
from tests.jobs.test_dead_letters import dead

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def letters() -> dict[str, uuid.UUID]:
    return {
        "value": dead(),
        "value_mail": dead(queue="mail"),
        "payment": dead(error="shop.errors.PaymentError: card declined: 402"),
        "other_job": dead(job_name="test.record", error="KeyError: 'id'"),
        "bare": dead(error="RuntimeError"),
    }


def test_the_admin_requeues_all_a_filtered_change_list_selects_without_a_row_limit(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch, letters: dict[str, uuid.UUID]
) -> None:
    from django_pgjobs.admin import common as pgjobs_admin

    monkeypatch.setattr(pgjobs_admin, "ACTION_LIMIT", 1)  # the per-row actions' cap
    response = admin_client_.post(
        changelist("failedjob") + "?job_name=test.fail",
        {
            "action": "requeue_all_selected",
            "select_across": "1",
            "index": "0",
            "_selected_action": [str(letters["value"])],
        },
        follow=True,
    )
    page = response.content.decode()
    assert "4 dead letters requeued as jobs" in page
    for job_id in Job.objects.values_list("id", flat=True):
        assert str(job_id) in page
    assert list(FailedJob.objects.values_list("id", flat=True)) == [letters["other_job"]]


def test_the_admin_names_the_one_new_job(
    admin_client_: Client, letters: dict[str, uuid.UUID]
) -> None:
    response = admin_client_.post(
        changelist("failedjob"),
        {"action": "requeue_all_selected", "_selected_action": [str(letters["payment"])]},
        follow=True,
    )
    new = Job.objects.get()
    assert f"1 dead letter requeued as job {new.id}." in response.content.decode()
    assert (
        new.job_name == "test.fail" and not FailedJob.objects.filter(id=letters["payment"]).exists()
    )
