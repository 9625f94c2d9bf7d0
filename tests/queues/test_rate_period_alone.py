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


def sql(statement: str) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(statement)


def test_sql_is_refused_a_rate_period_alone_too() -> None:
    """Trial15b: ``UPDATE pgjobs_queues SET rate_period = '30 s'`` was stored, marked the queue
    overridden and shown nowhere (the trigger refuses it since migration 0027)."""
    from django.db import IntegrityError

    set_queue_limits("tq", concurrency=2)
    with pytest.raises(IntegrityError, match="a rate period needs a rate limit"):
        sql("UPDATE pgjobs_queues SET rate_period = '30 s' WHERE name = 'tq'")
    with pytest.raises(IntegrityError, match="a rate period needs a rate limit"):
        sql("INSERT INTO pgjobs_queues (name, rate_period) VALUES ('new', '30 s')")
    assert Queue.objects.get(name="tq").rate_period == timedelta(seconds=1)
    # With a rate limit it is that limit's window; removing the limit takes it back with it.
    sql("UPDATE pgjobs_queues SET rate_limit = 5, rate_period = '30 s' WHERE name = 'tq'")
    sql("UPDATE pgjobs_queues SET rate_limit = NULL WHERE name = 'tq'")
    assert Queue.objects.get(name="tq").rate_period == timedelta(seconds=1)


def test_a_deploy_that_drops_the_rate_an_operators_period_was_for_takes_the_default() -> None:
    """An operator changed only the period; the next settings drop the rate: the worker's start
    keeps the operator's options, and a period with no rate goes back to the default rather
    than fail the start."""
    from django.conf import settings
    from django.test import override_settings

    from django_pgjobs.queues.control import sync_declared_queues

    def deploy(options: dict[str, object]) -> None:
        queues = {"mail": options}
        with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": queues}):
            sync_declared_queues()

    deploy({"rate_limit": 5, "rate_period": 60})
    sql("UPDATE pgjobs_queues SET rate_period = '30 s' WHERE name = 'mail'")
    deploy({"concurrency": 3})
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.rate_limit, row.rate_period) == (3, None, timedelta(seconds=1))


def test_a_plain_sql_change_moves_updated_at() -> None:
    """Trial15b: the admin's "Updated" stayed at the last change the library made."""
    set_queue_limits("sqlq", concurrency=2)
    sql("UPDATE pgjobs_queues SET updated_at = '2020-01-01' WHERE name = 'sqlq'")
    sql("UPDATE pgjobs_queues SET concurrency = 5 WHERE name = 'sqlq'")
    assert Queue.objects.get(name="sqlq").updated_at.year > 2020
    # The claim's cursor is not a change an operator made.
    sql("UPDATE pgjobs_queues SET updated_at = '2020-01-01' WHERE name = 'sqlq'")
    sql("UPDATE pgjobs_queues SET key_cursor = 'k' WHERE name = 'sqlq'")
    assert Queue.objects.get(name="sqlq").updated_at.year == 2020


def test_the_command_tells_a_rate_written_as_text_how_to_say_it() -> None:
    with pytest.raises(CommandError) as refused:
        queue_limits("mail", "--partition-rate-limit", " 100/h ")
    assert str(refused.value).endswith(
        "got ' 100/h '. For 100/h: --partition-rate-limit 100 --rate-period 3600."
    )
    with pytest.raises(CommandError) as refused:
        queue_limits("mail", "--concurrency", "10/m")  # not a rate: no hint
    assert "--rate-period" not in str(refused.value)
    assert not Queue.objects.filter(name="mail").exists()
