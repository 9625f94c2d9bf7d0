from __future__ import annotations

from django.db import models


class Customer(models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set by the send-welcome-email job once the mail is out, so a retried job does not send twice.
    welcomed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class ImportBatch(models.Model):
    """A file of rows imported in the background by the import-rows job."""

    name = models.CharField(max_length=200)
    rows = models.PositiveIntegerField()
    # Rows done so far; the job resumes from here when an attempt is retried.
    imported = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"{self.name} ({self.imported}/{self.rows})"

    @property
    def is_done(self) -> bool:
        return self.imported >= self.rows


class Product(models.Model):
    sku = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    price_cents = models.PositiveIntegerField()
    stock = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.sku} ({self.stock} in stock)"


class Order(models.Model):
    """Placed by a customer, then carried through checkout by the shop.checkout workflow."""

    class Status(models.TextChoices):
        PLACED = "placed"
        RESERVED = "reserved"
        PAID = "paid"
        RECEIPTED = "receipted"
        FAILED = "failed"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLACED)
    # The payment provider's charge id, recorded by the workflow once the card is charged.
    charge_id = models.CharField(max_length=64, blank=True)
    # How many times the (simulated) payment gateway times out before it answers.
    gateway_timeouts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"order {self.pk}: {self.quantity} x {self.product.sku} ({self.status})"

    @property
    def amount_cents(self) -> int:
        return self.quantity * self.product.price_cents


class Charge(models.Model):
    """The (simulated) payment provider's side: one row per charge it made. The idempotency key
    makes a repeated request return the first charge instead of charging twice, as real
    providers' idempotency keys do."""

    idempotency_key = models.CharField(max_length=64, unique=True)
    amount_cents = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"ch_{self.pk} ({self.amount_cents} cents)"
