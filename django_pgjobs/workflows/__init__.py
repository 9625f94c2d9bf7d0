"""Durable workflows: definitions and their registry, the context and steps that replay
checkpoints, the runtime that runs a workflow's job, durable waits, the API to start and operate
workflows, handles, and JSON in and out of the tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_pgjobs.exports import lazy_exports

_EXPORTS = {
    "workflow": "django_pgjobs.workflows.definitions",
    "step": "django_pgjobs.workflows.definitions",
    "transaction_step": "django_pgjobs.workflows.definitions",
    "app_version": "django_pgjobs.workflows.definitions",
    "WorkflowDefinition": "django_pgjobs.workflows.definitions",
    "StepDefinition": "django_pgjobs.workflows.definitions",
    "start_workflow": "django_pgjobs.workflows.api",
    "run_workflow": "django_pgjobs.workflows.api",
    "list_workflows": "django_pgjobs.workflows.api",
    "list_workflow_steps": "django_pgjobs.workflows.api",
    "cancel_workflow": "django_pgjobs.workflows.control",
    "resume_workflow": "django_pgjobs.workflows.control",
    "fork_workflow": "django_pgjobs.workflows.control",
    "send": "django_pgjobs.workflows.api",
    "set_event": "django_pgjobs.workflows.api",
    "get_event": "django_pgjobs.workflows.api",
    "current_workflow_id": "django_pgjobs.workflows.api",
    "recv": "django_pgjobs.workflows.waits",
    "sleep": "django_pgjobs.workflows.waits",
    "get_workflow": "django_pgjobs.workflows.handles",
    "WorkflowHandle": "django_pgjobs.workflows.handles",
    "WorkflowInfo": "django_pgjobs.workflows.handles",
    "StepInfo": "django_pgjobs.workflows.handles",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from django_pgjobs.workflows.api import current_workflow_id as current_workflow_id
    from django_pgjobs.workflows.api import get_event as get_event
    from django_pgjobs.workflows.api import list_workflow_steps as list_workflow_steps
    from django_pgjobs.workflows.api import list_workflows as list_workflows
    from django_pgjobs.workflows.api import run_workflow as run_workflow
    from django_pgjobs.workflows.api import send as send
    from django_pgjobs.workflows.api import set_event as set_event
    from django_pgjobs.workflows.api import start_workflow as start_workflow
    from django_pgjobs.workflows.control import cancel_workflow as cancel_workflow
    from django_pgjobs.workflows.control import fork_workflow as fork_workflow
    from django_pgjobs.workflows.control import resume_workflow as resume_workflow
    from django_pgjobs.workflows.definitions import StepDefinition as StepDefinition
    from django_pgjobs.workflows.definitions import WorkflowDefinition as WorkflowDefinition
    from django_pgjobs.workflows.definitions import app_version as app_version
    from django_pgjobs.workflows.definitions import step as step
    from django_pgjobs.workflows.definitions import transaction_step as transaction_step
    from django_pgjobs.workflows.definitions import workflow as workflow
    from django_pgjobs.workflows.handles import StepInfo as StepInfo
    from django_pgjobs.workflows.handles import WorkflowHandle as WorkflowHandle
    from django_pgjobs.workflows.handles import WorkflowInfo as WorkflowInfo
    from django_pgjobs.workflows.handles import get_workflow as get_workflow
    from django_pgjobs.workflows.waits import recv as recv
    from django_pgjobs.workflows.waits import sleep as sleep
