"""The Tasks framework actually in use: Django's own ``django.tasks`` (Django 6) or, on Django
5.2, the ``django-tasks`` backport (``django_tasks``).

The two define the same API as different objects: a backport exception is not a
``django.tasks`` exception, and a receiver connected to ``django.tasks.signals.task_finished``
never hears the backport's. Everything of the framework the backend uses is imported from here,
so it raises the exceptions, builds the types and sends the signals its users listen to.
Django's own wins when both are installed. (Typing always follows Django's: the stubs describe
it, and the backport mirrors it.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "NAME",
    "TASK_MAX_PRIORITY",
    "TASK_MIN_PRIORITY",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "signals",
    "task",
    "task_backends",
]

if TYPE_CHECKING:
    from django.tasks import (
        TaskContext,
        TaskResult,
        TaskResultStatus,
        signals,
        task,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, Task, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.utils.json import normalize_json

    NAME: str
else:
    try:
        from django.tasks import (
            TaskContext,
            TaskResult,
            TaskResultStatus,
            signals,
            task,
            task_backends,
        )
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, Task, TaskError
        from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
        from django.utils.json import normalize_json

        NAME = "django.tasks"
    except ImportError:
        try:
            from django_tasks import (
                TaskContext,
                TaskResult,
                TaskResultStatus,
                signals,
                task,
                task_backends,
            )
            from django_tasks.backends.base import BaseTaskBackend
            from django_tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, Task, TaskError
            from django_tasks.exceptions import InvalidTaskError as InvalidTask
            from django_tasks.exceptions import TaskResultDoesNotExist
            from django_tasks.utils import normalize_json
        except ImportError as exc:
            raise ImportError(
                "django_pgjobs.backend needs Django's Tasks framework: Django 6 has it "
                "(django.tasks); on Django 5.2 install the backport: "
                "pip install 'django-pgjobs[tasks]' (django-tasks)."
            ) from exc

        NAME = "django_tasks"
