from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from shop.jobs import sync_customer_to_crm
from shop.models import Customer, ImportBatch, Order, Product


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not generic at run time
    list_display = ("name", "email", "created_at", "welcomed_at")
    search_fields = ("name", "email")
    actions = ("sync_to_crm",)

    @admin.action(description="Sync selected customers to the CRM (in the background)")
    def sync_to_crm(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        payloads = [{"customer_id": pk} for pk in queryset.values_list("pk", flat=True)]
        sync_customer_to_crm.enqueue_many(payloads)
        self.message_user(
            request, f"Queued a sync-crm job for {len(payloads)} customer(s).", messages.SUCCESS
        )


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "rows", "imported", "created_at")
    readonly_fields = ("imported",)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("sku", "name", "price_cents", "stock")


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("pk", "customer", "product", "quantity", "status", "charge_id", "created_at")
    list_filter = ("status",)
    readonly_fields = ("status", "charge_id")
