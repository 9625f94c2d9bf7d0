"""How long an attempt may run, and how a timed-out attempt's failure reads.

The first that is set wins: the job's own ``timeout`` (an ``enqueue`` option, stored on the
row), its handler's (``@job(timeout=...)``, read from the code the worker runs now), its
queue's (``pgjobs_queues.timeout``) and ``PGJOBS["TIMEOUT"]``. None of them set (the setting
``None``): the attempt may run for ever. :func:`resolve_timeout` is pure; :func:`attempt_timeout`
reads the setting live.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import EllipsisType
from typing import TYPE_CHECKING, Literal

from django_pgjobs.conf import conf

if TYPE_CHECKING:
    from django_pgjobs.jobs.registry import JobHandler
    from django_pgjobs.queries import ClaimedJob

# The class path recorded for an attempt that ran past its timeout (never raised: it names the
# failure in the job's history and a task's ``TaskError.exception_class``).
TIMEOUT_EXCEPTION = "django_pgjobs.exceptions.JobTimeout"

Source = Literal["job", "handler", "queue", "setting"]

_WHERE: dict[Source, str] = {
    "job": "the job's timeout",
    "handler": "its handler's timeout",
    "queue": "its queue's timeout",
    "setting": 'PGJOBS["TIMEOUT"]',
}


@dataclass(frozen=True)
class AttemptTimeout:
    seconds: float
    source: Source  # where it was set, for the error text and the log

    def describe(self) -> str:
        return f"{self.seconds:g}s ({_WHERE[self.source]})"


def resolve_timeout(
    *,
    job: float | None,
    handler: float | None,
    queue: float | None,
    setting: float | None,
) -> AttemptTimeout | None:
    """The attempt's timeout: job > handler > queue > setting; None if none is set."""
    candidates: tuple[tuple[float | None, Source], ...] = (
        (job, "job"),
        (handler, "handler"),
        (queue, "queue"),
        (setting, "setting"),
    )
    for seconds, source in candidates:
        if seconds is not None:
            return _timeout(float(seconds), source)
    return None


@functools.lru_cache(maxsize=256)
def _timeout(seconds: float, source: Source) -> AttemptTimeout:
    # Every attempt of a drain asks (the setting's hour, most of the time): one frozen object
    # for each (seconds, source) rather than one per job.
    return AttemptTimeout(seconds, source)


def attempt_timeout(
    job: ClaimedJob, handler: JobHandler | None, *, setting: float | EllipsisType | None = ...
) -> AttemptTimeout | None:
    """The timeout of a claimed attempt run by ``handler`` (None: no handler is registered).
    ``setting``: ``PGJOBS["TIMEOUT"]`` if the caller has read it already (the worker reads it
    once per claim: a settings look-up per job was 1.5% of a drain's samples), else read here."""
    return resolve_timeout(
        job=job.timeout,
        handler=None if handler is None else handler.timeout,
        queue=job.queue_timeout,
        setting=conf.TIMEOUT if setting is ... else setting,
    )


def timeout_error(timeout: AttemptTimeout, *, hard: bool) -> str:
    """The error stored for an attempt that ran past ``timeout``: ``hard`` when its process was
    killed, else its thread was left to finish on its own, its outcome to be discarded."""
    fate = (
        "its process was killed" if hard else "its thread was abandoned and its outcome discarded"
    )
    return f"JobTimeout: the attempt ran longer than its timeout of {timeout.describe()}; {fate}."
