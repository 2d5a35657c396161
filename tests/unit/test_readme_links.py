"""The README is the front page and points into `docs/`: each of its relative links (pages and
screenshots) names a file that exists. `make docs` checks the links inside `docs/` (MkDocs,
--strict); the README lies outside the site, so it is checked here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_relative_link_of_the_readme_names_a_file_of_the_repository() -> None:
    """Every `](path)` of README.md that is not a URL or an anchor exists (a page moved into
    docs/ or a screenshot renamed would otherwise leave a dead link on the front page)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", readme)]
    local = [t for t in targets if t and not re.match(r"[a-z]+:", t)]
    assert len(local) > 20  # the docs table and the screenshots
    missing = sorted({t for t in local if not (ROOT / t).exists()})
    assert missing == []
