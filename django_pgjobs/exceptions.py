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
