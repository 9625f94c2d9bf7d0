"""Job ids: UUIDs of version 7 (RFC 9562), ordered by when they were made.

A job's id breaks ties in the claim's order (priority, then due time, then id) and keys its row
in ``pgjobs_job_queue_pkey``, which takes a new entry at every change of the job's state. Random
ids (version 4) made the jobs of one batch, due at the same time, run in random order, and sent
each claim's and completion's batch to as many scattered pages of the table and its key as it
had jobs; ids that grow with time make those batches neighbours: a drain of 50,000 jobs enqueued
together ran 25% faster with one worker process and with two (benchmarks/README.md). The
database makes the same kind of id for rows inserted without one (``pgjobs_uuid7()``, migration
0030), so a plain ``INSERT`` takes its place in the same order.

Made here rather than by ``uuid.uuid7()``, which Python has only from 3.14. Its 48 bits of Unix
time in milliseconds are followed by 12 bits of the millisecond's fraction (RFC 9562, method 3),
and within one process each id is greater than the one before, even when the clock steps back;
62 random bits follow. An id tells when its job was enqueued, to the millisecond.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from datetime import datetime

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RANDOM_B = (1 << 62) - 1

_lock = threading.Lock()
# The last timestamp handed out by this process: milliseconds << 12 | the fraction's 12 bits.
_last = 0


def _new_lock_after_fork() -> None:
    """A child forked while another thread held the lock (a worker's child process, say) would
    wait for it for ever: the child gets a lock of its own (its ids go on from the parent's)."""
    global _lock  # the child's only thread replaces it before anything runs
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def _stamp() -> int:
    """A timestamp greater than the one before: milliseconds, then 1/4096ths of one."""
    global _last  # the process's one clock of ids
    ns = time.time_ns()
    now = (ns // 1_000_000) << 12 | (ns % 1_000_000) * 4096 // 1_000_000
    with _lock:
        _last = max(now, _last + 1)
        return _last


def new_job_id() -> uuid.UUID:
    """A new job id: later than every id this process made before it."""
    stamp = _stamp()
    random_b = int.from_bytes(os.urandom(8), "big") & _RANDOM_B
    return uuid.UUID(
        int=(stamp >> 12) << 80 | _VERSION | (stamp & 0xFFF) << 64 | _VARIANT | random_b
    )


def new_job_ids(count: int) -> list[uuid.UUID]:
    """``count`` new job ids, in increasing order (a batch's jobs run in the order given)."""
    return [new_job_id() for _ in range(count)]


def earliest_id(at: datetime) -> uuid.UUID:
    """The smallest id made at ``at`` or later (its millisecond, then zeros): the lower bound of
    a range of the key that holds the jobs enqueued since then. An id that is not time-ordered
    (made before migration 0030, or given by an SQL producer) falls in it or not by chance: a
    random one's first 48 bits are mostly above any time of ours (99.4% of them)."""
    ms = math.floor(at.timestamp() * 1000)
    return uuid.UUID(int=max(ms, 0) << 80 | _VERSION | _VARIANT)
