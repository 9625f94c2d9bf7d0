"""Django's Tasks framework on django-pgjobs: ``@task`` functions run as ordinary jobs.

The backend is :class:`django_pgjobs.backend.PgJobsBackend` (``TASKS["default"]["BACKEND"]``).
This package holds what it is made of: which framework is in use (:mod:`.framework`), the task,
result and context classes (:mod:`.definitions`), reading a task's state from its job
(:mod:`.results`), and running one in the worker (:mod:`.runner`). Nothing here touches the
database or the models at import time.
"""
