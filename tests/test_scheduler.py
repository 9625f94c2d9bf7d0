from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_pgjobs import cron, job, queries, schedule
from django_pgjobs.checks import check_schedules
from django_pgjobs.jobs.registry import registry
from django_pgjobs.models import Job, Schedule
from django_pgjobs.schedules.declarations import forget
from django_pgjobs.schedules.scheduler import Scheduler
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    made = Scheduler(poll_interval=0.05)
    yield made
    made.close()


@pytest.fixture
def declared() -> Iterator[list[str]]:
    """Names of code schedules a test declares; forgotten afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        forget(name)


def db_now() -> datetime:
    with connection.cursor() as cur:
        cur.execute("SELECT now()")
        return cur.fetchone()[0]  # type: ignore[no-any-return]


def make_due(name: str, *, ago: timedelta = timedelta(0), at: datetime | None = None) -> datetime:
    """Stand-in for waiting: move the schedule's next tick to ``at`` (or ``ago`` before now)."""
    moment = at or db_now() - ago
    Schedule.objects.filter(name=name).update(next_run_at=moment)
    return moment


def start_another_scheduler() -> None:
    """A scheduler starting up: it syncs declarations, fires what is due, and goes away."""
    another = Scheduler()
    try:
        another.run_once()
    finally:
        another.close()


def add(name: str, expression: str, **fields: Any) -> Schedule:
    return Schedule.objects.create(name=name, cron=expression, job_name="test.record", **fields)


def test_a_new_schedule_gets_its_first_tick_from_the_database_clock(scheduler: Scheduler) -> None:
    add("minutely", "* * * * *")
    assert scheduler.run_once().initialised == 1
    row = Schedule.objects.get(name="minutely")
    assert row.next_run_at is not None
    assert timedelta(0) < row.next_run_at - db_now() <= timedelta(minutes=1)
    assert not Job.objects.exists()


def test_a_due_tick_enqueues_one_job_with_its_fire_time_and_key(scheduler: Scheduler) -> None:
    add("report", "0 * * * *", payload={"kind": "hourly"}, queue="reports", priority=5)
    scheduler.run_once()
    tick = make_due("report", at=db_now().replace(minute=0, second=0, microsecond=0))
    report = scheduler.run_once(now=tick + timedelta(seconds=1))
    assert report.enqueued == 1
    job_row = Job.objects.get()
    assert job_row.payload == {"kind": "hourly", "fire_time": tick.astimezone(UTC).isoformat()}
    assert job_row.key == f"cron:report:{tick.astimezone(UTC).isoformat()}"
    assert (job_row.job_name, job_row.queue, job_row.priority) == ("test.record", "reports", 5)
    assert job_row.scheduled_for == tick
    row = Schedule.objects.get()
    assert row.last_run_at == tick
    assert row.next_run_at == tick + timedelta(hours=1)
    assert scheduler.run_once().enqueued == 0  # nothing more is due


def test_a_tick_is_fired_once_even_when_two_schedulers_race_for_it(scheduler: Scheduler) -> None:
    add("race", "* * * * *")
    scheduler.run_once()
    tick = make_due("race", ago=timedelta(seconds=1))
    row = Schedule.objects.get()
    outcomes = []
    # Both read the same next_run_at; the second fires late, after the first tick's job already
    # completed and freed its key, so only the compare-and-set can stop a duplicate.
    for _ in range(2):
        Job.objects.update(status="completed")
        with connection.cursor() as cur:
            outcomes.append(
                queries.fire_tick(
                    cur,
                    schedule_id=row.id,
                    expected_next_run_at=tick,
                    next_run_at=tick + timedelta(minutes=1),
                    last_run_at=tick,
                    job={
                        "job_name": "test.record",
                        "queue": "default",
                        "priority": 0,
                        "max_attempts": 3,
                    },
                    fire_times=[tick],
                    payloads=["{}"],
                    keys=[f"cron:race:{tick.isoformat()}"],
                )
            )
    assert [advanced for advanced, _ in outcomes] == [True, False]
    assert Job.objects.count() == 1


@pytest.mark.parametrize(
    ("policy", "limit", "expected"),
    [("skip", 10, 1), ("latest", 10, 1), ("all", 5, 5), ("all", 500, 121)],
)
def test_catch_up_policies_after_an_outage(
    scheduler: Scheduler, policy: str, limit: int, expected: int
) -> None:
    """Two hours down with a minutely schedule: 121 ticks were missed (both ends included)."""
    add("minutely", "* * * * *", catch_up=policy, catch_up_limit=limit)
    scheduler.run_once()
    now = db_now().replace(second=30, microsecond=0)
    make_due("minutely", at=now.replace(second=0) - timedelta(hours=2))
    report = scheduler.run_once(now=now)
    assert report.enqueued == expected
    fire_times = sorted(j.scheduled_for for j in Job.objects.all())
    assert fire_times[-1] == now.replace(second=0)  # every policy keeps the newest tick
    if policy == "skip":
        assert report.skipped == 1  # (only the first missed one is counted)
    row = Schedule.objects.get()
    assert row.next_run_at == now.replace(second=0) + timedelta(minutes=1)


