"""Run every papermill notebook on a profile, then build the Jupyter Book strictly.

Notebook sources live in ``notebooks/`` (a ``parameters`` cell, no outputs);
their executed copies go into the book folder, which ``jupyter-book build -W -n
--keep-going`` turns into HTML (Jupyter Book 1; the book does not execute
notebooks itself). Tests reproduce into a temporary copy of the book so the
tracked book tree is never touched.

Each executed copy is a :class:`Page` result (:mod:`fmtc.lifecycle`): it is re-executed
only when its notebook, parameters, plan profile or the declared versions of fmtc's results
change, never because fmtc's code was refactored. ``make book`` executes only the pages that
have no executed copy (``missing_only``) and lists the stale ones; ``fmtc reproduce``
re-executes those. An executed copy carries no absolute path of the machine that ran it:
only ``profile`` is injected (plus ``plan_file`` when one is given, relative to the kernel's
working directory when possible), and :func:`~fmtc.report.scrub.scrub_notebook` rewrites
papermill's metadata and every source and text output afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fmtc.errors import EXIT_INVALID_DATA, FmtcError
from fmtc.lifecycle import Result, find, materialise
from fmtc.report.pages import place_downloads
from fmtc.report.scrub import (  # noqa: F401 - the executed copies' path scrubbing, re-exported
    INJECTED_TAG,
    REMOVE_TAG,
    _under,
    absolute_paths_in,
    default_roots,
    replacement_roots,
    scrub_notebook,
    scrub_text,
)
from fmtc.storage import atomic_open

logger = logging.getLogger(__name__)

BOOK_BUILD_COMMAND = ("build", "-W", "-n", "--keep-going")


@dataclass
class ReproduceReport:
    """What a reproduce run did: executed notebooks with durations, and the HTML entry page."""

    book_dir: Path
    notebooks: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
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
"""Notebook metadata key of an executed page's record (:mod:`fmtc.lifecycle`)."""


def _plan_identity(parameters: dict[str, object], kernel_cwd: Path) -> dict[str, Any]:
    """The resolved plan profile a notebook reads (its folder left out: it names this machine)."""
    from fmtc.plan import PlanError, find_project_plan, load_plan

    named = parameters.get("plan_file")
    path = (Path(kernel_cwd) / str(named)) if named else find_project_plan(kernel_cwd)
    try:
        plan = load_plan(str(parameters.get("profile")), path).to_dict()
    except PlanError:  # the notebook will say so itself; its page is keyed by the file's bytes
        found = path is not None and Path(path).is_file()
        return {"unresolved": str(parameters.get("profile")),
                "file_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()
                if found else None}
    plan.pop("root", None)
    plan.pop("plan_file", None)  # names this machine's folder, like root
    # Where the real trial is cloned from is a location, not content: the clone is checked
    # against the pinned commit (pages.stages_revision), so a local mirror gives the same page.
    plan.get("pages", {}).pop("stages_source", None)
    return plan


