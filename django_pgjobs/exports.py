"""Public names loaded on first use (PEP 562), so a package can name its API in one table.

Django imports ``django_pgjobs`` to find the app config, and the models import
``django_pgjobs.jobs.validation``, while the app registry is still loading; most public functions
live in modules that import the models. So a package lists its public names in one table
(name -> defining module) and imports each module only when one of its names is first asked for.
The same names are imported under ``TYPE_CHECKING`` for type checkers; a test checks that the two
agree.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``, resolving the names in ``table``."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    return __getattr__