def test_skip_drops_a_tick_reached_too_late_but_still_advances(scheduler: Scheduler) -> None:
    add("daily", "0 3 * * *")
    scheduler.run_once()
    now = db_now()
    make_due("daily", at=now - timedelta(minutes=5))
    Schedule.objects.filter(name="daily").update(cron="* * * * *")  # trigger resets next_run_at
    scheduler.run_once(now=now)
    make_due("daily", at=(now - timedelta(minutes=5)).replace(second=0, microsecond=0))
    assert scheduler.run_once(now=now).enqueued == 1  # only the tick within the grace
    assert Schedule.objects.get().next_run_at > now  # type: ignore[operator]


def test_editing_the_timing_in_the_database_resets_the_next_tick(scheduler: Scheduler) -> None:
    add("edited", "0 0 1 1 *")  # yearly
    scheduler.run_once()
    assert Schedule.objects.get().next_run_at is not None
    Schedule.objects.filter(name="edited").update(cron="* * * * *")
    assert Schedule.objects.get().next_run_at is None
    scheduler.run_once()
    next_run = Schedule.objects.get().next_run_at
    assert next_run is not None and next_run - db_now() <= timedelta(minutes=1)


def test_a_running_scheduler_picks_up_a_new_schedule_at_once() -> None:
    running = Scheduler(poll_interval=3600)  # only a NOTIFY can wake it in time
    thread = threading.Thread(target=running.run)
    thread.start()
    try:
        wait_for(lambda: running._synced, what="scheduler started")
        add("every-second", "* * * * * *")
        wait_for(
            lambda: Job.objects.filter(key__startswith="cron:every-second:").exists(),
            what="first tick",
        )
    finally:
        running.request_stop()
        thread.join(10)
    assert not thread.is_alive()


def test_disabled_schedules_do_not_fire_and_re_enabling_does_not_catch_up(
    scheduler: Scheduler,
) -> None:
    add("paused", "* * * * *", catch_up="all", catch_up_limit=100)
    scheduler.run_once()
    Schedule.objects.filter(name="paused").update(enabled=False)
    make_due("paused", ago=timedelta(hours=1))
    assert scheduler.run_once().enqueued == 0
    Schedule.objects.filter(name="paused").update(enabled=True)
    assert scheduler.run_once().enqueued == 0  # the paused hour is not replayed
    assert Schedule.objects.get().next_run_at > db_now()  # type: ignore[operator]


def test_windows_bound_the_ticks(scheduler: Scheduler) -> None:
    start = db_now() + timedelta(days=1)
    add("later", "0 * * * *", start_at=start, end_at=start + timedelta(hours=3))
    add("over", "* * * * *", end_at=db_now() - timedelta(minutes=1))
    scheduler.run_once()
    later = Schedule.objects.get(name="later").next_run_at
    assert later is not None and later >= start
    assert Schedule.objects.get(name="over").next_run_at is None


def test_code_and_settings_schedules_are_synced_and_removed_ones_disabled(
    scheduler: Scheduler, declared: list[str]
) -> None:
    @cron("*/5 * * * *", name="sync-code", payload={"a": 1}, timezone="Europe/Paris")
    @job("test.scheduled")
    def scheduled(payload: Any) -> None: ...

    declared.append("sync-code")
    try:
        settings_schedules = {"sync-settings": {"cron": "0 2 * * *", "job": "test.record"}}
        with override_settings(PGJOBS={"SCHEDULES": settings_schedules}):
            scheduler.run_once()
            code = Schedule.objects.get(name="sync-code")
            assert (code.source, code.cron, code.timezone, code.payload) == (
                "code", "*/5 * * * *", "Europe/Paris", {"a": 1},
            )  # fmt: skip
            assert Schedule.objects.get(name="sync-settings").source == "settings"
            # An operator pauses the code schedule; a new scheduler's sync keeps it paused.
            Schedule.objects.filter(name="sync-code").update(enabled=False)
            start_another_scheduler()
            assert not Schedule.objects.get(name="sync-code").enabled
        # Removed from settings: no longer fires, row and history kept, enabled flag untouched.
        start_another_scheduler()
        gone = Schedule.objects.get(name="sync-settings")
        assert (gone.enabled, gone.orphaned) == (True, True)
        make_due("sync-settings", ago=timedelta(seconds=1))
        assert scheduler.run_once().enqueued == 0
        with override_settings(PGJOBS={"SCHEDULES": settings_schedules}):
            start_another_scheduler()
            back = Schedule.objects.get(name="sync-settings")
            assert (back.enabled, back.orphaned) == (True, False)
            # An old deploy's scheduler orphans the code schedule; the operator's pause of it
            # survives that and its return.
            forget("sync-code")
            start_another_scheduler()
            assert Schedule.objects.get(name="sync-code").orphaned
            schedule("sync-code", cron="*/5 * * * *", job_name="test.scheduled")
            start_another_scheduler()
            code = Schedule.objects.get(name="sync-code")
            assert (code.orphaned, code.enabled) == (False, False)
    finally:
        registry.remove("test.scheduled")


