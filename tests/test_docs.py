"""The README and docs link to each other's sections by anchor; a renamed heading breaks a link silently.

``docs/benchmarks.md`` is written by ``python -m tools.bench all``, so this also checks the links its
renderer writes; the studies' reports under ``studies/`` are checked too.
"""

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "studies").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@functools.cache  # a page is linked to many times: read its headings once
def anchors(page: Path) -> frozenset[str]:
    """GitHub's heading anchors: lower case, punctuation but hyphens and underscores dropped, spaces to
    hyphens, a repeated heading numbered -1, -2, ...; headings inside fenced code do not count."""
    bases: list[str] = []
    found: set[str] = set()
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = re.match(r"#{1,6} (.+)", line)
        if heading and not fenced:
            base = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            found.add(f"{base}-{bases.count(base)}" if base in bases else base)
            bases.append(base)
    return frozenset(found)


def test_anchor_rule_matches_github_on_this_repositorys_headings(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Seeds 5 and 6, and a per-cube cap (2026-12-03)\n```\n# no heading\n```\n## A\n## A\n")
    assert anchors(page) == {"seeds-5-and-6-and-a-per-cube-cap-2026-12-03", "a", "a-1"}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_reach_an_existing_file_and_heading(page):
    broken = []
    for link in LINK.findall(page.read_text()):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = link.partition("#")
        target = (page.parent / path) if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{link}: no heading with that anchor in {target.name}")
    assert not broken, broken
