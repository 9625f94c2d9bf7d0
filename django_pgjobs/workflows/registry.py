"""Workflow name -> definition, and the names a workflow's job goes by. A leaf: the steps and
runtime, the API and the admin find definitions here without importing each other."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django_pgjobs.exceptions import HandlerAlreadyRegistered
from django_pgjobs.jobs.registry import qualname, same_function
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX

if TYPE_CHECKING:
    from django_pgjobs.workflows.definitions import WorkflowDefinition

# A workflow runs as the job ``pgjobs.workflow:<app version>`` keyed ``workflow:<id>``; the
# names are reserved for it.
JOB_PREFIX = WORKFLOW_JOB_PREFIX


class WorkflowRegistry:
    def __init__(self) -> None:
        self._workflows: dict[str, WorkflowDefinition] = {}
        self._lock = threading.Lock()

    def add(self, definition: WorkflowDefinition) -> WorkflowDefinition:
        with self._lock:
            existing = self._workflows.get(definition.name)
            if existing is not None and not same_function(existing.func, definition.func):
                raise HandlerAlreadyRegistered(
                    f"Workflow name {definition.name!r} is already registered to "
                    f"{qualname(existing.func)}; cannot register {qualname(definition.func)}."
                )
            self._workflows[definition.name] = definition
        return definition

    def get(self, name: str) -> WorkflowDefinition | None:
        return self._workflows.get(name)

    def all(self) -> list[WorkflowDefinition]:
        return [self._workflows[name] for name in sorted(self._workflows)]


workflows = WorkflowRegistry()