def test_cron_must_sit_above_job() -> None:
    with pytest.raises(TypeError, match="above @job"):
        cron("* * * * *")(lambda payload: None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"cron": "61 * * * *"}, "Invalid cron expression"),
        ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "Unknown timezone"),
        ({"cron": "0 * * * *", "job_name": "nobody.handles.this"}, "No job handler"),
        (
            {
                "cron": "0 * * * *",
                "start": datetime(2026, 2, 1, tzinfo=UTC),
                "end": datetime(2026, 1, 1, tzinfo=UTC),
            },
            "end must be after its start",
        ),
        ({"cron": "0 * * * *", "payload": {"fire_time": "mine"}}, "set by the scheduler"),
    ],
)
def test_e010_invalid_code_schedules(
    declared: list[str], declaration: dict[str, Any], message: str
) -> None:
    schedule("bad", **{"job_name": "test.record", **declaration})
    declared.append("bad")
    errors = check_schedules(app_configs=None, databases=None)
    assert [e.id for e in errors] == ["pgjobs.E010"]
    assert message in errors[0].msg and "'bad' (code)" in errors[0].msg


def test_e010_and_e011_for_settings_schedules() -> None:
    bad = {
        "no-job": {"cron": "0 * * * *"},
        "typo": {"cron": "0 * * * *", "job": "test.record", "paylod": {}},
        "bad-cron": {"cron": "every day", "job": "test.record"},
    }
    with override_settings(PGJOBS={"SCHEDULES": bad}):
        ids = sorted(str(e.id) for e in check_schedules(app_configs=None, databases=None))
    assert ids == ["pgjobs.E010", "pgjobs.E011", "pgjobs.E011"]


def test_model_validation_serves_the_admin_form() -> None:
    from django.core.exceptions import ValidationError

    row = Schedule(name="x", cron="0 0 30 2 *", job_name="test.record", timezone="UTC")
    with pytest.raises(ValidationError) as raised:
        row.full_clean()
    assert "cron" in raised.value.message_dict


def test_schedules_command_lists_next_five_fire_times_and_run_schedule_is_manual(
    scheduler: Scheduler,
) -> None:
    add("nightly", "0 2 * * *", timezone="Europe/Paris", payload={"k": "v"})
    scheduler.run_once()
    out = StringIO()
    call_command("pgjobs", "schedules", stdout=out)
    text = out.getvalue()
    assert "nightly  [0 2 * * *] Europe/Paris  -> test.record" in text
    next_line = next(line for line in text.splitlines() if "next:" in line)
    assert next_line.count("02:00:00+0") == 5
    before = Schedule.objects.values_list("last_run_at", "next_run_at").get()
    call_command("pgjobs", "run-schedule", "nightly", stdout=StringIO())
    manual = Job.objects.get()
    assert manual.payload["manual"] is True and manual.payload["k"] == "v"
    assert "fire_time" in manual.payload and manual.key is None
    assert Schedule.objects.values_list("last_run_at", "next_run_at").get() == before
    with pytest.raises(CommandError, match="No schedule named 'nope'"):
        call_command("pgjobs", "run-schedule", "nope")


def test_a_schedule_for_an_unknown_job_is_skipped_not_fatal(scheduler: Scheduler) -> None:
    Schedule.objects.create(name="orphan-job", cron="* * * * *", job_name="gone.away")
    add("fine", "* * * * *")
    report = scheduler.run_once()
    assert report.initialised == 1  # the valid one still works
    assert Schedule.objects.get(name="orphan-job").next_run_at is None


