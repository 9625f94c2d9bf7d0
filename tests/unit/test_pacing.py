"""The worker loop's pacing decisions, without a database or a clock."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from django_pgjobs.worker.pacing import (
    BURST_HELD_BACK_EXIT,
    LOCKED_ROW_RECHECK,
    PREFETCH_HORIZON,
    RATE_ROOM_MARGIN,
    Pacing,
)


def pacing(**fields: object) -> Pacing:
    return Pacing(concurrency=4, poll_interval=5.0, **fields)  # type: ignore[arg-type]


def test_claims_for_free_threads_only_while_work_may_be_there() -> None:
    p = pacing()
    assert p.claim_size(busy=1, prefetch_limit=0, left=None) == 3
    assert p.claim_size(busy=4, prefetch_limit=0, left=None) == 0  # every thread busy
    assert p.refill_at == 4
    p.record_run(0.001)
    assert p.claim_size(busy=3, prefetch_limit=10, left=None) == 1 + 10
    p.maybe_work = False
    assert p.claim_size(busy=0, prefetch_limit=0, left=None) == 0


def test_with_jobs_claimed_ahead_the_next_claim_goes_out_while_half_still_wait() -> None:
    """Its round trip then overlaps the handlers' work: claiming only once every thread was
    free left them idle for it (1 ms jobs on 4 threads: 2,780 -> 3,100 jobs/s)."""
    p = pacing()
    assert p.refill_at == 4  # before any claim: as soon as a thread is free
    p.record_run(0.001)
    ahead = p.prefetch(100)
    assert ahead == 100
    assert p.claim_size(busy=4 + ahead // 2, prefetch_limit=100, left=None) == 0
    assert p.refill_at == 4 + ahead // 2  # what handler threads wake the loop below
    busy = 4 + ahead // 2 - 1
    assert p.claim_size(busy=busy, prefetch_limit=100, left=None) == 4 + ahead - busy
    # Long jobs are not claimed ahead: a claim only for free threads, as before.
    p.record_run(10.0)
    p.record_run(10.0)
    assert p.prefetch(100) == 0
    assert p.claim_size(busy=4, prefetch_limit=100, left=None) == 0
    assert p.refill_at == 4


def test_max_jobs_caps_the_claim() -> None:
    p = pacing()
    p.record_run(0.001)
    assert p.claim_size(busy=0, prefetch_limit=100, left=2) == 2
    assert pacing().claim_size(busy=0, prefetch_limit=0, left=0) == 0


def test_no_prefetch_until_a_job_has_shown_how_long_jobs_take() -> None:
    p = pacing()
    assert p.prefetch(500) == 0
    p.record_run(0.001)
    # 50 ms of 1 ms jobs for each of 4 threads, under the cap.
    assert p.prefetch(500) == int(4 * PREFETCH_HORIZON / 0.001)
    assert p.prefetch(10) == 10
    assert p.prefetch(0) == 0


def test_long_jobs_are_never_prefetched() -> None:
    p = pacing()
    p.record_run(2.0)
    assert p.prefetch(500) == 0


def test_the_run_time_is_a_moving_average() -> None:
    p = pacing()
    p.record_run(1.0)
    p.record_run(0.0)
    assert p.average_run == pytest.approx(0.8)


def test_a_short_batch_means_drained_for_now() -> None:
    p = pacing()
    assert not p.claimed(asked=10, got=10)  # full: there may be more, claim again
    assert p.maybe_work
    assert p.claimed(asked=10, got=3)  # short: look up the next due time
    assert not p.maybe_work


def test_a_job_due_now_but_skipped_is_rechecked_shortly_not_spun_on() -> None:
    p = pacing()
    p.due_in(0.0, now=100.0)
    assert p.next_due == 100.0 + LOCKED_ROW_RECHECK
    p.due_in(30.0, now=100.0)
    assert p.next_due == 130.0
    p.due_in(None, now=100.0)
    assert p.next_due is None


def test_a_requeued_job_due_now_means_claim_again() -> None:
    p = pacing(maybe_work=False)
    p.requeued(0.0, now=10.0)
    assert p.maybe_work


def test_a_delayed_retry_wakes_the_loop_at_its_due_time() -> None:
    p = pacing(maybe_work=False, next_due=50.0)
    p.requeued(5.0, now=10.0)
    assert p.next_due == 15.0
    p.requeued(100.0, now=10.0)
    assert p.next_due == 15.0  # the earlier one still wins


def test_the_idle_wait_ends_at_the_earliest_of_poll_duty_and_due_job() -> None:
    p = pacing()
    assert p.idle_timeout(now=0.0, duties_in=10.0) == 5.0  # the poll interval
    assert p.idle_timeout(now=0.0, duties_in=2.0) == 2.0  # a heartbeat
    p.next_due = 1.5
    assert p.idle_timeout(now=0.0, duties_in=2.0) == 1.5
    assert p.idle_timeout(now=3.0, duties_in=2.0) == 0.0  # overdue: never negative


def test_a_poll_forgets_a_due_time_that_passed() -> None:
    p = pacing(maybe_work=False, next_due=5.0)
    p.polled(now=4.0)
    assert p.maybe_work and p.next_due == 5.0
    p.polled(now=6.0)
    assert p.next_due is None


def test_a_job_held_back_by_a_limit_keeps_burst_mode_waiting_for_it() -> None:
    p = pacing(maybe_work=False)
    p.due_in(0.0, now=100.0)  # due now, but the claim did not take it
    assert not p.drained(now=100.1)
    p.due_in(5.0, now=100.0)  # only a later job is left
    assert p.drained(now=100.1)


def test_a_rate_window_with_room_soon_is_claimed_then_not_at_the_next_recheck() -> None:
    p = pacing()
    p.due_in(0.0, now=100.0, room_in=0.05)
    assert p.next_due == pytest.approx(100.05 + RATE_ROOM_MARGIN)
    p = pacing()
    p.due_in(0.0, now=100.0, room_in=3.0)  # later than a recheck: the recheck comes first
    assert p.next_due == 100.0 + LOCKED_ROW_RECHECK


def held_back_rechecks(p: Pacing, *, now: float, until: float) -> list[float]:
    """The times a loop rechecks held-back jobs that it never gets, from ``now``."""
    times = []
    while now < until:
        times.append(now)
        p.claimed(asked=4, got=0)
        p.due_in(0.0, now=now)
        assert p.next_due is not None
        now = p.next_due
    return times


def test_rechecks_of_a_held_back_job_back_off_to_the_poll_interval() -> None:
    """A job no worker can run (a key's head without a handler) was claimed at four times a
    second for ever: each recheck that takes nothing waits twice as long, up to the poll."""
    p = pacing()
    times = held_back_rechecks(p, now=0.0, until=30.0)
    waits = [b - a for a, b in pairwise(times)]
    assert waits[:4] == [0.25, 0.5, 1.0, 2.0]
    assert waits[4] == BURST_HELD_BACK_EXIT - 3.75  # one look when a burst worker may exit
    assert set(waits[5:]) == {5.0}  # the poll interval


@pytest.mark.parametrize(
    "event",
    [
        lambda p: p.claimed(asked=4, got=1),  # a claim that took jobs
        lambda p: p.notified(),
        lambda p: p.attempt_ended(),  # an outcome of ours: its room may be what is missing
    ],
)
def test_the_backoff_starts_over_when_something_may_have_freed_the_job(event: Any) -> None:
    p = pacing()
    held_back_rechecks(p, now=0.0, until=10.0)
    assert p.recheck == 5.0
    event(p)
    p.due_in(0.0, now=20.0)
    assert p.next_due == 20.0 + LOCKED_ROW_RECHECK
    assert not p.drained(now=20.0 + BURST_HELD_BACK_EXIT - 0.01)


def test_burst_mode_gives_up_on_a_held_back_job_after_its_rechecks_took_nothing() -> None:
    p = pacing()
    held_back_rechecks(p, now=0.0, until=BURST_HELD_BACK_EXIT)
    assert not p.drained(now=BURST_HELD_BACK_EXIT - 0.01)
    assert p.next_due == BURST_HELD_BACK_EXIT  # the recheck when it may exit
    p.claimed(asked=4, got=0)
    p.due_in(0.0, now=BURST_HELD_BACK_EXIT)
    assert p.drained(now=BURST_HELD_BACK_EXIT)


def test_burst_mode_waits_for_a_rate_window_of_a_queue_with_due_jobs() -> None:
    """A burst drains a rate-limited queue at its rate, however long its window: the wait is
    for the window's room, not for a job that may never be claimable."""
    p = pacing()
    p.claimed(asked=4, got=0)
    p.due_in(0.0, now=0.0)
    p.claimed(asked=4, got=0)
    p.due_in(0.0, now=10.0, room_in=50.0)
    assert not p.drained(now=10.0)
    assert p.next_due == 10.0 + 2 * LOCKED_ROW_RECHECK  # rechecked meanwhile, backing off
    p.claimed(asked=4, got=0)
    p.due_in(0.0, now=15.0)  # the window's queue has no due job left
    assert p.drained(now=15.0)


def test_drained_only_when_nothing_is_claimable_now() -> None:
    assert not pacing().drained(now=0.0)
    assert pacing(maybe_work=False).drained(now=0.0)
    assert pacing(maybe_work=False, next_due=10.0).drained(now=0.0)
    assert not pacing(maybe_work=False, next_due=10.0).drained(now=11.0)


def test_under_flow_control_the_next_claim_waits_for_a_free_thread() -> None:
    """A rate-limited job is claimed only for a free thread: a claim while every thread is
    busy would take only other queues' jobs (tests/worker/test_rate_start.py)."""
    p = pacing()
    p.record_run(0.001)
    assert p.claim_size(busy=4, prefetch_limit=100, left=None, restricted=True) == 0
    assert p.refill_at == 4
    assert p.claim_size(busy=3, prefetch_limit=100, left=None, restricted=True) == 1 + 100


def test_a_claim_behind_takes_a_claims_worth_holding_at_most_twice_the_prefetch() -> None:
    p = pacing()
    p.record_run(0.001)  # 50 ms of work ahead: 200 jobs on 4 threads, at most 100
    assert p.claim_size(busy=0, prefetch_limit=100, left=None) == 104
    # At most the 4 threads and 2 x 100 held: 100 more behind a claim of 104.
    assert p.behind(taken=104, busy=0, prefetch_limit=100, left=None) == 100
    # Threads still busy with the last claim's jobs: only what keeps the total at 204...
    assert p.behind(taken=104, busy=40, prefetch_limit=100, left=None) == 60
    assert p.behind(taken=104, busy=50, prefetch_limit=100, left=None) == 50
    # ... and none once that is less than half the prefetch.
    assert p.behind(taken=104, busy=51, prefetch_limit=100, left=None) == 0
    assert p.behind(taken=104, busy=104, prefetch_limit=100, left=None) == 0
    # --max-jobs: what is left once those taken are counted.
    assert p.behind(taken=104, busy=0, prefetch_limit=100, left=150) == 46
    assert p.behind(taken=104, busy=0, prefetch_limit=100, left=104) == 0


def test_claims_behind_do_not_shrink_to_the_size_of_the_one_before() -> None:
    """A full claim of 60 (its size set by the room then) is followed by a claim's worth once
    there is room for it, not by another 60."""
    p = pacing()
    p.record_run(0.001)
    assert p.behind(taken=60, busy=0, prefetch_limit=100, left=None) == 104
    assert p.behind(taken=60, busy=70, prefetch_limit=100, left=None) == 74


def test_with_long_jobs_claims_behind_keep_little_more_than_the_threads() -> None:
    """2 s jobs on 100 threads: a prefetch of 2 (50 ms of work). A loop claim of the 2 jobs
    that fit is followed by 2 more, not by a claim's worth (102) queued behind jobs that run
    for seconds, which another worker could have started."""
    p = Pacing(concurrency=100, poll_interval=5.0)
    p.record_run(2.0)
    assert p.prefetch(500) == 2
    assert p.behind(taken=2, busy=100, prefetch_limit=500, left=None) == 2
    assert p.behind(taken=2, busy=102, prefetch_limit=500, left=None) == 0
    # Nothing claimed ahead (jobs of a second on 4 threads): no claim behind at all.
    q = pacing()
    q.record_run(1.0)
    assert q.prefetch(500) == 0
    assert q.behind(taken=4, busy=0, prefetch_limit=500, left=None) == 0


def test_a_claim_behind_needs_room_for_at_least_half_the_prefetch_rounded_up() -> None:
    """A prefetch of 3 on 4 threads: at most 10 held. Room for 1 (under half of 3) sends none;
    room for 2 sends 2."""
    p = pacing()
    p.record_run(0.001)
    assert p.prefetch(3) == 3
    assert p.behind(taken=7, busy=2, prefetch_limit=3, left=None) == 0
    assert p.behind(taken=7, busy=1, prefetch_limit=3, left=None) == 2


def test_no_claim_behind_once_nothing_is_claimed_ahead() -> None:
    """Jobs that got longer (the prefetch is 0 now) stop a run of claims behind, even with
    threads free: a claim behind is all claimed ahead."""
    p = pacing()
    p.record_run(1.0)
    assert p.behind(taken=1, busy=0, prefetch_limit=500, left=None) == 0
