"""Run every papermill notebook on a profile, then build the Jupyter Book strictly.

Notebook sources live in ``notebooks/`` (a ``parameters`` cell, no outputs);
their executed copies go into the book folder, which ``jupyter-book build -W -n
--keep-going`` turns into HTML (Jupyter Book 1; the book does not execute
notebooks itself). Tests reproduce into a temporary copy of the book so the
tracked book tree is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BOOK_BUILD_COMMAND = ("build", "-W", "-n", "--keep-going")


@dataclass
class ReproduceReport:
    """What a reproduce run did: executed notebooks with durations, and the HTML entry page."""

    book_dir: Path
    notebooks: dict[str, float] = field(default_factory=dict)
    build_seconds: float | None = None
    html_index: Path | None = None


def copy_book(source: Path, destination: Path) -> Path:
    """Copy a book tree without its ``_build`` folder (for reproducing into a scratch copy)."""
    if destination.exists() and any(destination.iterdir()):
        raise FileExistsError(f"{destination} exists and is not empty; choose an empty folder")
    shutil.copytree(source, destination, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    return destination


def execute_notebooks(notebooks_dir: Path, book_dir: Path, parameters: dict[str, object],
                      names: list[str] | None = None, cwd: Path | None = None) -> dict[str, float]:
    """Execute each notebook of ``notebooks_dir`` with papermill into ``book_dir``.

    Parameters
    ----------
    notebooks_dir : Path
        Papermill sources (``*.ipynb`` with a cell tagged ``parameters``).
    book_dir : Path
        Where the executed copies are written (same file names).
    parameters : dict
        Injected into every notebook (e.g. ``profile``, ``plan_file``).
    names : list of str, optional
        Only these notebooks (file names or stems); default all, in name order.
    cwd : Path, optional
        Working directory of the kernels; default ``book_dir``.

    Returns
    -------
    dict of str to float
        Seconds per executed notebook.
    """
    import papermill

    sources = sorted(notebooks_dir.glob("*.ipynb"))
    if names:
        wanted = {Path(n).stem for n in names}
        missing = wanted - {p.stem for p in sources}
        if missing:
            raise FileNotFoundError(f"no notebook named {sorted(missing)} in {notebooks_dir}")
        sources = [p for p in sources if p.stem in wanted]
    if not sources:
        raise FileNotFoundError(f"no notebooks in {notebooks_dir}")
    durations = {}
    for source in sources:
        start = time.perf_counter()
        print(f"[fmtc reproduce] executing {source.name} ...", flush=True)
        papermill.execute_notebook(
            str(source), str(book_dir / source.name), parameters=parameters,
            kernel_name="python3", cwd=str(cwd or book_dir), progress_bar=False,
            log_output=False, request_save_on_cell_execute=False)
        durations[source.name] = time.perf_counter() - start
        print(f"[fmtc reproduce] {source.name} done in {durations[source.name]:.0f} s", flush=True)
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


def kernel_environment() -> dict[str, str]:
    """The environment with this interpreter's folder first on PATH.

    Kernels and ``jupyter-book`` then run the Python that has fmtc installed
    even when the virtual environment is not activated.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def reproduce(notebooks_dir: Path, book_dir: Path, profile: str, plan_file: Path | None,
              names: list[str] | None = None, build: bool = True,
              cwd: Path | None = None) -> ReproduceReport:
    """Execute the notebooks on ``profile`` into ``book_dir`` and (optionally) build it.

    Parameters
    ----------
    notebooks_dir, book_dir : Path
        Sources and the book tree receiving their executed copies.
    profile : str
        Profile of the plan passed to every notebook.
    plan_file : Path or None
        Absolute plan file passed to every notebook (None: built-in profiles).
    names : list of str, optional
        Only these notebooks.
    build : bool
        Run the strict ``jupyter-book build`` afterwards.
    cwd : Path, optional
        Working directory of the kernels.
    """
    os.environ["PATH"] = kernel_environment()["PATH"]
    parameters = {"profile": profile, "plan_file": str(plan_file) if plan_file else None}
    report = ReproduceReport(book_dir=book_dir)
    report.notebooks = execute_notebooks(notebooks_dir, book_dir, parameters, names, cwd)
    if build:
        start = time.perf_counter()
        report.html_index = build_book(book_dir)
        report.build_seconds = time.perf_counter() - start
    return report
