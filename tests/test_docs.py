"""The README and docs/ as a reader meets them: links that land, a front page whose two set-up
commands are on the first screen, and a configuration page naming every key the stack accepts."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path

import pytest

from components.settings import stack as settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
SCREEN_LINES, SCREEN_COLUMNS = 24, 80
"""A terminal's first screen, where `cat README.md` or a repository page opens."""

FENCE = re.compile(r"^(```|~~~)")
CODE_SPAN = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[(?:[^\]]|\][^(])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else line)
    return lines


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: rendered text, lower case, punctuation dropped,
    spaces to hyphens (github/cmark-gfm's anchor filter, as html-pipeline's TOC filter does)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in prose(page.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        anchor = github_anchor(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


def links(page: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(prose(page.read_text()), start=1):
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            found.append((number, match.group(1)))
    return found


def test_pages_exist() -> None:
    assert README.exists()
    assert len(PAGES) > 5, "docs/ holds the reference pages"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands_on_a_file_and_heading(page: Path) -> None:
    broken = []
    for number, target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http(s), mailto: not checked offline
            continue
        path, _, fragment = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not destination.exists():
            broken.append(f"{where}: no such file")
        elif fragment and destination.suffix != ".md":
            broken.append(f"{where}: a fragment into a file that is not Markdown")
        elif fragment and fragment not in anchors(destination):
            broken.append(f"{where}: no heading with that anchor in {destination.name}")
    assert not broken, "\n".join(broken)


def test_readme_links_every_docs_page() -> None:
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for _, target in links(README)
        if not target.startswith("#")
    }
    # docs/_*.md would be sections another page includes, not pages of their own.
    missing = [
        p.name
        for p in DOCS.glob("*.md")
        if p.resolve() not in linked and not p.name.startswith("_")
    ]
    assert not missing, f"README.md does not link {missing}"


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move reference to docs/"


def test_both_set_up_commands_are_on_the_first_screen() -> None:
    # The first bash blocks: running it (`app local`) and testing it (CI's command), as a reader
    # sees them in a 24 x 80 terminal, long lines wrapped.
    screen_rows = 0
    seen = {"app local": False, "pytest": False}
    for line in README.read_text().splitlines():
        screen_rows += max(1, math.ceil(len(line) / SCREEN_COLUMNS))
        if screen_rows > SCREEN_LINES:
            break
        for command in seen:
            seen[command] |= f"python -m {command}" in line
    assert all(seen.values()), f"not on the first {SCREEN_LINES}-line screen: {seen}"


def config_keys(section: str, cls: type) -> list[str]:
    """Every key of a config section, nested sections (`inference.gpu`) spelled out."""
    keys = []
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        if dataclasses.is_dataclass(hint):
            keys += config_keys(f"{section}.{item.name}", hint)
        else:
            keys.append(f"{section}.{item.name}")
    return keys


def test_configuration_page_documents_every_key_the_stack_accepts() -> None:
    rows = [
        line for line in (DOCS / "configuration.md").read_text().splitlines() if line[:1] == "|"
    ]
    documented = {name for row in rows for name in re.findall(r"`([a-z_.]+)`", row)}
    accepted = [key for name, cls in settings.SECTIONS.items() for key in config_keys(name, cls)]
    assert len(accepted) > 50
    missing = [key for key in accepted if key not in documented]
    assert not missing, f"docs/configuration.md's tables do not name {missing}"
