"""The "why is this job not running?" panel of the job and dead letter pages: explain_job's
answer, with the jobs in its way and the worker holding it linked."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from django_pgjobs.conf import conf
from django_pgjobs.exceptions import JobNotFound
from django_pgjobs.observability.display import local_time
from django_pgjobs.observability.explain import explain_job
from django_pgjobs.observability.explain_messages import REQUEUE_IN_ADMIN

# On the dead letter's own page, the admin's way to requeue it as seen from there.
REQUEUE_FROM_HERE = (
    "Requeue (the action of the dead letters list this page belongs to, with this one selected)"
)

# A command or name the message quotes in backticks (as the command line prints it).
_QUOTED = re.compile(r"`([^`]+)`")


def explanation_panel(
    job_id: uuid.UUID, *, dead_letter_page: bool = False
) -> dict[str, Any] | None:
    """What the panel shows (None: the job is gone, as a page opened before a prune finds).
    ``dead_letter_page``: shown on the dead letter's own page, which names the way to requeue
    it from there rather than sending the reader to the page they are on."""
    try:
        said = explain_job(job_id, using=conf.DATABASE)
    except JobNotFound:
        return None
    message = said.message
    if dead_letter_page and said.status == "dead":
        message = message.replace(REQUEUE_IN_ADMIN, REQUEUE_FROM_HERE)
    return {
        "said": said,
        "message": as_html(message),
        "heading": (
            "Why is this job not running?" if said.status == "pending" else "Where this job stands"
        ),
        # The message's own format (local time with its offset), not the template's.
        "until": None if said.until is None else local_time(said.until),
        "blocking": [
            {"id": str(pk), "url": reverse("admin:pgjobs_job_change", args=[pk])}
            for pk in said.blocking_job_ids
        ],
        # A row written by SQL may name its worker ''; no page has that id.
        "worker_url": (
            reverse("admin:pgjobs_worker_change", args=[said.worker_id]) if said.worker_id else None
        ),
    }


def as_html(message: str) -> SafeString:
    """The message escaped (it quotes stored names and errors), its backticked commands as
    <code>."""
    return mark_safe(_QUOTED.sub(r"<code>\1</code>", str(escape(message))))  # noqa: S308
