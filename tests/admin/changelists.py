"""Driving an admin changelist: its URL, and posting an action on selected rows."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse


def changelist(model: str) -> str:
    return reverse(f"admin:pgjobs_{model}_changelist")


def act(client: Client, model: str, action: str, ids: list[Any]) -> Any:
    return client.post(
        changelist(model),
        {"action": action, "_selected_action": [str(i) for i in ids]},
        follow=True,
    )
