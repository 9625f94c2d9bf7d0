"""``manage.py pgjobs_workflows <list|show|cancel|resume|fork>``: thin wrappers over the API.

Output follows ``pgjobs``'s rules: stored text escaped, times in ``TIME_ZONE`` with the offset.
``show`` takes a workflow's id or the start of it, when exactly one id starts so (an id that
exists as given is always that workflow). The actions that change a workflow take its whole id:
its ids are the application's (``order-1``), and a prefix would cancel ``order-10`` for a typo;
an id no workflow has is answered with those that start with it.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from django_pgjobs import workflows
from django_pgjobs.database import command_database, queue_database
from django_pgjobs.exceptions import InvalidJobError, PgJobsError, WorkflowNotFound
from django_pgjobs.jobs import validation
from django_pgjobs.management.output import aligned, reader_may_leave
from django_pgjobs.models import WorkflowStatus
from django_pgjobs.observability.display import local_time, printable
from django_pgjobs.observability.workflow_states import (
    described_wait,
    run_in_flight,
    unrun_version,
)
from django_pgjobs.queries import workflow_reads as reads
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.workflows.definitions import app_version

# How much of a stored value (input, output, a step's output) ``show`` prints without --full,
# as the admin's workflow page cuts them.
SHOWN_CHARS = 2_000
# A workflow waiting in one of these may still be woken; one in these waits on when resumed.
_LIVE = ("pending", "running")
_RESUMABLE = ("cancelled", "dead")
# How many ids starting with an unknown one the error names.
_HINTED = 3


class Command(BaseCommand):
    help = "Inspect and operate durable workflows."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--database", default=None, help="Database alias (default: PGJOBS['DATABASE'])."
        )
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = sub.add_parser("list", help="Recent workflows, newest first.")
        listing.add_argument("--status", choices=WorkflowStatus.values, default=None)
        listing.add_argument("--name", default=None)
        listing.add_argument("--limit", type=int, default=50)
        show = sub.add_parser("show", help="One workflow with its inputs, result and steps.")
        show.add_argument("workflow_id")
        show.add_argument(
            "--full",
            action="store_true",
            help=f"Print stored values whole (otherwise cut at {SHOWN_CHARS:,} characters).",
        )
        cancel = sub.add_parser(
            "cancel", help="Cancel a workflow (a running one at its next step)."
        )
        cancel.add_argument("workflow_id")
        resume = sub.add_parser("resume", help="Run a cancelled or dead workflow again.")
        resume.add_argument("workflow_id")
        version = resume.add_mutually_exclusive_group()
        version.add_argument("--app-version", default=None, help="Re-pin to this code version.")
        version.add_argument(
            "--deployed",
            action="store_true",
            help=f"Re-pin to the code version of this deployment ({app_version()}).",
        )
        fork = sub.add_parser("fork", help="Start a copy reusing checkpoints before a step.")
        fork.add_argument("workflow_id")
        fork.add_argument(
            "--from-step",
            type=int,
            default=0,
            help="The first step to run again (default 0: all); at most the step after the last "
            "recorded one.",
        )
        fork.add_argument(
            "--new-id", default=None, help="The new workflow's id (default: a random UUID)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            command_database(options["database"])
            if options.get("workflow_id") is not None:  # before any query asks about it
                validation.check_sendable(options["workflow_id"], "workflow id")
            if options["action"] == "show":
                options["workflow_id"] = self.named(options["workflow_id"], options["database"])
            with reader_may_leave(self.stdout._out):
                getattr(self, f"do_{options['action']}")(options)
        except WorkflowNotFound as exc:
            given = options.get("workflow_id") or ""
            hint = self.starting(given, options["database"])
            raise CommandError(printable(f"{exc}{hint}")) from exc
        except PgJobsError as exc:
            raise CommandError(printable(exc)) from exc

    def starting(self, given: str, database: str | None) -> str:
        """The ids that start with ``given``, as a hint after "no workflow has the id"."""
        if not given:
            return ""
        with self.cursor(database) as cur:
            found = reads.ids_starting(cur, given, limit=_HINTED + 1)
        if not found:
            return ""
        more = ", ..." if len(found) > _HINTED else ""
        return f" Ids that start so: {', '.join(found[:_HINTED])}{more}."

    def named(self, given: str, database: str | None) -> str:
        """The workflow id ``given`` names: itself if a workflow has it, else the one id that
        starts with it; as given when none does (the action says it is not found)."""
        with self.cursor(database) as cur:
            if reads.status_of(cur, given) is not None:
                return given
            found = reads.ids_starting(cur, given, limit=2) if given else []  # one, or more
        if len(found) > 1:
            raise CommandError(
                printable(
                    f"More than one workflow has an id starting with {given!r} ({found[0]} and "
                    f"{found[1]}, at least): give more of the id."
                )
            )
        return found[0] if found else given

    def cursor(self, database: str | None) -> Any:
        return connections[queue_database(database)].cursor()

    def say(self, line: str) -> None:
        """Write one line of output; stored text in it is shown escaped."""
        self.stdout.write(printable(line))

    def do_list(self, options: dict[str, Any]) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be >= 1.")
        found = workflows.list_workflows(
            status=options["status"],
            name=options["name"],
            limit=options["limit"],
            using=options["database"],
        )
        pending = [info.workflow_id for info in found if info.status == "pending"]
        waits: dict[str, reads.Wait] = {}
        if pending:
            with self.cursor(options["database"]) as cur:
                waits = reads.waits_of(cur, pending)
        rows = [["workflow id", "name", "created", "status"]]
        for info in found:
            wait = waits.get(info.workflow_id)
            status = (
                info.status
                if wait is None
                else described_wait(info.workflow_id, wait.step_name, wait.wait_key, wait.wake_at)
            )
            rows.append([info.workflow_id, info.name, local_time(info.created_at), status])
        for line in aligned(rows):
            self.say(line)

    def do_show(self, options: dict[str, Any]) -> None:
        info = workflows.get_workflow(options["workflow_id"], using=options["database"])
        limit = None if options["full"] else SHOWN_CHARS

        def shown(value: Any) -> str:
            return _cut(json.dumps(value), limit)

        self.say(f"{info.workflow_id}  {info.name}  {info.status}")
        self.say(f"  app version  {info.app_version}   queue {info.queue}")
        self.say(f"  created      {local_time(info.created_at)}{_run_times(info)}")
        if info.parent_workflow_id:
            self.say(f"  parent       {info.parent_workflow_id}")
        if info.forked_from:
            self.say(f"  forked from  {info.forked_from}")
        self.say(f"  input        {shown(info.input)}")  # as stored, whatever SQL wrote
        if info.status == "completed":
            self.say(f"  output       {shown(info.output)}")
        if info.error is not None:
            self.say(f"  error        {_cut(_failure(info.error), limit)}")
            self.say_traceback(info.error, limit, indent=15)
        steps = workflows.list_workflow_steps(info.workflow_id, using=options["database"])
        in_flight = None
        if info.status == "cancelled":
            last = steps[-1] if steps and steps[-1].status == "waiting" else None
            wait = None if last is None else _wait(info, last, limit)
            with self.cursor(options["database"]) as cur:
                in_flight = run_in_flight(cur, info.workflow_id, wait)
            if in_flight is not None:
                self.say(f"  in flight    {in_flight}")
        if not steps:
            return
        rows = [["  step", "name", "status", "recorded", "output, error or wait"]]
        for step in steps:
            rows.append(
                [f"  {step.index:>4}", step.name, step.status, _recorded(step),
                 _step_detail(info, step, limit, in_flight=in_flight is not None)]
            )  # fmt: skip
        header, *lines = aligned(rows)
        self.say(header)
        for line, step in zip(lines, steps, strict=True):
            self.say(line)
            if step.error is not None:
                self.say_traceback(step.error, limit, indent=8)

    def say_traceback(self, error: Any, limit: int | None, *, indent: int) -> None:
        """A recorded error's traceback, a line each, under its error (cut as values are)."""
        traceback = error.get("traceback") if isinstance(error, dict) else None
        if not traceback or not isinstance(traceback, str):
            return
        # Split at newlines only: printable() escapes every other control character.
        for line in _cut(traceback.rstrip("\n"), limit).split("\n"):
            self.say(f"{'':<{indent}}{line}".rstrip())

    def do_cancel(self, options: dict[str, Any]) -> None:
        workflow_id = options["workflow_id"]
        before = workflows.get_workflow(workflow_id, using=options["database"]).status
        workflows.cancel_workflow(workflow_id, using=options["database"])
        if before == "cancelled":
            self.say(f"Workflow {workflow_id} was already cancelled.")
        else:
            self.say(f"Cancelled workflow {workflow_id}.")

    def do_resume(self, options: dict[str, Any]) -> None:
        version = app_version() if options["deployed"] else options["app_version"]
        workflows.resume_workflow(
            options["workflow_id"], app_version=version, using=options["database"]
        )
        self.say(f"Resumed workflow {options['workflow_id']}.")
        with self.cursor(options["database"]) as cur:
            unrun = unrun_version(cur, options["workflow_id"])
        if unrun is not None:
            # Resumed all the same: the operator may be about to deploy that version.
            self.stderr.write(printable(f"Warning: {unrun}"), self.style.WARNING)

    def do_fork(self, options: dict[str, Any]) -> None:
        if options["from_step"] < 0:
            raise CommandError("--from-step must be >= 0.")
        try:
            handle = workflows.fork_workflow(
                options["workflow_id"],
                options["from_step"],
                new_workflow_id=options["new_id"],
                using=options["database"],
            )
        except InvalidJobError as exc:
            # Said in the command's own words: its option, not the function's argument.
            raise CommandError(printable(str(exc).replace("from_step", "--from-step"))) from exc
        self.say(f"Forked workflow {options['workflow_id']} as {handle.workflow_id}.")


