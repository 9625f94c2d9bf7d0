"""Errors as JSON and back, without a database."""

from __future__ import annotations

from django_pgjobs.workflows.codec import describe, rebuild


class PaymentFailed(Exception):
    """An exception whose __init__ formats its message from an argument."""

    def __init__(self, code: str) -> None:
        super().__init__(f"payment failed: {code}")
        self.code = code


def test_a_rebuilt_error_has_its_recorded_message_and_attributes_once() -> None:
    recorded = describe(PaymentFailed("card_declined"))
    rebuilt = rebuild(recorded)
    assert isinstance(rebuilt, PaymentFailed)
    assert str(rebuilt) == "payment failed: card_declined"
    assert rebuilt.code == "card_declined"
