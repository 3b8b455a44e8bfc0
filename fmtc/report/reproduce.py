"""Run every papermill notebook on a profile, then build the Jupyter Book strictly.

Notebook sources live in ``notebooks/`` (a ``parameters`` cell, no outputs);
their executed copies go into the book folder, which ``jupyter-book build -W -n
--keep-going`` turns into HTML (Jupyter Book 1; the book does not execute
notebooks itself). Tests reproduce into a temporary copy of the book so the
tracked book tree is never touched.

An executed copy carries no absolute path of the machine that ran it: only
``profile`` is injected (plus ``plan_file`` when one is given, relative to the
kernel's working directory when possible), and :func:`scrub_notebook` rewrites
papermill's metadata and every source and text output afterwards. Any copy can
therefore be re-run elsewhere with ``papermill book/X.ipynb out.ipynb -p profile
smoke``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmtc.errors import EXIT_INVALID_DATA, FmtcError
from fmtc.report.pages import place_downloads
from fmtc.storage import atomic_open

logger = logging.getLogger(__name__)

BOOK_BUILD_COMMAND = ("build", "-W", "-n", "--keep-going")

#: Tag of the cell papermill injects, and the Jupyter Book tag that hides a cell.
INJECTED_TAG = "injected-parameters"
REMOVE_TAG = "remove-cell"

_ANSI_TAIL = re.compile(r"\x1b\[[0-9;]*m$")
_PATH_TAIL = re.compile(r"[^\s'\"`<>(){}\[\],;:|*?\x1b]*")


@dataclass
class ReproduceReport:
    """What a reproduce run did: executed notebooks with durations, and the HTML entry page."""

    book_dir: Path
    notebooks: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    build_seconds: float | None = None
    html_index: Path | None = None


def copy_book(source: Path, destination: Path) -> Path:
    """Copy a book tree without its ``_build`` folder (for reproducing into a scratch copy)."""
    if destination.exists() and any(destination.iterdir()):
        raise FileExistsError(f"{destination} exists and is not empty; choose an empty folder")
    shutil.copytree(source, destination, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    return destination


# --------------------------------------------------------------------------- environment


def kernel_environment() -> dict[str, str]:
    """The environment with this interpreter's folder first on PATH.

    Kernels and ``jupyter-book`` then run the Python that has fmtc installed
    even when the virtual environment is not activated. ``os.environ`` itself is
    not changed; see :func:`kernel_path` for the scoped form.

    Returns
    -------
    dict of str to str
        A copy of ``os.environ`` with the PATH rewritten.
    """
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    current = env.get("PATH", "")
    parts = current.split(os.pathsep) if current else []
    if not parts or parts[0] != bin_dir:
        parts.insert(0, bin_dir)
    env["PATH"] = os.pathsep.join(parts)
    return env


@contextlib.contextmanager
def kernel_path() -> Iterator[str]:
    """Put this interpreter's folder first on ``PATH`` for the duration of the block.

    papermill starts kernels from ``os.environ`` (it takes no environment
    argument), so the PATH is set in the process while notebooks run and
    restored afterwards, even when the block raises.

    Yields
    ------
    str
        The PATH in force inside the block.
    """
    missing = object()
    previous: Any = os.environ.get("PATH", missing)
    os.environ["PATH"] = kernel_environment()["PATH"]
    try:
        yield os.environ["PATH"]
    finally:
        if previous is missing:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = previous


# --------------------------------------------------------------------------- path scrubbing


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


# --------------------------------------------------------------------------- execution


def _select_sources(notebooks_dir: Path, names: list[str] | None) -> list[Path]:
    """The notebooks to run, in name order."""
    sources = sorted(notebooks_dir.glob("*.ipynb"))
    if names:
        wanted = {Path(n).stem for n in names}
        missing = wanted - {p.stem for p in sources}
        if missing:
            raise FileNotFoundError(f"no notebook named {sorted(missing)} in {notebooks_dir}")
        sources = [p for p in sources if p.stem in wanted]
    if not sources:
        raise FileNotFoundError(f"no notebooks in {notebooks_dir}")
    return sources


def _show_progress() -> bool:
    """Whether to draw a progress bar: stderr is a terminal and INFO is logged."""
    try:
        is_terminal = sys.stderr.isatty()
    except (AttributeError, ValueError):
        is_terminal = False
    return is_terminal and logger.isEnabledFor(logging.INFO)


class NotebookError(FmtcError, RuntimeError):
    """A notebook failed to execute (the message names it, the cell and the partial copy)."""

    exit_code = EXIT_INVALID_DATA


STAMP_KEY = "fmtc"
"""Notebook metadata key of the stamp of what an executed copy was computed from."""


#: fmtc's own sources that never run inside a notebook: the command line, this runner and the
#: repository settings. A change to them leaves the executed copies up to date.
RUNNER_SOURCES = ("cli/", "report/reproduce.py", "report/launch.py")


def _package_digest() -> str:
    """sha256 of every source file of the installed fmtc package a notebook can run.

    Figures included; :data:`RUNNER_SOURCES` excluded.
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        if name.startswith(RUNNER_SOURCES):
            continue
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def notebook_stamp(source: Path, parameters: dict[str, object], kernel_cwd: Path) -> str:
    """What an executed copy depends on: the source notebook, the parameters, the plan, fmtc.

    The plan is the file named by ``parameters["plan_file"]``, else the project plan the
    notebook will find from ``kernel_cwd``. Data named by the plan (a real cohort folder)
    is not part of the stamp: re-execute with ``force`` after changing it in place.
    """
    from fmtc.plan import find_project_plan

    digest = hashlib.sha256()
    digest.update(source.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    plan = parameters.get("plan_file")
    plan_path = (kernel_cwd / str(plan)) if plan else find_project_plan(kernel_cwd)
    if plan_path is not None and Path(plan_path).is_file():
        digest.update(Path(plan_path).read_bytes())
    digest.update(_package_digest().encode())
    return digest.hexdigest()[:16]


def _stamp_of(path: Path) -> str | None:
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        return notebook["metadata"][STAMP_KEY]["inputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_stamp(path: Path, stamp: str, output_path: str) -> None:
    """Record the stamp, and papermill's output path as the copy's place in the book."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    notebook.metadata[STAMP_KEY] = {"inputs": stamp}
    if "papermill" in notebook.metadata:
        notebook.metadata["papermill"]["output_path"] = output_path
    with atomic_open(path) as handle:
        nbformat.write(notebook, handle)


def execute_notebooks(notebooks_dir: Path, book_dir: Path, parameters: dict[str, object],
                      names: list[str] | None = None, cwd: Path | None = None,
                      repo_root: Path | None = None, force: bool = False) -> dict[str, float]:
    """Execute each notebook of ``notebooks_dir`` with papermill into ``book_dir``.

    Each copy is executed into ``<book>/_build/.executing/``, passed through
    :func:`scrub_notebook`, stamped with :func:`notebook_stamp`, and only then moved
    into ``book_dir``: an earlier copy is replaced only by a complete one. A copy whose
    stamp matches is up to date and skipped (unless ``force``), so a reproduce run that
    was interrupted resumes with the first notebook it had not finished. A tqdm bar over
    the notebooks is drawn on a terminal; each finished notebook is logged at INFO.

    Parameters
    ----------
    notebooks_dir : Path
        Papermill sources (``*.ipynb`` with a cell tagged ``parameters``).
    book_dir : Path
        Where the executed copies are written (same file names).
    parameters : dict
        Injected into every notebook (e.g. ``profile``); keep them free of
        absolute paths.
    names : list of str, optional
        Only these notebooks (file names or stems); default all, in name order.
    cwd : Path, optional
        Working directory of the kernels; default ``book_dir``.
    repo_root : Path, optional
        Root that paths in the executed copies are made relative to; default
        ``cwd``, else the parent of ``notebooks_dir``.
    force : bool
        Execute even the notebooks whose executed copy is up to date.

    Returns
    -------
    dict of str to float
        Seconds per executed notebook (skipped ones are not listed).

    Raises
    ------
    NotebookError
        When a cell fails: names the notebook, the cell (execution count), the
        error, and where the partly executed copy is (``<book>/_build/failed/``);
        the earlier copy in ``book_dir`` is left as it was.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from tqdm import tqdm

    sources = _select_sources(notebooks_dir, names)
    kernel_cwd = Path(cwd or book_dir)
    root = Path(repo_root or cwd or notebooks_dir.parent)
    book_dir.mkdir(parents=True, exist_ok=True)
    executing = book_dir / "_build" / ".executing"
    executing.mkdir(parents=True, exist_ok=True)
    durations: dict[str, float] = {}
    with kernel_path(), tqdm(total=len(sources), unit="notebook", file=sys.stderr,
                             disable=not _show_progress(), dynamic_ncols=True) as bar:
        for position, source in enumerate(sources, start=1):
            bar.set_description(source.name)
            target = book_dir / source.name
            stamp = notebook_stamp(source, parameters, kernel_cwd)
            if not force and _stamp_of(target) == stamp:
                logger.info("%s is up to date (same notebook, parameters, plan and fmtc); "
                            "skipped", source.name)
                bar.update(1)
                continue
            logger.info("executing %s (%d of %d)", source.name, position, len(sources))
            logger.debug("executing %s in %s with %s", source.name, kernel_cwd, parameters)
            staging = executing / source.name
            start = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(source), str(staging), parameters=parameters, kernel_name="python3",
                    cwd=str(kernel_cwd), progress_bar=False, log_output=False,
                    request_save_on_cell_execute=False)
                placed = place_downloads(staging, book_dir, kernel_cwd)
                replaced = scrub_notebook(staging, root, book_dir)
                _write_stamp(staging, stamp, source.name)
                os.replace(staging, target)  # only a complete copy replaces the earlier one
            except PapermillExecutionError as error:
                failed = book_dir / "_build" / "failed" / source.name
                if staging.is_file():
                    scrub_notebook(staging, root, book_dir)
                    failed.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging, failed)
                raise NotebookError(
                    f"notebook {source.name} failed in cell {error.exec_count}: "
                    f"{error.ename}: {error.evalue}; the partly executed copy is at "
                    f"{failed} ({target} is unchanged)") from error
            finally:
                if staging.is_file():
                    staging.unlink()  # interrupted: no half-executed copy is kept
            durations[source.name] = time.perf_counter() - start
            bar.clear()
            logger.info("%s done in %.0f s (%d download(s) placed)", source.name,
                        durations[source.name], len(placed))
            logger.debug("%s: replaced absolute paths %s", source.name, replaced)
            bar.update(1)
    return durations


