"""What the loop claims, and what a claim tells it about when to claim next.

A claim asks for the free threads plus the prefetch (:mod:`.pacing` says how many) and carries
the completions waiting for their batched write (:class:`~.completer.Completer`). A claim that
came back short also says when more is due: the next due time, or, when due jobs are held back
by a rate limit, when its window has room.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg

from django_pgjobs import queries
from django_pgjobs.conf import conf
from django_pgjobs.jobs.registry import registry
from django_pgjobs.worker.ahead import ahead_lease
from django_pgjobs.worker.completer import Completer
from django_pgjobs.worker.connection import LoopConnection
from django_pgjobs.worker.pacing import Pacing
from django_pgjobs.worker.start_lag import StartLag


class Dispatch(Protocol):
    """What hands a claim's jobs to threads (Slots.dispatch), calling ``taken`` once they are
    the worker's: a claim whose dispatch raised before that is given back."""

    def __call__(
        self, jobs: list[queries.ClaimedJob], *, taken: Callable[[], object]
    ) -> object: ...


class Claims:
    def __init__(
        self,
        *,
        worker_id: str,
        queues: Sequence[str],
        link: LoopConnection,
        completer: Completer,
        pacing: Pacing,
    ) -> None:
        self.worker_id = worker_id
        self.queues = queues
        self._link = link
        self._completer = completer
        self._pacing = pacing
        # Whether the worker's queues had flow control at the last claim (which statement to use).
        self._flow = queries.FlowHint()
        # How late its rate-limited handlers begin: the ledger's margin (queries.rate_starts).
        self.start_lag = StartLag()
        # The last claim came back short: look_ahead() has a question to ask.
        self._short = False

    @property
    def restricted(self) -> bool:
        """Flow control applied at the last claim: a claim stops at a queue's room, not at its
        end, so an attempt that ends may be the room the next one needs."""
        return self._flow.restricted

    def take(
        self,
        conn: psycopg.Connection[Any],
        *,
        limit: int,
        start_now: int,
        then: Dispatch,
    ) -> list[queries.ClaimedJob]:
        """Claim up to ``limit`` jobs, the first ``start_now`` of them to start at once (the
        rest are claimed ahead: their attempt counts once they start), and hand them to
        ``then`` (the dispatch) while the completions sent behind the claim are written
        (Completer.claim). A short claim leaves :meth:`look_ahead` to do: the jobs are in their
        threads' hands first."""
        self.start_lag.first_claim(conn)
        with self._link.claim_token() as lease_token:
            # Once the jobs are the worker's, an error gives none of them back.
            received = functools.partial(self._link.received, lease_token)
            jobs = self._completer.claim(
                conn,
                then=lambda jobs: then(jobs, taken=received),
                worker_id=self.worker_id,
                limit=limit,
                lease_seconds=conf.LEASE_SECONDS,
                ahead_lease_seconds=ahead_lease(),
                queues=self.queues,
                job_names=registry.names(),
                lease_token=lease_token,
                start_now=start_now,
                hint=self._flow,
                start_margin=self.start_lag.margin(),
            )
        self._short = self._pacing.claimed(asked=limit, got=len(jobs))
        return jobs

    def look_ahead(self, conn: psycopg.Connection[Any]) -> None:
        """After a short claim: when is more due (or, for due jobs a rate limit holds back,
        when does its window have room)? Asked once the claimed jobs are in their threads' hands:
        a round trip before that was the last job's wait for its start (0.7 ms of an idle
        worker's 3.4 ms from commit to start, measured), and an error here loses nothing."""
        if not self._short:
            return
        self._short = False
        seconds = queries.seconds_until_next_due(
            conn.cursor(), queues=self.queues, job_names=registry.names()
        )
        room_in = None
        if seconds == 0:  # due now, yet not claimed: perhaps a rate limit holds it back
            room_in = queries.seconds_until_rate_room(conn.cursor(), queues=self.queues)
        self._pacing.due_in(seconds, now=time.monotonic(), room_in=room_in)
