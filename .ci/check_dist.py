"""Check the built sdist and wheel before anyone could upload them (run by .ci/run).

    python .ci/check_dist.py DIST_DIR            # after: python -m build --outdir DIST_DIR
    python .ci/check_dist.py --installed         # in a venv where only the wheel is installed

What ``twine check`` does not: the files carry the version of ``django_pgjobs.__version__``; the
wheel holds every module, migration and template of the source tree, ``py.typed``, and nothing
else (no tests, benchmarks or example project); the sdist holds what a rebuild needs; every
classifier is one PyPI knows (it refuses an upload with an unknown one). Needs
``trove-classifiers``; nothing of the project itself is imported. ``--installed`` then checks that
the installed wheel works away from the source tree: Django finds its templates and migrations,
and ``importlib.metadata`` reports ``django_pgjobs.__version__``.
"""

from __future__ import annotations

import ast
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_pgjobs"


def source_version() -> str:
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise SystemExit("django_pgjobs/__init__.py has no __version__")


def package_files() -> set[str]:
    """Every file of the package in the source tree, as the wheel must name it."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def check_wheel(wheel: Path, version: str) -> list[str]:
    problems = []
    names = set(zipfile.ZipFile(wheel).namelist())
    info = f"django_pgjobs-{version}.dist-info"
    contents = {n for n in names if not n.startswith(info + "/")}
    missing = sorted(package_files() - contents)
    if missing:
        problems.append(f"the wheel lacks {len(missing)} file(s) of the package: {missing}")
    stray = sorted(n for n in contents if not n.startswith("django_pgjobs/"))
    if stray:
        problems.append(f"the wheel holds files outside django_pgjobs/: {stray[:10]}")
    for needed in (
        "django_pgjobs/py.typed",
        "django_pgjobs/migrations/0001_initial.py",
        "django_pgjobs/templates/admin/pgjobs/dashboard.html",
    ):
        if needed not in names:
            problems.append(f"the wheel lacks {needed}")
    metadata = Parser().parsestr(zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode())
    if metadata["Version"] != version:
        problems.append(f"the wheel's METADATA says version {metadata['Version']}")
    from trove_classifiers import classifiers as known

    unknown = [c for c in metadata.get_all("Classifier", []) if c not in known]
    if unknown:
        problems.append(f"classifiers PyPI does not know: {unknown}")
    if not any(r.startswith("Django") for r in metadata.get_all("Requires-Dist", [])):
        problems.append("the wheel does not require Django")
    return problems


def check_sdist(sdist: Path, version: str) -> list[str]:
    top = f"django_pgjobs-{version}"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    needed = ["pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO"]
    needed += sorted(package_files())
    missing = [n for n in needed if f"{top}/{n}" not in names]
    return [f"the sdist lacks {missing}"] if missing else []


def check_installed() -> None:
    import importlib.metadata

    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django_pgjobs",
        ],
        # Never connected to: the checks below read files only.
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "unused"}},
        TEMPLATES=[
            {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
        ],
    )
    django.setup()
    from django.db.migrations.loader import MigrationLoader
    from django.template.loader import get_template

    import django_pgjobs

    where = Path(django_pgjobs.__file__ or "")
    if ROOT in where.parents:
        raise SystemExit(f"check_dist: imported the source tree ({where}), not the wheel")
    installed = importlib.metadata.version("django-pgjobs")
    if installed != django_pgjobs.__version__:
        raise SystemExit(
            f"check_dist: metadata {installed} != __version__ {django_pgjobs.__version__}"
        )
    get_template("admin/pgjobs/dashboard.html")
    migrations = {n for app, n in MigrationLoader(None).disk_migrations if app == "pgjobs"}
    expected = {p.stem for p in (PACKAGE / "migrations").glob("0*.py")}
    if migrations != expected:
        raise SystemExit(
            f"check_dist: installed migrations {sorted(migrations)} != {sorted(expected)}"
        )
    if not callable(django_pgjobs.enqueue):
        raise SystemExit("check_dist: django_pgjobs.enqueue does not resolve")
    print(f"check_dist: the installed wheel {installed} works from {where.parent}")


def main() -> None:
    if sys.argv[1:] == ["--installed"]:
        check_installed()
        return
    dist = Path(sys.argv[1])
    version = source_version()
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    expected_wheel = f"django_pgjobs-{version}-py3-none-any.whl"
    expected_sdist = f"django_pgjobs-{version}.tar.gz"
    if [w.name for w in wheels] != [expected_wheel] or [s.name for s in sdists] != [expected_sdist]:
        raise SystemExit(
            f"expected {expected_wheel} and {expected_sdist} in {dist}, found "
            f"{[p.name for p in wheels + sdists]}"
        )
    problems = check_wheel(wheels[0], version) + check_sdist(sdists[0], version)
    if problems:
        raise SystemExit("check_dist: " + "\ncheck_dist: ".join(problems))
    print(f"check_dist: {expected_wheel} and {expected_sdist} hold what they must")


if __name__ == "__main__":
    main()
