"""Demo data: one signup, one signup that rolls back, an import batch and a failing CRM sync.

Shared by ``manage.py seed_demo`` and ``demo.py --check`` (which verifies what it returns).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from django_pgjobs import get_job, start_workflow
from django_pgjobs.exceptions import JobNotFound
from shop.jobs import import_rows, sync_customer_to_crm
from shop.models import Customer, ImportBatch, Order, Product
from shop.signup import sign_up
from shop.tasks import tally_signups
from shop.workflows import checkout

DEMO_IMPORT_ROWS = 500


class PaymentDeclined(Exception):
    """Raised on purpose to roll back a signup after its welcome email was enqueued."""


@dataclass(frozen=True)
class DemoSeed:
    customer: Customer
    welcome_job: uuid.UUID
    # Enqueued inside a transaction that then rolled back: no such job may exist.
    rolled_back_job: uuid.UUID
    batch: ImportBatch
    import_job: uuid.UUID
    sync_job: uuid.UUID
    order: Order
    checkout_workflow: str
    tally_task: str  # the id of a Django task's result

    def summary(self) -> str:
        try:
            get_job(self.rolled_back_job)
            rolled_back = "IN THE QUEUE, which it must not be"
        except JobNotFound:
            rolled_back = "not in the queue, as it should be"
        return (
            f"Signed up {self.customer}: send-welcome-email job {self.welcome_job}\n"
            f"Rolled back a second signup after it enqueued its welcome email: job "
            f"{self.rolled_back_job} is {rolled_back}\n"
            f"Import batch {self.batch.name!r} ({self.batch.rows} rows): import-rows job "
            f"{self.import_job}\n"
            f"CRM sync of customer {self.customer.pk}: sync-crm job {self.sync_job} "
            "(fails on purpose; dead-lettered after 3 attempts)\n"
            f"Order {self.order.pk} placed: shop.checkout workflow {self.checkout_workflow} "
            "(reserve stock, charge the card after one gateway timeout, send the receipt)"
        )


def seed_demo() -> DemoSeed:
    # Fresh addresses on every run: emails are unique and the demo can be seeded repeatedly.
    suffix = secrets.token_hex(3)
    customer, welcome_job = sign_up(name="Ada Lovelace", email=f"ada+{suffix}@example.com")

    rolled_back_job = uuid.UUID(int=0)
    try:
        with transaction.atomic():
            _, rolled_back_job = sign_up(name="Charles Babbage", email=f"cb+{suffix}@example.com")
            raise PaymentDeclined("card declined")
    except PaymentDeclined:
        pass

    with transaction.atomic():
        batch = ImportBatch.objects.create(name="spring-catalogue.csv", rows=DEMO_IMPORT_ROWS)
        # The key makes a double-clicked "import" queue one job, not two.
        import_job = import_rows.enqueue({"batch_id": batch.pk}, key=f"import-batch-{batch.pk}")

    sync_job = sync_customer_to_crm.enqueue({"customer_id": customer.pk})

    with transaction.atomic():
        product, _ = Product.objects.get_or_create(
            sku="KB-01", defaults={"name": "Mechanical keyboard", "price_cents": 8900, "stock": 100}
        )
        order = Order.objects.create(
            customer=customer, product=product, quantity=2, gateway_timeouts=1
        )
        # Started in the order's transaction: no order without its checkout, and no checkout of
        # an order that was never placed. The order id makes a retried request start nothing new.
        checkout_workflow = start_workflow(
            checkout, order.pk, workflow_id=f"checkout-{order.pk}"
        ).workflow_id
    # A Django task (django.tasks), enqueued like any job: its return value is kept.
    tally_task = tally_signups.enqueue(timezone.localdate().isoformat()).id
    return DemoSeed(
        customer=customer,
        welcome_job=welcome_job,
        rolled_back_job=rolled_back_job,
        batch=batch,
        import_job=import_job,
        sync_job=sync_job,
        order=order,
        checkout_workflow=checkout_workflow,
        tally_task=tally_task,
    )
