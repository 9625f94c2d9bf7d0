"""The queues admin: pause, resume and an operator's limits, through the library's functions,
with counts that stay bounded however many jobs a queue holds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_pgjobs import enqueue, enqueue_many, queries
from django_pgjobs.models import Job, Queue
from django_pgjobs.observability import dashboard
from django_pgjobs.queues import pause_queue, set_queue_limits
from django_pgjobs.queues.declarations import declared_queues
from tests.admin.changelists import act, changelist

pytestmark = pytest.mark.django_db(transaction=True)
ADD = reverse("admin:pgjobs_queue_add")


def change(name: str) -> str:
    return reverse("admin:pgjobs_queue_change", args=[name])


_declared: list[override_settings] = []


@pytest.fixture(autouse=True)
def _forget_declared() -> Iterator[None]:
    yield
    while _declared:
        _declared.pop().disable()


def declare(**queues: dict[str, Any]) -> None:
    """PGJOBS["QUEUES"] for the rest of the test, written as a worker's start writes it."""
    override = override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": queues})
    override.enable()
    _declared.append(override)
    with connection.cursor() as cur:
        queries.sync_declared_queues(cur, declared_queues()[0])


def limits_form(**values: Any) -> dict[str, Any]:
    """A change or add form as the browser posts it: every limit blank unless given."""
    form = {
        "concurrency": "", "worker_concurrency": "", "rate_limit": "", "rate_period": "1",
        "partition_concurrency": "", "partition_rate_limit": "", "timeout": "",
    }  # fmt: skip
    form.update({k: str(v) for k, v in values.items() if v is not False})
    return form


def cells(page: str, name: str) -> str:
    """The changelist row of queue ``name``."""
    return page.split(f">{name}</a>")[1].split("</tr>")[0]


def test_the_list_shows_state_limits_counts_and_where_the_limits_come_from(
    admin_client_: Client,
) -> None:
    declare(mail={"concurrency": 5, "rate_limit": 100, "rate_period": 60})
    set_queue_limits("reports", partition_concurrency=1, fair=True)
    pause_queue("ledger")
    enqueue_many("test.record", [{}] * 3, queue="mail")
    enqueue("test.record", queue="mail", scheduled_for=timedelta(hours=1))  # not due
    running = enqueue("test.record", queue="mail")
    Job.objects.filter(id=running).update(status="running")

    page = admin_client_.get(changelist("queue")).content.decode()
    mail = cells(page, "mail")
    assert ">active<" in mail and "at most 5 running, at most 100 starts per 60s" in mail
    assert '<td class="field-running_jobs">1</td>' in mail
    assert '<td class="field-due_jobs">3</td>' in mail
    assert "PGJOBS[&#x27;QUEUES&#x27;]" in mail
    reports = cells(page, "reports")
    assert "at most 1 running per partition key, keys take turns" in reports
    assert ">operator<" in reports
    ledger = cells(page, "ledger")
    assert ">paused<" in ledger and "since" in ledger and ">none<" in ledger


def test_counts_stop_at_the_cap(admin_client_: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "COUNT_CAP", 3)
    pause_queue("mail")
    enqueue_many("test.record", [{}] * 5, queue="mail")
    page = admin_client_.get(changelist("queue")).content.decode()
    assert '<td class="field-due_jobs">3+</td>' in page


def test_the_list_costs_the_same_queries_for_one_queue_or_many(admin_client_: Client) -> None:
    def render(queues: int) -> int:
        for n in range(queues):
            pause_queue(f"q{n}")
            enqueue_many("test.record", [{}] * (n + 1), queue=f"q{n}")
        with CaptureQueriesContext(connection) as captured:
            page = admin_client_.get(changelist("queue")).content.decode()
        assert page.count(">paused<") == queues
        return len(captured)

    one = render(1)
    Queue.objects.all().delete()
    assert render(6) == one


