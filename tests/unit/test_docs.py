"""The docs agree with the code: every relative link resolves, and every setting, management
command, subcommand, option, system check and logger is documented. File checks only; no
database."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import load_command_class
from django.core.management.base import BaseCommand

from django_pgjobs.conf import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "django_pgjobs"
SETTINGS_DOC = DOCS / "reference" / "settings.md"
COMMANDS_DOC = DOCS / "reference" / "commands.md"
# Commands whose actions are subcommands, each documented under its own heading.
WITH_SUBCOMMANDS = ("pgjobs", "pgjobs_workflows")

FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); link text may hold one level of brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CHECK_ID = re.compile(r"pgjobs\.E\d{3}")
SETTING_ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", re.MULTILINE)
OBSERVABILITY_DOC = DOCS / "howto" / "observability.md"
LOGGER_NAME = re.compile(r"getLogger\(\s*\"(django_pgjobs[\w.]*)\"")
LOGGER_ROW = re.compile(r"^\|\s*`(django_pgjobs[\w.]*)`\s*\|", re.MULTILINE)


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def prose_lines(text: str) -> Iterator[str]:
    """The lines outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link targets and inline markup reduced to their text,
    lowercase, punctuation other than hyphens and underscores dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, text) of each heading, inline code marks removed."""
    found = []
    for line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2).replace("`", "")))
    return found


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 ... for repeats."""
    seen: dict[str, int] = {}
    found = set()
    for _, text in headings(path):
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The targets of the inline links and images of a Markdown file."""
    return links_in(path.read_text())


def links_in(text: str) -> list[str]:
    """The targets of the inline links and images outside code."""
    found = []
    for line in prose_lines(text):
        # A code span is not a link, but a link's text may be one: keep the span's text
        # without the brackets and parentheses that could read as link syntax.
        plain = INLINE_CODE.sub(lambda m: re.sub(r"[\[\]()]", "", m.group(2)), line)
        found += LINK.findall(plain)
    return found


def broken_link(source: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``source``) does not resolve, or None if it does."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
        return None  # http:, https:, mailto: ... are not ours to check
    path_part, _, anchor = target.partition("#")
    resolved = (source.parent / path_part).resolve() if path_part else source
    if not resolved.exists():
        return f"{target}: no such file {os.path.relpath(resolved, ROOT)}"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
        return f"{target}: no heading #{anchor} in {os.path.relpath(resolved, ROOT)}"
    return None


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(path: Path) -> None:
    broken = [why for target in links(path) if (why := broken_link(path, target))]
    assert not broken, f"{path.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)


def test_the_link_checker_reads_links_the_way_a_code_host_does() -> None:
    assert slug("`pgjobs_worker`") == "pgjobs_worker"
    assert slug("Schedules: exactly once without a leader") == (
        "schedules-exactly-once-without-a-leader"
    )
    assert slug("django_pgjobs.contrib.embedded") == "django_pgjobscontribembedded"
    assert links_in("see [the `x`](a.md#b), ![img](c.png), `d[0](e)` and [f](https://g.org)") == [
        "a.md#b",
        "c.png",
        "https://g.org",
    ]


def test_every_setting_is_documented() -> None:
    text = SETTINGS_DOC.read_text()
    documented = set(SETTING_ROW.findall(text))
    missing = sorted(set(DEFAULTS) - documented)
    assert not missing, f"settings missing from the table in {SETTINGS_DOC.name}: {missing}"
    unknown = sorted(documented - set(DEFAULTS) - {"PGJOBS"})
    assert not unknown, f"{SETTINGS_DOC.name} documents settings that do not exist: {unknown}"


def test_every_system_check_is_documented_and_every_documented_one_exists() -> None:
    # The app's checks, and the Tasks backend's (which Django's Tasks framework runs).
    in_code = set(CHECK_ID.findall((PACKAGE / "checks.py").read_text()))
    in_code |= set(CHECK_ID.findall((PACKAGE / "tasks" / "checks.py").read_text()))
    in_docs = set(CHECK_ID.findall(SETTINGS_DOC.read_text()))
    assert in_code, "found no check ids in django_pgjobs/checks.py"
    missing = sorted(in_code - in_docs)
    assert not missing, f"system checks missing from {SETTINGS_DOC.name}: {missing}"
    gone = sorted(in_docs - in_code)
    assert not gone, f"{SETTINGS_DOC.name} documents checks checks.py does not have: {gone}"


def test_every_logger_has_a_row_in_the_logs_table_and_every_row_is_a_logger() -> None:
    in_code = {
        name for path in PACKAGE.rglob("*.py") for name in LOGGER_NAME.findall(path.read_text())
    }
    in_docs = set(LOGGER_ROW.findall(OBSERVABILITY_DOC.read_text()))
    assert "django_pgjobs" in in_code and "django_pgjobs.jobs" in in_code
    missing = sorted(in_code - in_docs)
    assert not missing, f"loggers missing from the table in {OBSERVABILITY_DOC.name}: {missing}"
    gone = sorted(in_docs - in_code)
    assert not gone, f"{OBSERVABILITY_DOC.name} has rows for loggers nothing uses: {gone}"


def command_names() -> list[str]:
    folder = PACKAGE / "management" / "commands"
    return sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")


def sections(path: Path) -> dict[str, str]:
    """Heading text (code marks removed) -> the text under it, down to the next heading of
    the same or a higher level (so a command's section holds its subcommands' sections)."""
    lines = path.read_text().splitlines()
    found: dict[str, str] = {}
    starts = []
    fenced = False
    for number, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match:
            starts.append((number, len(match.group(1)), match.group(2).replace("`", "")))
    for i, (number, level, text) in enumerate(starts):
        end = next((n for n, lvl, _ in starts[i + 1 :] if lvl <= level), len(lines))
        found[text] = "\n".join(lines[number + 1 : end])
    return found


def mentions(text: str, option: str) -> bool:
    """Whether ``text`` names ``option`` itself (``--queue`` is not ``--queues``)."""
    return re.search(rf"{re.escape(option)}(?![\w-])", text) is not None


def long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    }


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def django_options() -> set[str]:
    """The options Django gives every command (--settings, --verbosity ...)."""
    return long_options(BaseCommand().create_parser("manage.py", "base"))


@pytest.mark.parametrize("name", command_names())
def test_every_command_subcommand_and_option_is_documented(name: str) -> None:
    documented = sections(COMMANDS_DOC)
    assert name in documented, f"{COMMANDS_DOC.name} has no heading for the command {name}"
    parser = load_command_class("django_pgjobs", name).create_parser("manage.py", name)
    missing = [
        f"{name} {option}"
        for option in sorted(long_options(parser) - django_options())
        if not mentions(documented[name], option)
    ]
    actions = subcommands(parser)
    if name in WITH_SUBCOMMANDS:
        assert actions, f"{name} was expected to have subcommands"
    for action, subparser in sorted(actions.items()):
        heading = f"{name} {action}"
        if heading not in documented:
            missing.append(f"{heading} (no heading)")
            continue
        missing += [
            f"{heading} {option}"
            for option in sorted(long_options(subparser) - {"--help"})
            if not mentions(documented[heading], option)
        ]
    assert not missing, f"undocumented in {COMMANDS_DOC.name}: {', '.join(missing)}"