def test_worker_runs_the_scheduler_thread(make_worker: Any) -> None:
    add("every-second", "* * * * * *")
    worker = make_worker(scheduler=True, poll_interval=0.05)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        wait_for(
            lambda: Job.objects.filter(
                key__startswith="cron:every-second:", status="completed"
            ).exists(),
            what="a tick fired by the worker's scheduler and run by the worker",
        )
    finally:
        worker.request_stop()
        runner.join(10)
    assert not runner.is_alive()
    assert timezone.now()  # (keeps the import used)


def test_a_tick_at_the_window_end_fires_and_then_the_scheduler_rests(scheduler: Scheduler) -> None:
    end = db_now().replace(microsecond=0) - timedelta(seconds=5)
    add("closing", "* * * * * *", end_at=end, catch_up="all", catch_up_limit=3)
    scheduler.run_once()  # initialises nothing: the window has closed
    make_due("closing", at=end - timedelta(seconds=2))
    report = scheduler.run_once()
    assert report.enqueued == 3  # end - 2 s, end - 1 s and the tick exactly at the end
    assert max(Job.objects.values_list("scheduled_for", flat=True)) == end
    with connection.cursor() as cur:
        assert queries.seconds_until_next_schedule(cur) is None  # nothing left: no busy loop


def test_a_broken_row_never_stops_the_scheduler_or_starves_others() -> None:
    Schedule.objects.create(name="aaa-broken", cron="* * * * * *", job_name="test.record")
    Schedule.objects.create(name="bbb-no-handler", cron="* * * * * *", job_name="renamed.job")
    add("zzz-healthy", "* * * * * *")
    running = Scheduler(poll_interval=0.05)
    thread = threading.Thread(target=running.run)
    thread.start()
    try:
        wait_for(
            lambda: Schedule.objects.filter(next_run_at__isnull=False).count() >= 2, what="init"
        )
        # Break the first row's payload behind the model's back, as SQL could.
        with connection.cursor() as cur:
            cur.execute("UPDATE pgjobs_schedules SET payload = '[1, 2]' WHERE name = 'aaa-broken'")
        wait_for(
            lambda: Job.objects.filter(key__startswith="cron:zzz-healthy:").count() >= 3,
            what="the healthy schedule keeps firing",
        )
        assert thread.is_alive()
        assert set(running._quarantined) >= set(
            Schedule.objects.filter(name="bbb-no-handler").values_list("id", flat=True)
        )
    finally:
        running.request_stop()
        thread.join(10)
    assert not thread.is_alive()


def test_first_tick_is_not_computed_from_a_timing_edited_meanwhile() -> None:
    row = add("edited-during-read", "0 0 1 1 *")
    with connection.cursor() as cur:
        _, rows = queries.due_schedules(cur)
        stale = next(r for r in rows if r["id"] == row.id)
        Schedule.objects.filter(id=row.id).update(cron="*/5 * * * *")
        assert not queries.set_next_run(cur, row=stale, next_run_at=db_now() + timedelta(days=300))
    assert Schedule.objects.get().next_run_at is None


def test_saving_a_loaded_schedule_never_brings_back_an_old_next_tick(scheduler: Scheduler) -> None:
    add("report", "* * * * *")
    scheduler.run_once()
    loaded = Schedule.objects.get()  # e.g. an admin form opened now
    tick = make_due("report", at=db_now().replace(second=0, microsecond=0))
    scheduler.run_once(now=tick + timedelta(seconds=1))  # the tick fires; next_run_at moves on
    advanced = Schedule.objects.get().next_run_at
    loaded.payload = {"changed": True}
    loaded.save()
    row = Schedule.objects.get()
    assert row.next_run_at == advanced and row.payload == {"changed": True}
    assert Job.objects.filter(scheduled_for=tick).count() == 1


def test_schedule_options_are_validated_like_enqueue(declared: list[str]) -> None:
    from django.core.exceptions import ValidationError

    schedule("loud", cron="0 * * * *", job_name="test.record", priority=500)
    declared.append("loud")
    errors = check_schedules(app_configs=None, databases=None)
    assert [e.id for e in errors] == ["pgjobs.E010"] and "between -100 and 100" in errors[0].msg
    with pytest.raises(ValidationError) as raised:
        Schedule(
            name="x", cron="0 * * * *", job_name="test.record", queue="", priority=500
        ).full_clean()
    assert {"priority", "queue"} <= set(raised.value.message_dict)


def test_settings_schedule_with_a_string_start_is_reported_not_a_crash() -> None:
    bad = {"s": {"cron": "0 * * * *", "job": "test.record", "start": "2026-01-01"}}
    with override_settings(PGJOBS={"SCHEDULES": bad}):
        errors = check_schedules(app_configs=None, databases=None)
    assert [e.id for e in errors] == ["pgjobs.E010"] and "aware datetime" in errors[0].msg
