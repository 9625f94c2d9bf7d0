"""The Django admin as an operations console for jobs, dead letters, queues, schedules,
workers and workflows.

Every action calls the same library function as the CLI (``retry_job``, ``cancel_job``,
``retry_dead_letter_job``, ``run_schedule_now``, ``cancel_workflow``, ``resume_workflow``,
``fork_workflow``, ``pause_queue``, ``resume_queue``, ``set_queue_limits``,
``reset_queue_limits``) and needs the model's change permission: a view-only staff user sees
everything and can change nothing.
"""

from __future__ import annotations

# Importing the modules registers their ModelAdmins (Django imports this package as the app's
# admin module).
from django_pgjobs.admin import dashboard, jobs, queues, schedules, workers, workflows

__all__ = ["dashboard", "jobs", "queues", "schedules", "workers", "workflows"]
