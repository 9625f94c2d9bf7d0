"""A rate period without a rate limit limits nothing: set_queue_limits(), ``pgjobs queue-limits``
and the admin's form (tests/admin/test_queue_rate_period.py) refuse it in the same words (it was
stored, marked the queue overridden and shown nowhere: found by the new-user trial), and removing
the last rate limit from the command line sets the period back to its default, as commands.md
says."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.models import Queue
from django_pgjobs.queues import set_queue_limits
from django_pgjobs.queues.declarations import RATE_PERIOD_ALONE

pytestmark = pytest.mark.django_db(transaction=True)


def queue_limits(*args: str) -> str:
    out = StringIO()
    call_command("pgjobs", "queue-limits", *args, stdout=out)
    return out.getvalue()


def test_set_queue_limits_refuses_a_rate_period_alone() -> None:
    with pytest.raises(InvalidJobError) as refused:
        set_queue_limits("conc", rate_period=10)
    assert str(refused.value) == RATE_PERIOD_ALONE
    assert not Queue.objects.filter(name="conc").exists()
    # With either rate limit it is the window of that limit; the default alone is no period.
    assert set_queue_limits("rated", rate_limit=5, rate_period=10)
    assert set_queue_limits("keyed", partition_rate_limit=5, rate_period=10)
    assert set_queue_limits("plain", concurrency=2, rate_period=1)


def test_the_command_refuses_a_rate_period_alone_in_the_same_words() -> None:
    with pytest.raises(CommandError) as refused:
        queue_limits("conc", "--rate-period", "10")
    assert str(refused.value) == RATE_PERIOD_ALONE
    assert not Queue.objects.filter(name="conc").exists()
    queue_limits("conc", "--concurrency", "2")
    with pytest.raises(CommandError, match="A rate period needs a rate limit"):
        queue_limits("conc", "--rate-period", "10")
    assert Queue.objects.get(name="conc").rate_period == timedelta(seconds=1)


def test_removing_the_rate_limit_sets_the_period_back_to_its_default() -> None:
    queue_limits("api", "--rate-limit", "5", "--rate-period", "10", "--concurrency", "3")
    said = queue_limits("api", "--rate-limit", "none")
    assert said == "Queue api: at most 3 running.\n"
    assert Queue.objects.get(name="api").rate_period == timedelta(seconds=1)
    # The period stays while a per-key rate still uses it.
    queue_limits("api", "--rate-limit", "5", "--partition-rate-limit", "2", "--rate-period", "10")
    queue_limits("api", "--rate-limit", "none")
    assert Queue.objects.get(name="api").rate_period == timedelta(seconds=10)
    # Removing the rate and giving a period anyway is refused.
    with pytest.raises(CommandError, match="A rate period needs a rate limit"):
        queue_limits("api", "--partition-rate-limit", "none", "--rate-period", "10")
