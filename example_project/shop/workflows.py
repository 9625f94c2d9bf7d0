"""The checkout, as a durable workflow. django_pgjobs imports every app's ``workflows`` module.

Each step's result is recorded when it returns; if the worker dies, another one re-runs
``checkout`` from the top and every finished step returns its recorded result instead of running
again. So: stock is reserved once (an atomic step: its writes commit with its checkpoint), the
card is charged once (the gateway call carries an idempotency key, because a step that was running
when the worker died runs again), and the receipt goes out once the charge is recorded.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F

from django_pgjobs import step, transaction_step, workflow
from shop.models import Charge, Order, Product

logger = logging.getLogger(__name__)


class OutOfStock(Exception):
    pass


class GatewayTimeout(Exception):
    """The payment gateway did not answer in time; the step retries."""


@transaction_step
def reserve_stock(order_id: int) -> int:
    """Take the order's items from stock; returns the amount to charge, in cents."""
    order = Order.objects.select_related("product").get(pk=order_id)
    taken = Product.objects.filter(pk=order.product_id, stock__gte=order.quantity).update(
        stock=F("stock") - order.quantity
    )
    if not taken:
        raise OutOfStock(f"only {order.product.stock} of {order.product.sku} left")
    Order.objects.filter(pk=order_id).update(status=Order.Status.RESERVED)
    return order.amount_cents


@step(retries_allowed=True, max_attempts=4, interval_seconds=0.5, backoff_rate=2.0)
def charge_card(order_id: int, amount_cents: int) -> str:
    """Call the payment gateway (simulated: it times out ``gateway_timeouts`` times first)."""
    timeouts = Order.objects.filter(pk=order_id, gateway_timeouts__gt=0).update(
        gateway_timeouts=F("gateway_timeouts") - 1
    )
    if timeouts:
        raise GatewayTimeout(f"payment gateway timed out charging order {order_id}")
    try:
        with transaction.atomic():
            charge = Charge.objects.create(
                idempotency_key=f"order-{order_id}", amount_cents=amount_cents
            )
    except IntegrityError:
        charge = Charge.objects.get(idempotency_key=f"order-{order_id}")
    return f"ch_{charge.pk}"


@transaction_step
def record_charge(order_id: int, charge_id: str) -> None:
    Order.objects.filter(pk=order_id).update(status=Order.Status.PAID, charge_id=charge_id)


@transaction_step
def release_stock(order_id: int, reason: str) -> None:
    """Compensation: put the reserved stock back and mark the order failed."""
    order = Order.objects.get(pk=order_id)
    Product.objects.filter(pk=order.product_id).update(stock=F("stock") + order.quantity)
    Order.objects.filter(pk=order_id).update(status=Order.Status.FAILED)
    logger.warning("Order %s failed: %s", order_id, reason)


@step
def send_receipt(order_id: int, charge_id: str) -> str:
    order = Order.objects.select_related("customer", "product").get(pk=order_id)
    send_mail(
        subject=f"Your receipt for order {order.pk}",
        message=(
            f"Hello {order.customer.name},\n\nwe charged {order.amount_cents / 100:.2f} "
            f"({charge_id}) for {order.quantity} x {order.product.name}.\n"
        ),
        from_email=None,
        recipient_list=[order.customer.email],
    )
    Order.objects.filter(pk=order_id).update(status=Order.Status.RECEIPTED)
    return order.customer.email


@workflow("shop.checkout", max_recovery_attempts=5)
def checkout(order_id: int) -> dict[str, Any]:
    # The workflow body only calls steps and decides from their results: it must take the same
    # path every time it is re-run (no clock, no random, no queries outside steps).
    amount = reserve_stock(order_id)
    try:
        charge_id = charge_card(order_id, amount)
    except GatewayTimeout as exc:
        release_stock(order_id, f"payment failed: {exc}")
        raise
    record_charge(order_id, charge_id)
    receipt_to = send_receipt(order_id, charge_id)
    return {"order": order_id, "charge": charge_id, "receipt_to": receipt_to}
