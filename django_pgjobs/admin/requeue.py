"""The dead letters' bulk requeue action: one statement on the selection, however large.

With "select all", Django hands the action the change list's queryset (its filters and search
applied), and :func:`~django_pgjobs.jobs.operations.requeue_dead_letters_in` moves those rows in
one statement without reading their ids, so it has no row limit (the per-row actions stop at
``ACTION_LIMIT``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from django_pgjobs.exceptions import PgJobsError
from django_pgjobs.jobs.operations import requeue_dead_letters_in
from django_pgjobs.models import FailedJob


@admin.action(
    description="Requeue all selected as fresh jobs (one statement, no row limit)",
    permissions=["change"],
)
def requeue_all_selected(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[FailedJob]
) -> None:
    try:
        done = requeue_dead_letters_in(queryset)
    except PgJobsError as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    ids = ", ".join(map(str, done.job_ids))
    if done.count == 0:
        message = "No dead letters were requeued (another operator requeued them meanwhile)."
    elif done.count == 1:
        message = f"1 dead letter requeued as job {ids}."
    elif done.count == len(done.job_ids):
        message = f"{done.count} dead letters requeued as jobs {ids}."
    else:
        message = f"{done.count} dead letters requeued; the first: {ids}."
    modeladmin.message_user(request, message, messages.SUCCESS)
