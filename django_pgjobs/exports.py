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
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, table: Mapping[str, str], *, elsewhere: Sequence[str] = ()
) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``, resolving the names in ``table``. A name that
    one of the ``elsewhere`` modules exports gets an error saying where to import it from."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(_missing(package, name, elsewhere), name=name, obj=package)
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    return __getattr__


def _missing(package: str, name: str, elsewhere: Sequence[str]) -> str:
    message = f"module {package!r} has no attribute {name!r}"
    for candidate in elsewhere:
        module = importlib.import_module(candidate)
        exported = getattr(module, "__all__", None)
        if exported is None:
            exported = [
                n for n, v in vars(module).items() if getattr(v, "__module__", "") == candidate
            ]
        if name in exported:
            return f"{message}; import it from {candidate}: `from {candidate} import {name}`"
    return message
