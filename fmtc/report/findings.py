"""What the companion found, read from the executed book: one line per claim and result.

Each results page glues a ``finding_*`` sentence computed from its result (its numbers, its
interval, its verdict, or "not interpreted" on a profile marked not meaningful). The claims
page and the intro paste them with myst-nb's cross-document glue; the README carries the same
lines as a generated block (:func:`findings_block`), rewritten by ``fmtc book-settings`` and
checked by the test suite against the committed book, so it cannot drift from it.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

FINDINGS_START = "<!-- fmtc:findings -->"
"""The README line that opens the generated findings block."""
FINDINGS_END = "<!-- /fmtc:findings -->"
"""The README line that closes it."""


@dataclass(frozen=True)
class Finding:
    """One line of the findings summary: a label and the glued sentence it shows."""

    label: str
    page: str
    key: str


FINDINGS: tuple[Finding, ...] = (
    Finding("Foundation model", "08_claims", "finding_foundation"),
    Finding("External knowledge", "08_claims", "finding_knowledge"),
    Finding("Multimodal fusion", "08_claims", "finding_fusion"),
    Finding("Generalisation", "08_claims", "finding_generalisation"),
    Finding("Interpretation", "09_interpretation", "finding_interpretation"),
    Finding("The authors' protocol", "06_authors_protocol", "finding_protocol"),
    Finding("Trial utility", "10_trial_utility", "finding_trial_utility"),
    Finding("A real trial", "12_real_trial", "finding_real_trial"),
)
"""The summary's lines, in order (the page that glues each sentence, and its key)."""

README_FINDINGS = ("Foundation model", "Multimodal fusion", "The authors' protocol",
                   "A real trial")
"""The four lines the README's first screen shows (the intro and the claims page show all)."""

FIGURE = ("08_claims", "plot_claims(")
"""The README's figure: the image output of the claims page's cell that calls ``plot_claims``."""

FIGURE_PATH = Path("book") / "_static" / "findings_claims.png"
"""Where ``fmtc book-settings`` writes that figure (relative to the source tree)."""

SCOPE = Finding("Scope", "08_claims", "findings_scope")
"""The sentence that says what the findings were computed on (simulated or real)."""

_RECORD = "application/papermill.record/"


def glued(notebook: str | Path) -> dict[str, str]:
    """The plain-text value of every ``glue`` of an executed notebook, by name.

    Parameters
    ----------
    notebook : str or Path
        An executed notebook (``book/NAME.ipynb``).

    Returns
    -------
    dict of str to str
        A glued string without its quotes (as ``{glue:text}`` shows it).
    """
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    values: dict[str, str] = {}
    for cell in cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            data = output.get("data", {})
            text = data.get("text/plain", data.get(_RECORD + "text/plain"))
            if name is None or text is None:
                continue
            text = "".join(text) if isinstance(text, list) else text
            if text[:1] in "'\"":
                try:
                    text = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    pass
            values[name] = str(text)
    return values


def figure_png(book_dir: str | Path) -> bytes:
    """The claims figure of the executed claims page, as PNG bytes (:data:`FIGURE`).

    Raises
    ------
    FileNotFoundError
        When the page is not executed or holds no such figure.
    """
    import base64

    page, marker = FIGURE
    path = Path(book_dir) / f"{page}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not executed; run `fmtc reproduce`")
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if marker in "".join(cell.get("source", [])):
            for output in cell.get("outputs", []):
                png = output.get("data", {}).get("image/png")
                if png:
                    return base64.b64decode("".join(png) if isinstance(png, list) else png)
    raise FileNotFoundError(f"{path}: no cell calling {marker}...) with a figure; re-execute "
                            f"it with `fmtc reproduce --only {page}`")


def findings_block(book_dir: str | Path, link_prefix: str = "book/",
                   labels: tuple[str, ...] | None = None) -> str:
    """The README's findings block, from the executed pages under ``book_dir``.

    Parameters
    ----------
    book_dir : str or Path
        The book tree holding the executed notebooks.
    link_prefix : str
        Prepended to each page's file name in its link.
    labels : tuple of str, optional
        Only these findings (by label, in :data:`FINDINGS`' order); default: all.

    Returns
    -------
    str
        Markdown: the scope sentence, then one line per :data:`FINDINGS` entry.

    Raises
    ------
    FileNotFoundError
        When a page is not executed, or does not glue its finding (the message names both).
    """
    book_dir = Path(book_dir)
    cache: dict[str, dict[str, str]] = {}

    def value(finding: Finding) -> str:
        path = book_dir / f"{finding.page}.ipynb"
        if finding.page not in cache:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: not executed; run `fmtc reproduce`")
            cache[finding.page] = glued(path)
        if finding.key not in cache[finding.page]:
            raise FileNotFoundError(f"{path}: glues no {finding.key!r}; re-execute the page "
                                    "with `fmtc reproduce --only " + finding.page + "`")
        return cache[finding.page][finding.key]

    lines = [value(SCOPE), ""]
    lines += [f"- **{f.label}** ([page]({link_prefix}{f.page}.ipynb)): {value(f)}."
              for f in FINDINGS if labels is None or f.label in labels]
    return "\n".join(lines)


def synced_findings(text: str, book_dir: str | Path) -> str:
    """``text`` (the README) with its findings block rewritten from the executed book."""
    pattern = re.compile(re.escape(FINDINGS_START) + r".*?" + re.escape(FINDINGS_END), re.S)
    if pattern.search(text) is None:
        return text  # a README without the block keeps none
    block = (f"{FINDINGS_START}\n{findings_block(book_dir, labels=README_FINDINGS)}\n"
             f"{FINDINGS_END}")
    return pattern.sub(lambda _: block, text, count=1)