def _run_times(info: workflows.WorkflowInfo) -> str:
    started = "" if info.started_at is None else f"   started {local_time(info.started_at)}"
    ended = "" if info.completed_at is None else f"   ended {local_time(info.completed_at)}"
    return started + ended


def _recorded(step: workflows.StepInfo) -> str:
    """When the step's row was written: its checkpoint (the database's clock, as of the
    transaction that wrote it), or for a wait in progress its start (the worker's clock)."""
    when = step.started_at if step.status == "waiting" else step.completed_at
    return "-" if when is None else local_time(when)


def _wait(info: workflows.WorkflowInfo, step: workflows.StepInfo, limit: int | None) -> str:
    return described_wait(
        info.workflow_id, step.name, step.wait_key, step.wake_at, whole=limit is None
    )


def _step_detail(
    info: workflows.WorkflowInfo, step: workflows.StepInfo, limit: int | None, *, in_flight: bool
) -> str:
    if step.status == "waiting":
        wait = _wait(info, step, limit)
        if in_flight:  # a cancelled run still in it (the in flight line says so)
            detail = wait
        elif info.status in _RESUMABLE:
            detail = f"stopped: the workflow is {info.status} (resumed, it goes on {wait})"
        elif info.status not in _LIVE:
            detail = f"never ended: the workflow {info.status} ({wait})"
        else:
            detail = wait
    elif step.error is not None:
        detail = _cut(_failure(step.error), limit)
    else:
        detail = _cut(json.dumps(step.output), limit)
    if step.attempts > 1:
        detail += f" (after {step.attempts} attempts)"
    # Only a step whose checkpoint time is after the cancel: a transaction_step's is when its
    # transaction began, which may be before the cancel it ran past, so that one goes unmarked.
    cancelled_at = info.completed_at if info.status == "cancelled" else None
    if cancelled_at and step.completed_at and step.completed_at > cancelled_at:
        detail += " (recorded after the cancel: a step in flight is not interrupted)"
    return detail


def _failure(error: object) -> str:
    """A recorded error as ``class: message``. A row written by SQL may hold any JSON there, or
    JSON Python cannot decode: that is shown as stored (the stand-in's text says why)."""
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('message')}"
    return str(error) if isinstance(error, UndecodableJSON) else json.dumps(error)


def _cut(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters in all; --full prints them)"
