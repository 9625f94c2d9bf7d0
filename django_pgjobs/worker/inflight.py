"""What the worker knows of each attempt it holds, from claim to written outcome."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django_pgjobs import queries
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.worker.pool import Task

logger = logging.getLogger("django_pgjobs.worker")


@dataclass
class InFlight:
    job: queries.ClaimedJob
    handler: JobHandler | None
    started_at: float
    task: Task | None = None
    started: bool = False  # set by the handler thread as it begins
    began: float = 0.0  # when it began (monotonic), set with ``started``
    reported: bool = False  # its outcome was handed to the completer
    lost_logged: bool = False  # the heartbeat found it no longer ours, and said so


def warn_no_longer_ours(held: Iterable[InFlight], lost: Iterable[uuid.UUID]) -> None:
    """Say once per attempt that the heartbeat found it taken (rescued or cancelled), and only
    while its handler runs: a finished one's outcome is being written, and the completer says
    what became of it. (Every heartbeat finds it again until the handler ends.)"""
    lost_ids = set(lost)
    for entry in held:
        if entry.job.id in lost_ids and not entry.reported and not entry.lost_logged:
            entry.lost_logged = True
            logger.warning("Job %s is no longer ours (rescued or cancelled)", entry.job.id)
