"""Every error django-pgjobs raises derives from :class:`PgJobsError`.

The input errors also derive from the builtin a caller would naturally catch (``ValueError``,
``TypeError``, ``LookupError``), so generic handling keeps working.
"""

from __future__ import annotations


class PgJobsError(Exception):
    """Base class of every django-pgjobs error."""


class InvalidJobError(PgJobsError, ValueError):
    """An argument to ``enqueue`` (or a handler option) is out of range or malformed.

    Raised before anything is written, so a caller's transaction is still usable.
    """


class PayloadNotSerializable(PgJobsError, TypeError):
    """A payload cannot be stored as JSON exactly as given."""


class JobNotFound(PgJobsError, LookupError):
    """No job (or dead letter) has the given id.

    ``dead_lettered`` is True when the id is not in the queue because it is in the dead letters.
    """

    def __init__(self, message: str, *, dead_lettered: bool = False) -> None:
        super().__init__(message)
        self.dead_lettered = dead_lettered


class JobStateError(PgJobsError):
    """The job exists but is in a state the operation does not apply to."""


class HandlerAlreadyRegistered(PgJobsError):
    """Two different functions were registered under one job name."""


class WorkflowError(PgJobsError):
    """Base class of the workflow errors."""


class WorkflowNotFound(WorkflowError, LookupError):
    """No workflow has the given id."""


class WorkflowConflict(WorkflowError, ValueError):
    """A workflow id is already taken by a different workflow."""


class WorkflowStateError(WorkflowError):
    """The workflow is in a state the operation does not apply to."""


class WorkflowNonDeterminism(WorkflowError):
    """A re-executed workflow called a different step than the one recorded at that position:
    its code changed, or it branches on something other than its inputs and step results."""


class WorkflowSerializationError(PayloadNotSerializable):
    """A workflow's or step's input or output cannot be stored as JSON."""


class WorkflowCancelled(WorkflowError):
    """The workflow was cancelled (raised by ``get_result``)."""


class WorkflowDead(WorkflowError):
    """The workflow kept crashing its worker and was moved to the dead letters."""


class WorkflowTimeout(WorkflowError, TimeoutError):
    """A wait for a workflow's result ran out of time."""


class RecordedError(WorkflowError):
    """A recorded error whose exception class cannot be rebuilt in this process.

    ``type_name`` is the original class's dotted path, ``traceback`` the recorded traceback.
    """

    def __init__(self, type_name: str, message: str, traceback: str | None = None) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.traceback = traceback


class WorkflowFailed(RecordedError):
    """The workflow failed with a ``BaseException`` that is not an ``Exception`` (``SystemExit``
    from argparse in a step, ``KeyboardInterrupt``): ``get_result()`` and ``run_workflow()``
    raise this in its place, because a caller's ``except Exception`` (and Django's request
    handling) would not catch the original. ``type_name`` is its dotted path."""

    def __init__(self, type_name: str, message: str, traceback: str | None = None) -> None:
        super().__init__(type_name, message, traceback)
        self.args = (f"The workflow failed with {type_name}: {message}",)


class NotInWorkflow(WorkflowError, RuntimeError):
    """A workflow-only function (recv, set_event, ...) was called outside a workflow."""


class WorkerIdInUse(PgJobsError):
    """A worker was started under the id of a worker that is still alive (``--worker-id``)."""


class PayloadNotDecodable(PgJobsError, ValueError):
    """A stored payload (or workflow input, or step checkpoint) is JSON PostgreSQL accepted but
    Python's ``json`` cannot decode: a number past Python's int digit limit (``1e5000``), or
    nesting deeper than its recursion limit. Recorded as the failure of the job (dead-lettered at
    once: no retry can succeed) or of the workflow; raised to a caller who asks for the value
    (``get_result()``, ``get_event()``), never handed out as if it were the value."""


class LeaseExpired(PgJobsError):
    """What a job's failure history records for an attempt whose worker stopped renewing its
    lease (it died, froze or lost the database) and was rescued. Never raised: it names the
    failure (a task's ``TaskError.exception_class``)."""


class ResultNotStorable(PgJobsError, TypeError):
    """A handler that keeps its return value (a Django task) returned something that cannot be
    stored as JSON; the attempt fails with this error, which says why."""


class WorkerShutdown(PgJobsError):
    """What a job's failure history records for an attempt still running when its worker's
    shutdown grace period ended (the job was handed back, due at once). Never raised."""


class JobTimeout(PgJobsError):
    """What a job's failure history records for an attempt that ran past its timeout (the job's,
    its handler's, its queue's or ``PGJOBS["TIMEOUT"]``): it was failed, retried or
    dead-lettered as usual, and its handler's thread abandoned or its process killed. Never
    raised."""
