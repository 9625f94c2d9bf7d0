"""The package's shape: a narrow public API from one table per package, no import circles, small
modules. These are what keep the layout readable as code is added."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "django_pgjobs"
EXPORTING = [
    "django_pgjobs",
    "django_pgjobs.jobs",
    "django_pgjobs.queues",
    "django_pgjobs.schedules",
    "django_pgjobs.workflows",
    "django_pgjobs.worker",
    "django_pgjobs.testing",
]
# Import circles kept on purpose, each through imports made when called: a handle with verbs
# (JobHandler.enqueue, WorkflowDefinition.start), as Django's Task.enqueue is. JobHandler.enqueue
# reaches the registry again through the job's options.
ALLOWED_CIRCLES = [
    {"django_pgjobs.jobs.registry", "django_pgjobs.jobs.producer", "django_pgjobs.jobs.options"},
    {"django_pgjobs.workflows.definitions", "django_pgjobs.workflows.api"},
]
MAX_LINES = 425


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, *, when_called: bool) -> set[str]:
    """The django_pgjobs modules ``path`` imports at import time, or (``when_called``) those
    it imports inside functions. Imports for type checkers only are left out."""
    tree = ast.parse(path.read_text())
    known = modules()
    found: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and inner == when_called and child.module:
                for alias in child.names:
                    target = f"{child.module}.{alias.name}"
                    found.add(target if target in known else child.module)
            elif isinstance(child, ast.Import) and inner == when_called:
                found.update(alias.name for alias in child.names)
            visit(child, inner)

    visit(tree, False)
    return {name for name in found if name in known}


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in graph:
        if node not in index:
            connect(node)
    return found


def test_no_import_circle_at_import_time() -> None:
    graph = {name: imports(path, when_called=False) for name, path in modules().items()}
    assert circles(graph) == []


def test_the_only_circles_are_the_documented_handles_with_verbs() -> None:
    graph = {
        name: imports(path, when_called=False) | imports(path, when_called=True)
        for name, path in modules().items()
    }
    # A package __init__ names its exports as strings; importing a module through a package
    # only runs the package's lazy table.
    assert sorted(map(sorted, circles(graph))) == sorted(map(sorted, ALLOWED_CIRCLES))


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small_and_have_no_section_banners(name: str) -> None:
    lines = modules()[name].read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"{name} has {len(lines)} lines: split it by what it owns"
    banners = [line for line in lines if line.strip().startswith("# --")]
    assert not banners, f"{name} has section banners (split the module instead): {banners}"


def test_the_public_api_is_narrow() -> None:
    import django_pgjobs

    # 28 since issue 15: the four outcomes a handler raises and current_attempt() are everyday;
    # explain_job() (issue 16) answers the question every operator asks.
    assert 20 <= len(django_pgjobs.__all__) <= 30


@pytest.mark.parametrize("package", EXPORTING)
def test_every_export_resolves_from_its_one_table(package: str) -> None:
    module = importlib.import_module(package)
    table: dict[str, str] = module._EXPORTS
    assert list(table) == module.__all__
    for name, source in table.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), name), name


@pytest.mark.parametrize("package", EXPORTING)
def test_type_checkers_see_the_same_names_as_the_table(package: str) -> None:
    """Names load lazily, so type checkers read them from a TYPE_CHECKING block: it must say
    exactly what the table says."""
    module = importlib.import_module(package)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    typed = {
        alias.asname or alias.name: node.module
        for block in tree.body
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert typed == module._EXPORTS


def test_the_jobs_package_hands_out_the_enqueue_functions_not_a_module() -> None:
    from django_pgjobs import jobs

    assert jobs.enqueue is importlib.import_module("django_pgjobs.jobs.producer").enqueue
    assert callable(jobs.enqueue_many) and callable(jobs.enqueue_on_commit)


def test_a_name_that_lives_in_a_sub_package_says_where_to_import_it_from() -> None:
    import django_pgjobs

    with pytest.raises(AttributeError, match=re.escape("from django_pgjobs.jobs import list_jobs")):
        django_pgjobs.list_jobs  # noqa: B018
    with pytest.raises(
        AttributeError, match=re.escape("from django_pgjobs.exceptions import JobNotFound")
    ):
        django_pgjobs.JobNotFound  # noqa: B018
    with pytest.raises(AttributeError, match=r"has no attribute 'nothing_like_it'$"):
        django_pgjobs.nothing_like_it  # noqa: B018


def test_a_from_import_of_a_name_that_lives_elsewhere_is_an_import_error() -> None:
    """Python replaces the module's AttributeError (and its hint) with its own ImportError for
    ``from X import Y``; the API reference documents this. If a Python version starts keeping
    the message, this test fails: then say where in this message too."""
    with pytest.raises(ImportError, match="cannot import name 'list_jobs'") as raised:
        exec("from django_pgjobs import list_jobs")  # noqa: S102
    assert "django_pgjobs.jobs" not in str(raised.value)


def test_progress_reporter_is_exported_from_the_top_level() -> None:
    from django_pgjobs import ProgressReporter
    from django_pgjobs.jobs.context import ProgressReporter as defined

    assert ProgressReporter is defined
