"""The backoff policy: how long a failed attempt waits before the next one.

One formula for everything that retries: jobs (:func:`retry_delay`, from the settings and the
handler's ``retry_delay``) and workflow steps (their own base and rate). Pure apart from reading
settings; the random source is injectable.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from django_pgjobs.conf import conf
from django_pgjobs.jobs.registry import registry


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float = math.inf,
    rate: float = 2.0,
    jitter: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    ``base * rate ** (attempt - 1)``: with base 1 s and rate 2 that is 1, 2, 4, 8 ... as in the
    seed. ``jitter`` spreads the delay uniformly by up to that fraction either way so many jobs
    failing together (a dependency outage) do not all come back in the same second. Never more
    than ``cap``, jittered or not: a spread that would carry a delay past ``cap`` falls back
    below it by as much, so a capped delay is spread from ``cap * (1 - jitter)`` to ``cap``.
    Clipping it at ``cap`` instead brought half of the capped retries back at the same second.
    """
    exponent = max(attempt - 1, 0)
    if base <= 0:
        delay = 0.0
    else:
        try:
            delay = min(base * rate**exponent, cap)
        except OverflowError:  # 2.0 ** 10_000 is a float overflow, not a long delay
            delay = cap
    if jitter > 0:
        delay *= 1.0 + jitter * (2.0 * rand() - 1.0)
        if delay > cap:
            delay = 2.0 * cap - delay  # one draw either way: at most jitter * cap below cap
    return min(max(delay, 0.0), cap)


def retry_delay(job_name: str, attempt: int) -> float:
    """How long a job's failed ``attempt`` waits: the handler's ``retry_delay`` (or
    ``RETRY_DELAY``) doubled per attempt, capped at ``RETRY_DELAY_MAX``, spread by
    ``RETRY_JITTER``."""
    handler = registry.get(job_name)
    base = handler.retry_delay if handler is not None else None
    return backoff_delay(
        attempt,
        base=conf.RETRY_DELAY if base is None else base,
        cap=conf.RETRY_DELAY_MAX,
        jitter=conf.RETRY_JITTER,
    )
