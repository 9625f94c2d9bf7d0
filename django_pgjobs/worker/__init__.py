"""The worker: a loop that claims, hands jobs to a pool of handler threads, and has the completer
write their outcomes; its pacing, background duties, wake-ups, and what it does as a process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_pgjobs.exports import lazy_exports

_EXPORTS = {
    "Worker": "django_pgjobs.worker.loop",
    "WorkerStats": "django_pgjobs.worker.stats",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from django_pgjobs.worker.loop import Worker as Worker
    from django_pgjobs.worker.stats import WorkerStats as WorkerStats
