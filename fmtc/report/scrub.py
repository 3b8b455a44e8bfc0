"""Executed notebooks carry no absolute path of the machine that ran them.

:func:`scrub_notebook` rewrites papermill's metadata and every source and text output of an
executed notebook: the repository root becomes ``.``-relative, the book folder relative to it,
the Python installation ``<python>``, the temporary folder ``<tmp>`` and the home folder ``~``.
Any executed copy can therefore be re-run elsewhere with ``papermill book/X.ipynb out.ipynb -p
profile smoke``.
"""

from __future__ import annotations

import contextlib
import os
import re
import site
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fmtc.storage import atomic_open

#: Tag of the cell papermill injects, and the Jupyter Book tag that hides a cell.
INJECTED_TAG = "injected-parameters"
REMOVE_TAG = "remove-cell"

_ANSI_TAIL = re.compile(r"\x1b\[[0-9;]*m$")
_PATH_TAIL = re.compile(r"[^\s'\"`<>(){}\[\],;:|*?\x1b]*")


def _variants(path: str | os.PathLike[str]) -> list[str]:
    """The spelled and the resolved form of an absolute path (without a trailing slash)."""
    out = []
    for candidate in (os.path.abspath(path), os.path.realpath(path)):
        candidate = candidate.rstrip("/") or "/"
        if candidate not in out:
            out.append(candidate)
    return out