def test_pause_resume_and_reset_actions_call_the_library(admin_client_: Client) -> None:
    declare(mail={"concurrency": 5})
    set_queue_limits("mail", concurrency=1)
    page = act(admin_client_, "queue", "pause", ["mail"]).content.decode()
    assert "1 queue paused." in page
    row = Queue.objects.get(name="mail")
    assert row.paused and row.paused_at is not None

    act(admin_client_, "queue", "resume", ["mail"])
    assert not Queue.objects.get(name="mail").paused

    page = act(admin_client_, "queue", "reset_limits", ["mail"]).content.decode()
    assert "back to PGJOBS" in page
    row = Queue.objects.get(name="mail")
    assert row.concurrency == 5 and not row.overridden


def test_the_pause_and_resume_buttons_say_when_nothing_changed(admin_client_: Client) -> None:
    pause_queue("mail")
    pause = reverse("admin:pgjobs_queue_pause", args=["mail"])
    page = admin_client_.post(pause, follow=True).content.decode()
    assert "Queue mail was paused already." in page
    resume = reverse("admin:pgjobs_queue_resume", args=["mail"])
    assert "Queue mail resumed." in admin_client_.post(resume, follow=True).content.decode()
    assert "Queue mail was not paused." in admin_client_.post(resume, follow=True).content.decode()


def test_the_list_actions_say_which_queues_were_already_so(admin_client_: Client) -> None:
    """Pause, Resume and Reset on queues already in that state said nothing at all (found by
    the new-user trial); they say so, as the CLI and the change page's buttons do."""
    declare(mail={"concurrency": 5})
    pause_queue("mail")
    set_queue_limits("sms", concurrency=2)
    page = act(admin_client_, "queue", "pause", ["mail"]).content.decode()
    assert "Queue mail was paused already." in page
    page = act(admin_client_, "queue", "pause", ["mail", "sms"]).content.decode()
    assert "1 queue paused." in page and "Queue mail was paused already." in page
    page = act(admin_client_, "queue", "resume", ["mail", "sms"]).content.decode()
    assert "2 queues resumed." in page
    page = act(admin_client_, "queue", "resume", ["mail", "sms"]).content.decode()
    assert "2 queues were not paused (mail, sms)." in page
    page = act(admin_client_, "queue", "reset_limits", ["mail", "sms"]).content.decode()
    assert "1 queue back to PGJOBS" in page  # sms; mail, resumed, has the settings' limits
    assert "Queue mail was not overridden: nothing to reset." in page


def test_a_view_only_user_sees_queues_and_changes_nothing(viewer_client: Client) -> None:
    pause_queue("mail")
    page = viewer_client.get(changelist("queue")).content.decode()
    assert ">paused<" in page and 'value="resume"' not in page
    act(viewer_client, "queue", "resume", ["mail"])
    assert Queue.objects.get(name="mail").paused
    assert viewer_client.get(ADD).status_code == 403
    assert (
        viewer_client.post(reverse("admin:pgjobs_queue_resume", args=["mail"])).status_code == 403
    )
    assert Queue.objects.get(name="mail").paused


def test_adding_a_queue_sets_an_operators_limits(admin_client_: Client) -> None:
    response = admin_client_.post(ADD, {"name": "mail", **limits_form(concurrency=2)})
    assert response.status_code == 302
    row = Queue.objects.get(name="mail")
    assert row.concurrency == 2 and row.overridden and not row.paused
    assert row.rate_period == timedelta(seconds=1)
    # A worker's start no longer syncs the settings over it.
    declare(mail={"concurrency": 9})
    assert Queue.objects.get(name="mail").concurrency == 2


