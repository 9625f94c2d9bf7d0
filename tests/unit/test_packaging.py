"""The package is release-ready: one version source, package data that reaches the wheel,
classifiers that match the Django pin, a changelog in shape. .ci/check_dist.py checks the built
files themselves (and the installed wheel); these are the file checks that need no build."""

from __future__ import annotations

import ast
import glob
import importlib.metadata
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import django_pgjobs
from tests.unit.test_docs import broken_link

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "django_pgjobs"
CHANGELOG = ROOT / "CHANGELOG.md"


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_has_one_source_that_the_build_reads_without_importing() -> None:
    project = pyproject()["project"]
    assert "version" not in project
    assert project["dynamic"] == ["version"]
    attr = pyproject()["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "django_pgjobs.__version__"
    # setuptools reads a literal assignment statically: the build needs no Django installed.
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    [literal] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
    ]
    assert ast.literal_eval(literal) == django_pgjobs.__version__
    assert str(Version(django_pgjobs.__version__)) == django_pgjobs.__version__  # PEP 440


def test_the_installed_metadata_agrees_with_the_version_source() -> None:
    """runtests.py installs this checkout (pip install -e .): what pip recorded for it is
    ``__version__``. (.ci/check_dist.py checks the same of the built wheel.)"""
    here = [
        found
        for found in importlib.metadata.distributions(name="django-pgjobs")
        if json.loads(found.read_text("direct_url.json") or "{}").get("url") == ROOT.as_uri()
    ]
    if not here:
        pytest.skip("this checkout is not pip-installed here (PYTHONPATH only)")
    assert [found.version for found in here] == [django_pgjobs.__version__], (
        "reinstall: pip install -e ."
    )


def test_every_file_of_the_package_reaches_the_wheel() -> None:
    """Modules come through packages (a folder of modules without __init__.py is left out);
    everything else must match a package-data pattern."""
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["django_pgjobs"]
    shipped = {
        Path(found)
        for pattern in patterns
        for found in glob.glob(pattern, root_dir=PACKAGE, recursive=True)
        if (PACKAGE / found).is_file()
    }
    files = [
        p.relative_to(PACKAGE)
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc")
    ]
    assert files, "found no data files (templates, py.typed)"
    assert not sorted(set(files) - shipped), "package-data patterns miss these"
    assert Path("py.typed") in shipped
    for folder in {p.parent for p in PACKAGE.rglob("*.py")}:
        assert (folder / "__init__.py").exists(), f"{folder} is not a package: not in the wheel"


def test_django_classifiers_match_the_django_pin() -> None:
    project = pyproject()["project"]
    [pin] = [d for d in project["dependencies"] if re.match(r"django\s*[<>=!~]", d, re.IGNORECASE)]
    specifier = SpecifierSet(pin[len("Django") :])
    allowed = {
        f"{major}.{minor}"
        for major in (4, 5, 6, 7)
        for minor in range(3)
        if specifier.contains(f"{major}.{minor}", prereleases=True)
    }
    classified = {
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Framework :: Django :: \d+\.\d+", c)
    }
    assert classified == allowed


def test_the_changelog_keeps_a_changelog() -> None:
    text = CHANGELOG.read_text()
    versions = re.findall(r"^## \[([^\]]+)\](.*)$", text, re.MULTILINE)
    assert versions[0] == ("Unreleased", "")
    released = [Version(v) for v, _ in versions[1:]]
    for (name, date), _ in zip(versions[1:], released, strict=True):
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", date), f"{name} needs ' - YYYY-MM-DD'"
    assert released == sorted(released, reverse=True), "newest release first"
    if released:
        # The version being prepared is the newest release, or comes after it.
        assert Version(django_pgjobs.__version__) >= released[0]
    headings = re.findall(r"^### (.+)$", text, re.MULTILINE)
    kinds = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    assert set(headings) <= kinds


def test_the_changelog_links_resolve() -> None:
    from tests.unit.test_docs import links

    broken = [why for target in links(CHANGELOG) if (why := broken_link(CHANGELOG, target))]
    assert not broken