@dataclass(frozen=True, eq=False)
class Page(Result):
    """An executed notebook of the book, as a result (kind ``page``; a single file).

    Its identity is the notebook source, the injected parameters, the resolved plan profile
    it reads and the declared versions of every kind of result (:mod:`fmtc.versions`, the
    ``page`` version covering what :mod:`fmtc.report` shows): a change of fmtc's code that
    leaves results identical leaves every page up to date. Data named by the plan (a real
    cohort folder) is not part of it: re-execute with ``--force`` after changing it in place.
    Its record is kept in the notebook's metadata (:data:`STAMP_KEY`).

    Parameters
    ----------
    source : Path
        The papermill source (``notebooks/X.ipynb``).
    book_dir : Path
        Where the executed copy is published (same file name).
    parameters : dict
        Injected by papermill (``profile``, optionally ``plan_file``).
    kernel_cwd : Path
        Working directory of the kernel.
    repo_root : Path
        Root that paths in the executed copy are made relative to.
    """

    kind: ClassVar[str] = "page"
    artifact: ClassVar[str] = "file"

    source: Path
    book_dir: Path
    parameters: dict[str, object]
    kernel_cwd: Path
    repo_root: Path

    def config(self) -> dict[str, Any]:
        from fmtc.versions import VERSIONS

        return {"notebook": self.source.name,
                "source_sha256": hashlib.sha256(self.source.read_bytes()).hexdigest(),
                # the plan file is named only to be read: the resolved plan below is what counts
                "parameters": {k: v for k, v in self.parameters.items() if k != "plan_file"},
                "plan": _plan_identity(self.parameters, self.kernel_cwd),
                "versions": VERSIONS}

    def default_folder(self) -> Path:
        return self.book_dir / self.source.name

    def read_record_at(self, destination: Path) -> dict[str, Any] | None:
        try:
            notebook = json.loads(destination.read_text(encoding="utf-8"))
            record = notebook["metadata"][STAMP_KEY]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return record if isinstance(record, dict) and {"kind", "key"} <= set(record) else None

    def write_record(self, staging: Path, record: dict[str, Any]) -> None:
        import nbformat

        notebook = nbformat.read(str(staging), as_version=nbformat.NO_CONVERT)
        notebook.metadata[STAMP_KEY] = record
        if "papermill" in notebook.metadata:
            notebook.metadata["papermill"]["output_path"] = self.source.name
        with atomic_open(staging) as handle:
            nbformat.write(notebook, handle)

    def stage(self, destination: Path) -> Path:
        staging = self.book_dir / "_build" / ".executing" / self.source.name
        staging.parent.mkdir(parents=True, exist_ok=True)
        staging.unlink(missing_ok=True)
        return staging

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        import papermill
        from papermill.exceptions import PapermillExecutionError

        try:
            with kernel_path():
                papermill.execute_notebook(
                    str(self.source), str(staging), parameters=self.parameters,
                    kernel_name="python3", cwd=str(self.kernel_cwd), progress_bar=False,
                    log_output=False, request_save_on_cell_execute=False)
        except PapermillExecutionError as error:
            target = self.default_folder()
            failed = self.book_dir / "_build" / "failed" / self.source.name
            if staging.is_file():
                scrub_notebook(staging, self.repo_root, self.book_dir)
                failed.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging, failed)
            raise NotebookError(
                f"notebook {self.source.name} failed in cell {error.exec_count}: "
                f"{error.ename}: {error.evalue}; the partly executed copy is at "
                f"{failed} ({target} is unchanged)") from error
        placed = place_downloads(staging, self.book_dir, self.kernel_cwd)
        replaced = scrub_notebook(staging, self.repo_root, self.book_dir)
        logger.debug("%s: %d download(s) placed; replaced absolute paths %s",
                     self.source.name, len(placed), replaced)

    def load(self, folder: Path, record: dict[str, Any]) -> Path:
        return folder


def stale_pages(notebooks_dir: Path, book_dir: Path, parameters: dict[str, object],
                cwd: Path | None = None, names: list[str] | None = None) -> list[str]:
    """The executed pages whose record does not match their notebook, parameters, plan and
    versions (pages with no executed copy are not listed: they are missing, not stale)."""
    kernel_cwd = Path(cwd or book_dir)
    stale = []
    for source in _select_sources(notebooks_dir, names):
        page = Page(source, book_dir, parameters, kernel_cwd, kernel_cwd)
        target = page.default_folder()
        if target.is_file() and find(page, target) is None:
            stale.append(source.name)
    return stale


