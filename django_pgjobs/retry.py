"""The backoff policy: how long a failed attempt waits before the next one. Pure; no database."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    ``base * 2 ** (attempt - 1)``: with base 1 s that is 1, 2, 4, 8 ... as in the seed, never more
    than ``cap``. ``jitter`` spreads the delay uniformly by up to that fraction either way so many
    jobs failing together (a dependency outage) do not all come back in the same second.
    """
    exponent = max(attempt - 1, 0)
    # Clamp the exponent before raising: 2 ** 10_000 is a float overflow, not a long delay.
    delay = min(base * 2.0 ** min(exponent, 64), cap)
    if jitter > 0:
        delay *= 1.0 + jitter * (2.0 * rand() - 1.0)
    return max(delay, 0.0)
