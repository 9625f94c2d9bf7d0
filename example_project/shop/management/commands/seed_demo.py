"""``manage.py seed_demo``: add the demo's customer, import batch and jobs (safe to repeat)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from shop.seeding import seed_demo


class Command(BaseCommand):
    help = "Create demo data and enqueue its jobs: welcome email, row import, failing CRM sync."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(seed_demo().summary())
