"""signals.listened(): the worker's per-job check that a signal has a receiver."""

from __future__ import annotations

import gc
from typing import Any

from django.dispatch import Signal

from django_pgjobs.signals import listened


def test_a_signal_is_listened_to_while_a_live_receiver_is_connected() -> None:
    signal = Signal()
    assert not listened(signal)

    def receiver(**kwargs: Any) -> None:
        pass

    signal.connect(receiver)
    assert listened(signal)
    signal.disconnect(receiver)
    assert not listened(signal)


def test_a_receiver_that_was_garbage_collected_is_no_listener() -> None:
    """Its weak reference may still be on the list: has_listeners() is still asked."""
    signal = Signal()

    class Receiver:
        def __call__(self, **kwargs: Any) -> None:
            pass

    receiver = Receiver()
    signal.connect(receiver)
    assert listened(signal)
    del receiver
    gc.collect()
    assert not listened(signal)