def test_adding_a_paused_queue_without_limits_leaves_the_settings_in_charge(
    admin_client_: Client,
) -> None:
    assert (
        admin_client_.post(ADD, {"name": "mail", "paused": "on", **limits_form()}).status_code
        == 302
    )
    row = Queue.objects.get(name="mail")
    # The pause is the operator's (the settings do not pause it); the limits stay the settings'.
    assert row.paused and row.overridden
    declare(mail={"concurrency": 9})
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.paused) == (9, True)


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({"name": "mail", **limits_form()}, "Pause the queue or set a limit"),
        (
            {"name": "mail", **limits_form(concurrency=0)},
            "Concurrency must be a whole number from 1 to 2147483647; leave it empty for no limit.",
        ),
        (
            {"name": "mail", **limits_form(rate_limit=5, rate_period=0.0001)},
            "Rate period must be seconds from 0.001 to 86400 (a day); leave it empty for the "
            "default (1 second).",
        ),
        (
            {"name": "mail", **limits_form(rate_limit=5, rate_period=172800)},
            "Rate period is too large: at most 86400 seconds (a day); leave it empty for the "
            "default (1 second).",
        ),
        (
            {"name": "mail", **limits_form(timeout="0")},
            "Timeout must be seconds from 0.001 to 31622400 (a year); leave it empty for "
            "no timeout.",
        ),
        (
            {"name": "mail", **limits_form(timeout="1e-7")},
            "Timeout must be seconds from 0.001 to 31622400 (a year); leave it empty for "
            "no timeout.",
        ),
        (
            {"name": "mail", **limits_form(timeout="1e9")},
            "Timeout is too large: at most 31622400 seconds (a year); leave it empty for no "
            "timeout.",
        ),
        (
            {"name": "mail", **limits_form(timeout="1e400")},
            "Timeout is too large: at most 31622400 seconds (a year); leave it empty for no "
            "timeout.",
        ),
        # Only seconds, as the help text says: not Django's other duration formats, which
        # would mean something else than an operator may think ("1:00" is a minute).
        *(
            (
                {"name": "mail", **limits_form(timeout=typed)},
                "Enter a number of seconds, e.g. 60 (not 1:00 nor P1D).",
            )
            for typed in ("1 min", "1:00", "P1D", "400 00:00:00", "nan", "inf", "60s")
        ),
        (
            {"name": "mail", **limits_form(concurrency="none")},
            "Enter a positive whole number (1 to 2147483647), or leave it empty for no limit.",
        ),
        (
            {"name": "mail", **limits_form(concurrency="99999999999")},
            "Concurrency is too large: at most 2147483647; leave it empty for no limit.",
        ),
        # Past the 4,300 digits Python's int() reads: still "too large".
        (
            {"name": "mail", **limits_form(concurrency="9" * 5000)},
            "Concurrency is too large: at most 2147483647; leave it empty for no limit.",
        ),
        # What the CLI refuses, the form refuses: "5.0", digits of other scripts, thin spaces.
        *(
            (
                {"name": "mail", **limits_form(concurrency=typed)},
                "Enter a positive whole number (1 to 2147483647), or leave it empty for no limit.",
            )
            for typed in ("5.0", "\u0666\u0660", "\uff16\uff10", "\u200960")
        ),
        *(
            (
                {"name": "mail", **limits_form(timeout=typed)},
                "Enter a number of seconds, e.g. 60 (not 1:00 nor P1D).",
            )
            for typed in ("\u0666\u0660", "\uff16\uff10", "60\u2009")
        ),
        ({"name": "   ", **limits_form(concurrency=1)}, "This field is required"),
        ({"name": "q" * 201, **limits_form(concurrency=1)}, "at most 200 characters"),
    ],
)
def test_the_add_form_refuses_what_the_settings_check_refuses_saying_what_to_type(
    admin_client_: Client, form: dict[str, Any], said: str
) -> None:
    response = admin_client_.post(ADD, form)
    assert response.status_code == 200
    page = response.content.decode()
    assert said in page
    # An operator types in a form: no Python words.
    errors = " ".join(part.split("</ul>")[0] for part in page.split('class="errorlist')[1:])
    assert "None" not in errors and "timedelta" not in errors, errors
    assert not Queue.objects.exists()


