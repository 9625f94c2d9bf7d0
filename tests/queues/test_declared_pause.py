"""``"paused": True`` in ``PGJOBS["QUEUES"]``: a declared default, as the limits are. A worker's
start writes it; an operator's pause or resume that differs overrides it until reset; and an
override is kept option by option, so a pause does not hold back a deploy's limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from django_pgjobs import enqueue
from django_pgjobs.models import Job, Queue
from django_pgjobs.queues import pause_queue, reset_queue_limits, resume_queue, set_queue_limits
from django_pgjobs.queues.control import sync_declared_queues
from django_pgjobs.worker import Worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def deploy() -> Iterator[Any]:
    """``deploy(mail={...})``: these settings from now on, synced as a worker's start syncs."""
    overrides: list[Any] = []

    def sync(**queues: dict[str, Any]) -> None:
        override = override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": queues})
        override.enable()
        overrides.append(override)
        sync_declared_queues()

    yield sync
    for override in reversed(overrides):
        override.disable()


def state(name: str = "mail") -> tuple[Any, ...]:
    row = Queue.objects.get(name=name)
    return row.paused, row.paused_at is not None, row.overridden, row.concurrency


def test_a_queue_declared_paused_is_paused_by_a_worker_start_and_starts_nothing(
    make_worker: type[Worker],
) -> None:
    job_id = enqueue("test.record", queue="mail")
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": {"mail": {"paused": True}}}):
        stats = make_worker(queues=["mail"]).run_once()  # its start syncs the settings
    assert state() == (True, True, False, None)  # paused, as the settings say: no override
    assert stats.claimed == 0
    assert Job.objects.get(id=job_id).status == "pending"


def test_resuming_a_queue_declared_paused_overrides_it_until_reset(deploy: Any) -> None:
    deploy(mail={"paused": True, "concurrency": 5})
    assert pause_queue("mail") is False  # paused already
    assert resume_queue("mail") is True
    assert state() == (False, False, True, 5)
    deploy(mail={"paused": True, "concurrency": 5})  # the next worker start keeps the resume
    assert state() == (False, False, True, 5)
    assert reset_queue_limits("mail") is True  # back to the settings: paused
    assert state() == (True, True, False, 5)


def test_pausing_back_to_the_settings_ends_the_override(deploy: Any) -> None:
    deploy(mail={"paused": True})
    resume_queue("mail")
    assert pause_queue("mail") is True
    assert state() == (True, True, False, None)
    deploy(mail={})  # and the next deploy's settings apply: they no longer pause it
    assert state() == (False, False, False, None)


def test_a_pause_the_settings_do_not_declare_is_an_override_a_reset_ends(deploy: Any) -> None:
    deploy(mail={"concurrency": 5})
    pause_queue("mail")
    assert state() == (True, True, True, 5)
    deploy(mail={"concurrency": 5})
    assert state() == (True, True, True, 5)
    assert reset_queue_limits("mail") is True  # resumes it
    assert state() == (False, False, False, 5)


def test_a_pause_does_not_hold_back_a_deploys_limits_and_the_resume_ends_the_override(
    deploy: Any,
) -> None:
    """An incident: the queue is paused, a fix is deployed with new limits, the queue resumed."""
    deploy(mail={"concurrency": 5, "timeout": 60})
    pause_queue("mail")
    deploy(mail={"concurrency": 9, "timeout": 60})
    assert state() == (True, True, True, 9)  # the limits follow the settings, the pause stays
    resume_queue("mail")
    assert state() == (False, False, False, 9)


def test_an_operators_limit_is_kept_by_a_deploy_and_the_options_they_left_follow_it(
    deploy: Any,
) -> None:
    deploy(mail={"concurrency": 5, "rate_limit": 100})
    set_queue_limits("mail", concurrency=2, rate_limit=100)
    deploy(mail={"concurrency": 5, "rate_limit": 50, "paused": True})
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.rate_limit, row.paused, row.overridden) == (2, 50, True, True)


def test_removing_paused_from_the_settings_resumes_a_queue_no_operator_paused(
    deploy: Any,
) -> None:
    deploy(mail={"paused": True}, held={"paused": True})
    resume_queue("held")
    pause_queue("held")  # as the settings say: no override
    deploy()  # neither is declared any more
    assert state("mail")[:3] == (False, False, False)
    assert state("held")[:3] == (False, False, False)


def test_limits_set_for_a_queue_declared_paused_with_no_row_yet_create_it_paused() -> None:
    queues = {"mail": {"paused": True, "concurrency": 5}}
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": queues}):
        assert set_queue_limits("mail", concurrency=2) is True
        assert state() == (True, True, True, 2)
        # Back to the settings' limits: paused as they say, so no override is left.
        assert set_queue_limits("mail", concurrency=5) is True
    assert state() == (True, True, False, 5)


def test_setting_limits_never_pauses_or_resumes(deploy: Any) -> None:
    deploy(mail={"paused": True, "concurrency": 5})
    resume_queue("mail")
    assert set_queue_limits("mail", concurrency=5) is False  # the resume is still an override
    assert state() == (False, False, True, 5)
    assert set_queue_limits("mail", concurrency=3) is True
    assert state() == (False, False, True, 3)