def build_book(book_dir: Path) -> Path:
    """Build the book strictly (warnings are errors); return the HTML entry page."""
    executable = Path(sys.executable).parent / "jupyter-book"
    command = [str(executable) if executable.exists() else "jupyter-book", *BOOK_BUILD_COMMAND,
               str(book_dir)]
    result = subprocess.run(command, env=kernel_environment(), text=True, capture_output=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise RuntimeError(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{tail}")
    index = book_dir / "_build" / "html" / "index.html"
    if not index.is_file():
        raise RuntimeError(f"the book build succeeded but {index} is missing")
    return index


def notebook_parameters(profile: str, plan_file: Path | None,
                        kernel_cwd: Path) -> dict[str, object]:
    """The parameters injected into every notebook.

    Parameters
    ----------
    profile : str
        Plan profile.
    plan_file : Path or None
        Plan file the user named; omitted when None (the notebooks then find
        the project plan themselves).
    kernel_cwd : Path
        Working directory of the kernels: ``plan_file`` is given relative to it
        when it lies under it, else absolute.

    Returns
    -------
    dict of str to object
        ``{"profile": ...}`` and, with a plan file, ``"plan_file"``.
    """
    parameters: dict[str, object] = {"profile": profile}
    if plan_file is not None:
        absolute = Path(plan_file).absolute()
        parameters["plan_file"] = _under(absolute, kernel_cwd) or str(absolute)
    return parameters


def reproduce(notebooks_dir: Path, book_dir: Path, profile: str, plan_file: Path | None,
              names: list[str] | None = None, build: bool = True,
              cwd: Path | None = None, force: bool = False) -> ReproduceReport:
    """Execute the notebooks on ``profile`` into ``book_dir`` and (optionally) build it.

    Parameters
    ----------
    notebooks_dir, book_dir : Path
        Sources and the book tree receiving their executed copies.
    profile : str
        Profile of the plan passed to every notebook.
    plan_file : Path or None
        Plan file the user named (``--plan``), injected relative to the kernel's
        working directory when under it; None injects only ``profile``.
    names : list of str, optional
        Only these notebooks.
    build : bool
        Run the strict ``jupyter-book build`` afterwards.
    cwd : Path, optional
        Working directory of the kernels (the repository root); default
        ``book_dir``. Paths under it are made relative in the executed copies.
    force : bool
        Re-execute notebooks whose executed copy is up to date.

    Returns
    -------
    ReproduceReport
        Durations and, after a build, the HTML entry page.
    """
    kernel_cwd = Path(cwd or book_dir)
    parameters = notebook_parameters(profile, plan_file, kernel_cwd)
    report = ReproduceReport(book_dir=book_dir)
    report.notebooks = execute_notebooks(notebooks_dir, book_dir, parameters, names, cwd,
                                         force=force)
    report.skipped = [s.name for s in _select_sources(notebooks_dir, names)
                      if s.name not in report.notebooks]
    if build:
        logger.info("building the book in %s", book_dir)
        start = time.perf_counter()
        report.html_index = build_book(book_dir)
        report.build_seconds = time.perf_counter() - start
        logger.info("book built in %.0f s", report.build_seconds)
    return report
