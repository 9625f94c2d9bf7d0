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
from django_pgjobs.worker.stats import WorkerStats


class Dispatch(Protocol):
    """What hands a claim's jobs to threads (Slots.dispatch), calling ``taken`` once they are
    the worker's: a claim whose dispatch raised before that is given back. ``sent_at``: when
    the claim was sent (monotonic), from which their leases count."""

    def __call__(
        self, jobs: list[queries.ClaimedJob], *, sent_at: float, taken: Callable[[], object]
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
        stats: WorkerStats,
    ) -> None:
        self.worker_id = worker_id
        self.queues = queues
        self._link = link
        self._completer = completer
        self._pacing = pacing
        self._stats = stats  # its count of jobs claimed: each claim's, once they are handed out
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
        more: Callable[[int], int] | None = None,
    ) -> list[queries.ClaimedJob]:
        """Claim up to ``limit`` jobs, the first ``start_now`` of them to start at once (the
        rest are claimed ahead: their attempt counts once they start), and hand them to
        ``then`` (the dispatch) while the completions sent behind the claim are written
        (Completer.claim). A short claim leaves :meth:`look_ahead` to do: the jobs are in their
        threads' hands first.

        With ``more``, a claim that came back full sends the next one behind those completions
        (queries.claim_behind), its jobs all claimed ahead: the server claims while this claim's
        jobs are made and handed out, and so on while claims come back full. ``more(taken)``
        says how many jobs the next claim may take, ``taken`` jobs being about to be handed out
        (0: send none). Returns the jobs of every claim it made."""
        sent_at = time.monotonic()
        self.start_lag.first_claim(conn)
        claim: dict[str, Any] = {
            "worker_id": self.worker_id,
            "lease_seconds": conf.LEASE_SECONDS,
            "ahead_lease_seconds": ahead_lease(),
            "queues": self.queues,
            "job_names": registry.names(),
            "start_margin": self.start_lag.margin(),
        }
        asked = limit

        def follow(taken: int) -> dict[str, Any] | None:
            nonlocal asked
            size = 0 if more is None or taken < asked or self._flow.restricted else more(taken)
            if size <= 0:
                return None
            asked = size
            return {
                **claim,
                "limit": size,
                "start_now": 0,
                "lease_token": self._link.expect_claim(),
                "hint": self._flow,
            }

        with self._link.claim_token() as lease_token:
            # Once the jobs are the worker's, an error gives none of them back.
            received = functools.partial(self._link.received, lease_token)
            jobs = self._completer.claim(
                conn,
                then=lambda jobs: self._hand_out(then, jobs, sent_at=sent_at, taken=received),
                follow=follow,
                **claim,
                limit=limit,
                lease_token=lease_token,
                start_now=start_now,
                hint=self._flow,
            )
        everything, followed = list(jobs), False
        while (following := self._completer.following) is not None:
            jobs, followed = self._take_following(conn, following, then=then, follow=follow), True
            everything.extend(jobs)
        if followed and not jobs and self._flow.restricted:
            # The claim behind found flow control, and took nothing for it: the next claim runs
            # the flow-controlled statement at once, as claim_jobs would have.
            self._pacing.maybe_work, self._short = True, False
        else:
            self._short = self._pacing.claimed(asked=asked, got=len(jobs))
        return everything

    def _take_following(
        self,
        conn: psycopg.Connection[Any],
        following: queries.ClaimBehind,
        *,
        then: Dispatch,
        follow: Callable[[int], dict[str, Any] | None],
    ) -> list[queries.ClaimedJob]:
        """The jobs of a claim sent behind the completions, handed to ``then``. Its lease token
        is forgotten once they are the worker's, or once the server refused the claim on a
        connection that still works (nothing committed); else what it took is given back."""
        token = following.lease_token
        received = functools.partial(self._link.received, token)
        with self._link.awaiting(token):
            return self._completer.claim_following(
                conn,
                following,
                then=lambda jobs: self._hand_out(
                    then, jobs, sent_at=following.sent, taken=received
                ),
                follow=follow,
            )

    def _hand_out(
        self,
        dispatch: Dispatch,
        jobs: list[queries.ClaimedJob],
        *,
        sent_at: float,
        taken: Callable[[], object],
    ) -> None:
        dispatch(jobs, sent_at=sent_at, taken=taken)
        self._stats.claimed += len(jobs)

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
