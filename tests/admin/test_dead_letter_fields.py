"""The dead letter's page shows the partition key and timeout a requeue gives back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from django_pgjobs.models import FailedJob

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_admin_shows_a_dead_letters_partition_key_and_timeout(admin_client_: Client) -> None:
    kept = FailedJob.objects.create(
        job_name="test.record", partition_key="account:<Q>", timeout=timedelta(seconds=7)
    )
    plain = FailedJob.objects.create(job_name="test.record")
    page = admin_client_.get(reverse("admin:pgjobs_failedjob_change", args=[kept.id]))
    text = page.content.decode()
    assert "Partition key" in text and "account:&lt;Q&gt;" in text  # escaped
    assert "Timeout" in text and "0:00:07" in text
    page = admin_client_.get(reverse("admin:pgjobs_failedjob_change", args=[plain.id]))
    assert "Partition key" not in page.content.decode()
