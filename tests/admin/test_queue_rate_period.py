"""The admin's queue form refuses a rate period without a rate limit, in the words of
set_queue_limits() and the CLI (tests/queues/test_rate_period_alone.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from django_pgjobs.models import Queue
from django_pgjobs.queues.declarations import RATE_PERIOD_ALONE

pytestmark = pytest.mark.django_db(transaction=True)
ADD = reverse("admin:pgjobs_queue_add")
_EMPTY = dict.fromkeys(
    ("concurrency", "worker_concurrency", "rate_limit", "rate_period", "partition_concurrency",
     "partition_rate_limit", "timeout"),
    "",
)  # fmt: skip


def queue_form(name: str, **fields: str) -> dict[str, str]:
    """The add form's fields: ``fields`` given, the others empty."""
    return {"name": name, **_EMPTY, **fields}


def test_the_admin_form_refuses_a_rate_period_alone_in_the_same_words(
    admin_client_: Client,
) -> None:
    form = queue_form("conc", concurrency="2", rate_period="10")
    page = admin_client_.post(ADD, form).content.decode()
    assert RATE_PERIOD_ALONE in page
    assert not Queue.objects.filter(name="conc").exists()
    form["rate_limit"] = "5"
    assert admin_client_.post(ADD, form).status_code == 302
    assert Queue.objects.get(name="conc").rate_period == timedelta(seconds=10)


def test_a_rate_typed_as_text_is_refused_with_what_to_type(admin_client_: Client) -> None:
    """A rate as other queues write it ("10/m"): the form says what goes in its two fields, as
    set_queue_limits() and the CLI do."""
    form = queue_form("texted", rate_limit="10/m", partition_rate_limit="100/h")
    page = admin_client_.post(ADD, form).content.decode()
    assert "Enter a whole number: for 10/m, 10 here and 60 in Rate period." in page
    assert "Enter a whole number: for 100/h, 100 here and 3600 in Rate period." in page
    assert not Queue.objects.filter(name="texted").exists()
    form.update(rate_limit="ten", partition_rate_limit="")
    page = admin_client_.post(ADD, form).content.decode()
    assert "in Rate period" not in page and not Queue.objects.filter(name="texted").exists()
