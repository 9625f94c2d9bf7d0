"""Signing a customer up: the row and its welcome email job commit together or not at all."""

from __future__ import annotations

import uuid

from django.db import transaction

from shop.jobs import send_welcome_email
from shop.models import Customer


def sign_up(*, name: str, email: str) -> tuple[Customer, uuid.UUID]:
    """Create the customer and queue its welcome email in one transaction.

    ``enqueue`` writes the job on Django's connection, so it joins this transaction: if anything
    after it fails, the job disappears with the customer, and a worker woken by NOTIFY (sent only
    at commit) always finds the customer row it was promised. Called inside an outer
    ``atomic()``, both wait for the outer commit.
    """
    with transaction.atomic():
        customer = Customer.objects.create(name=name, email=email)
        job_id = send_welcome_email.enqueue({"customer_id": customer.pk})
    return customer, job_id
