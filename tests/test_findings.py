"""The findings summary is read from the executed pages, and the README's copy cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmtc.report import findings


def _executed(path: Path, glued: dict[str, str]) -> None:
    """An executed notebook whose outputs carry ``glued`` as myst-nb records them."""
    outputs = [{"output_type": "display_data", "metadata": {"scrapbook": {
        "name": name, "mime_prefix": "application/papermill.record/"}},
        "data": {"application/papermill.record/text/plain": repr(value)}}
        for name, value in glued.items()]
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs}]}))


@pytest.fixture
def book(tmp_path: Path) -> Path:
    pages: dict[str, dict[str, str]] = {}
    for finding in (*findings.FINDINGS, findings.SCOPE):
        pages.setdefault(finding.page, {})[finding.key] = f"{finding.key} is +1.5 [−2.0, +3.1]"
    for page, glued in pages.items():
        _executed(tmp_path / f"{page}.ipynb", glued)
    return tmp_path


def test_the_block_has_the_scope_then_one_linked_line_per_finding(book: Path) -> None:
    block = findings.findings_block(book).splitlines()
    assert block[0] == "findings_scope is +1.5 [−2.0, +3.1]"
    lines = [line for line in block if line.startswith("- ")]
    assert len(lines) == len(findings.FINDINGS)
    assert lines[0] == ("- **Foundation model** ([page](book/08_claims.ipynb)): "
                        "finding_foundation is +1.5 [−2.0, +3.1].")


def test_a_missing_page_or_finding_names_the_page_and_the_fix(book: Path) -> None:
    (book / "09_interpretation.ipynb").unlink()
    with pytest.raises(FileNotFoundError, match="09_interpretation.ipynb: not executed"):
        findings.findings_block(book)
    _executed(book / "09_interpretation.ipynb", {})
    with pytest.raises(FileNotFoundError, match="glues no 'finding_interpretation'.*reproduce"):
        findings.findings_block(book)


def test_the_readme_block_is_rewritten_from_the_book_and_nothing_else(book: Path) -> None:
    readme = (f"# title\n{findings.FINDINGS_START}\nstale +9.9\n{findings.FINDINGS_END}\n"
              "rest +9.9\n")
    synced = findings.synced_findings(readme, book)
    assert "stale" not in synced and synced.endswith("rest +9.9\n")
    assert "finding_fusion is +1.5" in synced
    assert findings.synced_findings(synced, book) == synced
    assert findings.synced_findings("no block\n", book) == "no block\n"
