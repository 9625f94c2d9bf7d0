"""Queues with flow control: their settings (``PGJOBS["QUEUES"]``), their validation, and the
operator's controls (pause, resume, limits). The claim that obeys them is queries.flow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_pgjobs.exports import lazy_exports

_EXPORTS = {
    "pause_queue": "django_pgjobs.queues.control",
    "resume_queue": "django_pgjobs.queues.control",
    "set_queue_limits": "django_pgjobs.queues.control",
    "reset_queue_limits": "django_pgjobs.queues.control",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from django_pgjobs.queues.control import pause_queue as pause_queue
    from django_pgjobs.queues.control import reset_queue_limits as reset_queue_limits
    from django_pgjobs.queues.control import resume_queue as resume_queue
    from django_pgjobs.queues.control import set_queue_limits as set_queue_limits