def test_adding_a_queue_that_has_a_row_is_refused(admin_client_: Client) -> None:
    pause_queue("mail")
    response = admin_client_.post(ADD, {"name": "mail", **limits_form(concurrency=1)})
    assert "already exists" in response.content.decode()
    assert Queue.objects.get(name="mail").concurrency is None


def test_changing_limits_overrides_the_settings_and_shows_them_beside(
    admin_client_: Client,
) -> None:
    declare(mail={"concurrency": 5, "rate_limit": 100, "rate_period": 60})
    page = admin_client_.get(change("mail")).content.decode()
    assert "PGJOBS['QUEUES']: 5." in page and "PGJOBS['QUEUES']: 60 s." in page
    assert "PGJOBS['QUEUES']: no limit." in page  # worker_concurrency
    assert "PGJOBS['QUEUES']: no timeout." in page
    assert 'name="name"' not in page  # the key: shown, not edited
    assert ">Reset to settings</button>" not in page  # nothing to reset yet

    # Saved unchanged: still the settings' limits, and the page says nothing changed.
    unchanged = limits_form(concurrency=5, rate_limit=100, rate_period=60)
    saved = admin_client_.post(change("mail"), unchanged, follow=True).content.decode()
    assert "Queue mail: nothing changed (limits from: PGJOBS[&#x27;QUEUES&#x27;])." in saved
    assert "changed successfully" not in saved
    assert not Queue.objects.get(name="mail").overridden

    lowered = limits_form(concurrency=2, rate_limit=100, rate_period=60)
    assert admin_client_.post(change("mail"), lowered).status_code == 302
    row = Queue.objects.get(name="mail")
    assert row.concurrency == 2 and row.overridden
    declare(mail={"concurrency": 5, "rate_limit": 100, "rate_period": 60})
    assert Queue.objects.get(name="mail").concurrency == 2

    refused = admin_client_.post(change("mail"), limits_form(partition_rate_limit=-1))
    assert "Partition rate limit must be a whole number" in refused.content.decode()
    assert Queue.objects.get(name="mail").concurrency == 2

    page = admin_client_.get(change("mail")).content.decode()
    assert ">Reset to settings</button>" in page
    admin_client_.post(reverse("admin:pgjobs_queue_reset", args=["mail"]))
    row = Queue.objects.get(name="mail")
    assert row.concurrency == 5 and not row.overridden


def test_durations_are_shown_in_seconds_and_agree_with_the_settings_beside_them(
    admin_client_: Client,
) -> None:
    """A rate period the settings leave out is the default window, 1 s: the field holds it and
    the settings' value beside it says so, in the seconds the field is typed in."""
    declare(mail={"rate_limit": 5, "timeout": 90})
    page = admin_client_.get(change("mail")).content.decode()
    assert 'name="rate_period" value="1"' in page
    assert "PGJOBS['QUEUES']: the default (1 second)." in page
    assert 'name="timeout" value="90"' in page and "PGJOBS['QUEUES']: 90 s." in page
    # Typed in seconds, fractions too; left empty, the default window.
    saved = limits_form(rate_limit=5, rate_period="0.5", timeout="90")
    assert admin_client_.post(change("mail"), saved).status_code == 302
    assert Queue.objects.get(name="mail").rate_period == timedelta(milliseconds=500)
    assert 'name="rate_period" value="0.5"' in admin_client_.get(change("mail")).content.decode()
    saved = limits_form(rate_limit=5, rate_period="", timeout="90")
    assert admin_client_.post(change("mail"), saved).status_code == 302
    assert Queue.objects.get(name="mail").rate_period == timedelta(seconds=1)


def test_the_change_page_pauses_and_resumes(admin_client_: Client) -> None:
    set_queue_limits("mail", concurrency=1)
    page = admin_client_.get(change("mail")).content.decode()
    assert ">Pause</button>" in page and ">Resume</button>" not in page
    done = admin_client_.post(reverse("admin:pgjobs_queue_pause", args=["mail"]), follow=True)
    assert "Queue mail paused." in done.content.decode()
    assert Queue.objects.get(name="mail").paused
    assert ">Resume</button>" in done.content.decode()
    admin_client_.post(reverse("admin:pgjobs_queue_resume", args=["mail"]))
    assert not Queue.objects.get(name="mail").paused
    # Only POST: a link followed by a crawler changes nothing.
    assert admin_client_.get(reverse("admin:pgjobs_queue_pause", args=["mail"])).status_code == 405


