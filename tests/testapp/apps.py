from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Worker subprocesses started with this variable record each task_finished they send,
        # with the sending process's pid (a process-pool test checks where it is sent from).
        if os.environ.get("PGJOBS_TEST_RECORD_FINISHED"):
            from django_pgjobs.tasks.framework import signals

            signals.task_finished.connect(_record_finished, dispatch_uid="testapp.finished")


def _record_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    from tests.testapp.models import Run

    label = f"finished:{task_result.status}:{os.getpid()}"
    Run.objects.create(job_id=task_result.id, label=label[:100])