def _under(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """``path`` relative to ``root`` (posix), or None when it does not lie under it."""
    for p in _variants(path):
        for r in _variants(root):
            if p == r:
                return "."
            if r != "/" and p.startswith(r + "/"):
                return p[len(r) + 1:]
    return None


def _python_roots() -> list[str]:
    """Prefixes of the Python installation (virtual environment and base interpreter)."""
    return [p for p in dict.fromkeys(
        [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]) if p]


def _site_roots(prefixes: list[str]) -> list[str]:
    """Site-packages folders that do not lie under one of ``prefixes``."""
    sites: list[str] = []
    with contextlib.suppress(AttributeError):
        sites.extend(site.getsitepackages())
    with contextlib.suppress(AttributeError):
        sites.append(site.getusersitepackages())
    return [s for s in dict.fromkeys(sites)
            if s and not any(_under(s, p) is not None for p in prefixes)]


def replacement_roots(repo_root: Path, book_dir: Path) -> list[tuple[str, str]]:
    """The absolute roots to scrub and what replaces each, longest root first.

    Parameters
    ----------
    repo_root : Path
        Repository root (kernel working directory); becomes ``.``-relative.
    book_dir : Path
        Book folder; relative to ``repo_root`` when under it, else ``<book>``.

    Returns
    -------
    list of (str, str)
        ``(absolute root, replacement)`` pairs; the root ``/`` is never listed.
    """
    pairs: list[tuple[str, str]] = []
    rel_book = _under(book_dir, repo_root)
    entries: list[tuple[str | os.PathLike[str], str]] = [
        (repo_root, "."), (book_dir, rel_book if rel_book is not None else "<book>")]
    prefixes = _python_roots()
    entries += [(prefix, "<python>") for prefix in prefixes]
    entries += [(site_dir, "<python>/site-packages") for site_dir in _site_roots(prefixes)]
    entries += [(tempfile.gettempdir(), "<tmp>"), (os.path.expanduser("~"), "~")]
    seen = set()
    for root, replacement in entries:
        for variant in _variants(root):
            if variant != "/" and variant not in seen:
                seen.add(variant)
                pairs.append((variant, replacement))
    pairs.sort(key=lambda pair: len(pair[0]), reverse=True)
    return pairs


def _starts_path(text: str, index: int) -> bool:
    """Whether an absolute path may start at ``text[index]`` (not inside a longer path)."""
    if index == 0:
        return True
    before = text[index - 1]
    if not (before.isalnum() or before in "_-.~/"):
        return True
    if text.endswith("file://", 0, index):
        return True
    if before == "m" and _ANSI_TAIL.search(text, max(0, index - 16), index):
        return True  # right after a colour code of a traceback
    return before.isalnum() and index >= 2 and text[index - 2] == "\\"  # "\n/root" in a literal


def _continues_path(text: str, end: int) -> bool:
    """Whether the character at ``end`` extends the path component before it."""
    if end >= len(text):
        return False
    char = text[end]
    if char.isalnum() or char in "_-~":
        return True
    return char == "." and end + 1 < len(text) and (text[end + 1].isalnum()
                                                    or text[end + 1] in "_-.")


def _occurrences(text: str, root: str) -> Iterator[int]:
    """Start indices of ``root`` in ``text`` where it is a whole absolute path prefix."""
    start = text.find(root)
    while start >= 0:
        end = start + len(root)
        if _starts_path(text, start) and not _continues_path(text, end):
            yield start
        start = text.find(root, start + 1)


def scrub_text(text: str, pairs: list[tuple[str, str]], replaced: set[str] | None = None) -> str:
    """Replace absolute roots in ``text`` by their relative or placeholder form.

    Parameters
    ----------
    text : str
        Any text (source, output, metadata value).
    pairs : list of (str, str)
        From :func:`replacement_roots`, longest root first.
    replaced : set of str, optional
        Receives every absolute path token that was rewritten.

    Returns
    -------
    str
        The text without those absolute paths.
    """
    for root, replacement in pairs:
        if root not in text:
            continue
        pieces = []
        cursor = 0
        for start in _occurrences(text, root):
            if start < cursor:
                continue
            end = start + len(root)
            if replaced is not None:
                tail = _PATH_TAIL.match(text, end)
                replaced.add(text[start:tail.end() if tail else end])
            pieces.append(text[cursor:start])
            if (replacement == "." and end < len(text) and text[end] == "/"
                    and _continues_path(text, end + 1)):
                end += 1  # "<root>/data/x" -> "data/x"
            else:
                pieces.append(replacement)
            cursor = end
        if cursor:
            pieces.append(text[cursor:])
            text = "".join(pieces)
    return text


def _is_text_mime(mime: str) -> bool:
    """Whether an output bundle entry is text (not base64 binary data)."""
    return (mime.startswith("text/") or mime.endswith(("+xml", "json", "javascript")))


def _walk_strings(node: Any, location: str, visit: Any) -> Any:
    """Apply ``visit(text, location)`` to every text string of a notebook tree.

    Binary output data (``image/png``...) and cell attachments are left alone.
    Returns the (possibly rebuilt) node.
    """
    if isinstance(node, str):
        return visit(node, location)
    if isinstance(node, list):
        for i, item in enumerate(node):
            node[i] = _walk_strings(item, f"{location}[{i}]", visit)
        return node
    if isinstance(node, dict):
        for key in list(node):
            if key == "attachments":
                continue
            if key == "data" and isinstance(node[key], dict):
                for mime in list(node[key]):
                    if _is_text_mime(mime):
                        node[key][mime] = _walk_strings(node[key][mime],
                                                        f"{location}.data[{mime}]", visit)
                continue
            node[key] = _walk_strings(node[key], f"{location}.{key}", visit)
        return node
    return node


def _relative_notebook_path(path: str, repo_root: Path, book_dir: Path, base: Path) -> str:
    """papermill's input/output path made relative to ``base`` (or the repo / book)."""
    if not os.path.isabs(path):
        return path
    for root in (base, repo_root, book_dir):
        rel = _under(path, root)
        if rel is not None:
            return rel
    return f"{Path(path).parent.name}/{Path(path).name}"


def scrub_notebook(path: Path, repo_root: Path, book_dir: Path) -> list[str]:
    """Remove the absolute paths of this machine from an executed notebook, in place.

    * ``metadata.papermill.input_path`` becomes relative to ``repo_root`` and
      ``output_path`` relative to ``book_dir``;
    * the cell papermill injected (tag ``injected-parameters``) gets the tag
      ``remove-cell`` so Jupyter Book hides it;
    * in every source, text output (stream, ``text/*``, errors) and metadata
      string, ``repo_root`` becomes ``.``-relative (``data/runs/...``), the book
      folder relative to the repo (or ``<book>``), the Python installation
      ``<python>``, the temporary folder ``<tmp>`` and the home folder ``~``.

    The notebook is rewritten atomically.

    Parameters
    ----------
    path : Path
        Executed notebook (``.ipynb``).
    repo_root : Path
        Repository root, the kernel's working directory.
    book_dir : Path
        Book folder holding the executed copy.

    Returns
    -------
    list of str
        The absolute path tokens that were replaced, sorted.
    """
    import nbformat

    notebook = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    replaced: set[str] = set()
    papermill_meta = notebook.metadata.get("papermill", {})
    for key, base in (("input_path", repo_root), ("output_path", book_dir)):
        value = papermill_meta.get(key)
        if isinstance(value, str) and os.path.isabs(value):
            papermill_meta[key] = _relative_notebook_path(value, repo_root, book_dir, base)
            replaced.add(value)
    for cell in notebook.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if INJECTED_TAG in tags and REMOVE_TAG not in tags:
            cell.metadata["tags"] = [*tags, REMOVE_TAG]
    pairs = replacement_roots(repo_root, book_dir)
    _walk_strings(notebook, "notebook", lambda text, _where: scrub_text(text, pairs, replaced))
    with atomic_open(path) as handle:
        nbformat.write(notebook, handle)
    return sorted(replaced)


def default_roots(repo_root: Path, book_dir: Path) -> list[str]:
    """The absolute roots an executed notebook must not mention (see :func:`scrub_notebook`)."""
    return [root for root, _ in replacement_roots(repo_root, book_dir)]


def absolute_paths_in(notebook_path: Path,
                      roots: Iterable[str | os.PathLike[str]]) -> list[str]:
    """List the absolute paths under ``roots`` that a notebook still contains.

    Parameters
    ----------
    notebook_path : Path
        Notebook (``.ipynb``) to inspect: sources, text outputs and metadata.
    roots : iterable of path-like
        Absolute folders (both their spelled and resolved forms are searched).

    Returns
    -------
    list of str
        ``"<location>: <path>"`` for every occurrence; empty when clean.
    """
    import json

    variants = sorted({v for root in roots for v in _variants(root) if v != "/"},
                      key=len, reverse=True)
    found: list[str] = []

    def visit(text: str, location: str) -> str:
        for root in variants:
            for start in _occurrences(text, root):
                tail = _PATH_TAIL.match(text, start + len(root))
                found.append(f"{location}: {text[start:tail.end() if tail else None]}")
        return text

    notebook = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    _walk_strings(notebook, "notebook", visit)
    return found


