"""The shop's background jobs. django_pgjobs imports every app's ``jobs`` module at startup.

Jobs run at least once: a retry, or a rescue after a worker died mid-job, runs the handler again,
so each handler here is written to be safe to repeat.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.mail import send_mail
from django.utils import timezone

from django_pgjobs import cron, job
from django_pgjobs.jobs import ProgressReporter
from shop.models import Customer, ImportBatch

logger = logging.getLogger(__name__)

IMPORT_CHUNK_ROWS = 50
# Stands in for parsing and saving one chunk: slow enough to watch `pgjobs list` show progress.
IMPORT_CHUNK_SECONDS = 0.4


class CrmUnavailable(Exception):
    """The CRM's API did not answer."""


@job("send-welcome-email", max_attempts=5)
def send_welcome_email(payload: dict[str, Any]) -> None:
    customer = Customer.objects.get(pk=payload["customer_id"])
    if customer.welcomed_at is not None:
        return
    send_mail(
        subject="Welcome to the example shop",
        message=f"Hello {customer.name},\n\nthanks for signing up!\n",
        from_email=None,
        recipient_list=[customer.email],
    )
    # Mail is not transactional: a crash between the send and this update sends a second copy.
    Customer.objects.filter(pk=customer.pk).update(welcomed_at=timezone.now())


@job("import-rows", queue="imports")
def import_rows(payload: dict[str, Any], report_progress: ProgressReporter) -> None:
    batch = ImportBatch.objects.get(pk=payload["batch_id"])
    # Resume where a failed or rescued attempt stopped instead of importing rows twice.
    done = batch.imported
    while done < batch.rows:
        time.sleep(IMPORT_CHUNK_SECONDS)
        done = min(done + IMPORT_CHUNK_ROWS, batch.rows)
        ImportBatch.objects.filter(pk=batch.pk).update(imported=done)
        report_progress(100 * done / batch.rows, f"{done}/{batch.rows} rows")
    # Also reached by a retry that finds every row already imported: report this attempt too.
    report_progress(100, f"{batch.rows}/{batch.rows} rows")


@job("sync-crm", max_attempts=3, retry_delay=1)
def sync_customer_to_crm(payload: dict[str, Any]) -> None:
    # A simulated outage: every attempt fails, retries come after 1 s and 2 s, and the third
    # failure moves the job to the dead letters, where `manage.py pgjobs retry <id>` revives it.
    raise CrmUnavailable(
        f"CRM API returned 503 while syncing customer {payload['customer_id']} (simulated outage)"
    )


@cron("* * * * *", name="shop-stats-every-minute")
@job("shop-stats")
def shop_stats(payload: dict[str, Any]) -> None:
    """A scheduled job: every minute, whichever worker's scheduler gets the tick enqueues it
    (exactly once), and any worker runs it. ``payload["fire_time"]`` is the tick's time."""
    logger.info(
        "Shop stats at %s: %s customers, %s welcomed",
        payload["fire_time"],
        Customer.objects.count(),
        Customer.objects.exclude(welcomed_at=None).count(),
    )