def execute_notebooks(notebooks_dir: Path, book_dir: Path, parameters: dict[str, object],
                      names: list[str] | None = None, cwd: Path | None = None,
                      repo_root: Path | None = None, force: bool = False,
                      missing_only: bool = False) -> dict[str, float]:
    """Execute each notebook of ``notebooks_dir`` with papermill into ``book_dir``.

    Each page is a :class:`Page` result: executed into ``<book>/_build/.executing/``, passed
    through :func:`~fmtc.report.scrub.scrub_notebook`, its record written into its metadata,
    and only then moved into ``book_dir`` (an earlier copy is replaced only by a complete
    one). A page whose record matches is up to date and skipped (unless ``force``), so a
    reproduce run that was interrupted resumes with the first page it had not finished. A
    tqdm bar over the notebooks is drawn on a terminal; each finished notebook is logged.

    Parameters
    ----------
    notebooks_dir : Path
        Papermill sources (``*.ipynb`` with a cell tagged ``parameters``).
    book_dir : Path
        Where the executed copies are written (same file names).
    parameters : dict
        Injected into every notebook (e.g. ``profile``); keep them free of absolute paths.
    names : list of str, optional
        Only these notebooks (file names or stems); default all, in name order.
    cwd : Path, optional
        Working directory of the kernels; default ``book_dir``.
    repo_root : Path, optional
        Root that paths in the executed copies are made relative to; default ``cwd``, else
        the parent of ``notebooks_dir``.
    force : bool
        Execute even the notebooks whose executed copy is up to date.
    missing_only : bool
        Execute only the notebooks that have no executed copy (``make book``): a stale copy
        is kept as committed (see :func:`stale_pages`).

    Returns
    -------
    dict of str to float
        Seconds per executed notebook (skipped ones are not listed).

    Raises
    ------
    NotebookError
        When a cell fails: names the notebook, the cell (execution count), the error, and
        where the partly executed copy is (``<book>/_build/failed/``); the earlier copy in
        ``book_dir`` is left as it was.
    """
    from tqdm import tqdm

    sources = _select_sources(notebooks_dir, names)
    kernel_cwd = Path(cwd or book_dir)
    root = Path(repo_root or cwd or notebooks_dir.parent)
    book_dir.mkdir(parents=True, exist_ok=True)
    durations: dict[str, float] = {}
    with tqdm(total=len(sources), unit="notebook", file=sys.stderr,
              disable=not _show_progress(), dynamic_ncols=True) as bar:
        for position, source in enumerate(sources, start=1):
            bar.set_description(source.name)
            page = Page(source, book_dir, parameters, kernel_cwd, root)
            target = page.default_folder()
            if (missing_only and target.is_file()) or (not force and find(page) is not None):
                logger.info("%s is %s; skipped", source.name,
                            "up to date" if find(page) is not None else "kept as committed")
                bar.update(1)
                continue
            logger.info("executing %s (%d of %d)", source.name, position, len(sources))
            start = time.perf_counter()
            materialise(page, overwrite=force)
            durations[source.name] = time.perf_counter() - start
            bar.clear()
            logger.info("%s done in %.0f s", source.name, durations[source.name])
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
              cwd: Path | None = None, force: bool = False,
              missing_only: bool = False) -> ReproduceReport:
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
    missing_only : bool
        Execute only the notebooks without an executed copy; list the stale ones.

    Returns
    -------
    ReproduceReport
        Durations, the pages left stale and, after a build, the HTML entry page.
    """
    kernel_cwd = Path(cwd or book_dir)
    parameters = notebook_parameters(profile, plan_file, kernel_cwd)
    report = ReproduceReport(book_dir=book_dir)
    report.notebooks = execute_notebooks(notebooks_dir, book_dir, parameters, names, cwd,
                                         force=force, missing_only=missing_only)
    report.skipped = [s.name for s in _select_sources(notebooks_dir, names)
                      if s.name not in report.notebooks]
    report.stale = stale_pages(notebooks_dir, book_dir, parameters, cwd, names)
    if build:
        logger.info("building the book in %s", book_dir)
        start = time.perf_counter()
        report.html_index = build_book(book_dir)
        report.build_seconds = time.perf_counter() - start
        logger.info("book built in %.0f s", report.build_seconds)
    return report
