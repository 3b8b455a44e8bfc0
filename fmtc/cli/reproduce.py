"""``fmtc reproduce``: run every notebook on a profile with papermill, then build the book."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fmtc.cli.options import add_plan_options, plan_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc reproduce``."""
    parser = subparsers.add_parser(
        "reproduce", help="execute the notebooks with papermill and build the book",
        description="Execute notebooks/*.ipynb on a profile into the book tree, then run "
                    "`jupyter-book build -W -n --keep-going` on it.")
    add_plan_options(parser)
    parser.add_argument("--notebooks", type=Path, default=None, metavar="DIR",
                        help="papermill sources (default: notebooks/ beside the plan file)")
    parser.add_argument("--book", type=Path, default=None, metavar="DIR",
                        help="book tree (default: the plan's outputs.book_dir)")
    parser.add_argument("--scratch-copy", type=Path, default=None, metavar="DIR",
                        help="copy the book tree to DIR (empty or new) and reproduce there, "
                             "leaving the tracked book untouched; 'tmp' makes a temporary folder")
    parser.add_argument("--only", nargs="+", default=None, metavar="NOTEBOOK",
                        help="only these notebooks (names or stems)")
    parser.add_argument("--no-build", action="store_true", help="execute notebooks only")
    parser.add_argument("--force", action="store_true",
                        help="re-execute notebooks whose executed copy is up to date (same "
                             "source, parameters, plan profile and result versions)")
    parser.add_argument("--missing-only", action="store_true",
                        help="execute only the notebooks that have no executed copy; keep "
                             "stale ones as they are and list them (what `make book` does)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Execute, build, and print where the HTML is."""
    from fmtc.report.reproduce import copy_book, reproduce

    plan = plan_from_args(args)
    root = Path(plan.root)
    notebooks = args.notebooks or root / "notebooks"
    _check_notebooks(notebooks, args.only, given=args.notebooks is not None)
    book = args.book or plan.path(plan.outputs.book_dir)
    if args.scratch_copy is not None:
        target = (Path(tempfile.mkdtemp(prefix="fmtc-book-")) if str(args.scratch_copy) == "tmp"
                  else args.scratch_copy)
        book = copy_book(book, target)
    # Only a plan the user named is injected; otherwise the notebooks find the project plan
    # themselves, so the executed copies carry no path of this machine.
    plan_file = Path(args.plan).resolve() if args.plan else None
    # A failing notebook raises NotebookError: one line and exit 1 (fmtc.cli.main).
    report = reproduce(notebooks, book, plan.profile, plan_file, names=args.only,
                       build=not args.no_build, cwd=root, force=args.force,
                       missing_only=args.missing_only)
    total = sum(report.notebooks.values())
    print(f"[fmtc reproduce] {len(report.notebooks)} notebook(s) executed on profile "
          f"'{plan.profile}' in {total:.0f} s; {len(report.skipped)} kept")
    if report.stale:
        print(f"[fmtc reproduce] {len(report.stale)} page(s) are stale (their notebook, plan "
              "profile or result versions changed since they were executed): "
              f"{', '.join(report.stale)}; `fmtc reproduce --profile {plan.profile}` "
              "re-executes them")
    if report.html_index is not None:
        print(f"[fmtc reproduce] book built in {report.build_seconds:.0f} s: "
              f"open {report.html_index.resolve()}")
    return 0


def _check_notebooks(folder: Path, only: list[str] | None, given: bool) -> None:
    """Refuse a missing notebooks folder and ``--only`` names it does not hold, before any work.

    Raises
    ------
    UsageError
        Naming ``--notebooks`` or ``--only``, the unknown names and the notebooks there are.
    """
    from fmtc.errors import UsageError

    option = "--notebooks" if given else "the notebooks folder (--notebooks)"
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"{option} {folder} {state}: give the folder of the papermill "
                         "sources (notebooks/*.ipynb)")
    if not only:
        return
    known = sorted(path.stem for path in folder.glob("*.ipynb"))
    unknown = [name for name in only if Path(name).stem not in known]
    if unknown:
        raise UsageError(f"--only {' '.join(unknown)}: no such notebook in {folder}; the "
                         f"notebooks are {', '.join(known) or '(none)'}")