def test_queues_with_jobs_and_no_row_are_listed_with_a_way_to_pause_them(
    admin_client_: Client,
) -> None:
    enqueue("test.record", queue="mail")
    pause_queue("ledger")
    page = admin_client_.get(changelist("queue")).content.decode()
    unlisted = page.split('id="pgjobs-unlisted-queues"')[1].split("</div>")[0]
    assert ">mail</a>" in unlisted and "ledger" not in unlisted
    assert f"{ADD}?name=mail&amp;paused=on" in unlisted
    form = admin_client_.get(ADD, {"name": "mail", "paused": "on"}).content.decode()
    assert 'value="mail"' in form and 'id="id_paused" checked' in form


def test_the_dashboard_shows_paused_queues_and_links_the_queues_page(
    admin_client_: Client,
) -> None:
    enqueue("test.record", queue="mail")
    pause_queue("mail")
    pause_queue("ledger")
    page = admin_client_.get("/admin/pgjobs/dashboard/").content.decode()
    panel = page.split('id="pgjobs-paused"')[1].split("</ul>")[0]
    assert f'href="{change("ledger")}">ledger</a>' in panel and ">mail</a>" in panel
    assert 'id="pgjobs-paused-count"' in page and f"{changelist('queue')}?paused__exact=1" in page
    table = page.split('id="pgjobs-queues"')[1].split("</table>")[0]
    assert 'class="pgjobs-paused-mark">paused<' in table


def test_the_dashboard_says_nothing_of_pauses_when_none(admin_client_: Client) -> None:
    set_queue_limits("mail", concurrency=1)
    page = admin_client_.get("/admin/pgjobs/dashboard/").content.decode()
    assert 'id="pgjobs-paused"' not in page and 'id="pgjobs-paused-count"><a' in page


def test_spaces_around_a_number_are_taken_and_the_settings_limits_again_end_the_override(
    admin_client_: Client,
) -> None:
    declare(mail={"concurrency": 5, "timeout": 60})
    typed = limits_form(concurrency=" 3 ", timeout=" 90 ")
    assert admin_client_.post(change("mail"), typed).status_code == 302
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.timeout, row.overridden) == (3, timedelta(seconds=90), True)

    back = limits_form(concurrency=5, timeout=60)
    saved = admin_client_.post(change("mail"), back, follow=True).content.decode()
    assert (
        "Queue mail: these are PGJOBS[&#x27;QUEUES&#x27;]&#x27;s limits: override ended." in saved
    )
    row = Queue.objects.get(name="mail")
    assert (row.concurrency, row.timeout, row.overridden) == (5, timedelta(seconds=60), False)
    assert ">Reset to settings</button>" not in admin_client_.get(change("mail")).content.decode()


def test_a_queue_the_settings_pause_shows_it_and_a_resume_is_an_override_reset_undoes(
    admin_client_: Client,
) -> None:
    declare(mail={"paused": True, "concurrency": 5})
    page = admin_client_.get(change("mail")).content.decode()
    assert "paused, at most 5 running" in page  # in settings
    assert ">Reset to settings</button>" not in page
    admin_client_.post(reverse("admin:pgjobs_queue_resume", args=["mail"]))
    row = Queue.objects.get(name="mail")
    assert (row.paused, row.overridden) == (False, True)
    page = admin_client_.get(change("mail")).content.decode()
    assert ">Reset to settings</button>" in page
    admin_client_.post(reverse("admin:pgjobs_queue_reset", args=["mail"]))
    row = Queue.objects.get(name="mail")
    assert (row.paused, row.overridden, row.concurrency) == (True, False, 5)
