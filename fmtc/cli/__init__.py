"""The ``fmtc`` command line: thin wrappers that read the plan and call the pipeline.

Each sub-command lives in its own module of this package, which defines
``register(subparsers)``; the module's handler receives the parsed arguments
and returns an exit status. The library logs through :mod:`logging` (logger
``fmtc``); ``--quiet`` / ``--verbose`` set how much of it the command prints.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from fmtc import __version__

# Order of appearance in ``fmtc --help``: the data path, top to bottom.
_COMMAND_MODULES = (
    "fmtc.cli.simulate",
    "fmtc.cli.fetch",
    "fmtc.cli.cohort",
    "fmtc.cli.pretrain",
    "fmtc.cli.embed",
    "fmtc.cli.models",
    "fmtc.cli.evaluate",
    "fmtc.cli.experiment",
    "fmtc.cli.reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``fmtc`` argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="fmtc",
        description="Reproducible companion to FMM_TC (Fan et al., MICCAI 2025).",
    )
    parser.add_argument("--version", action="version", version=f"fmtc {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="print only warnings, errors and results (no progress bars)")
    verbosity.add_argument("-v", "--verbose", action="store_true",
                           help="also print per-fold details (debug messages)")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of one line")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


@contextmanager
def _logging(level: int) -> Iterator[None]:
    """Send the ``fmtc`` logger's records of ``level`` and above to stderr while a command runs."""
    logger = logging.getLogger("fmtc")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[fmtc] %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from fmtc.cohort.folder import CohortError
    from fmtc.plan import PlanError

    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    with _logging(level):
        try:
            return int(args.handler(args) or 0)
        except KeyboardInterrupt:
            if args.debug:
                raise
            print(f"fmtc {args.command}: interrupted; finished results are kept (run folders "
                  "and caches are only ever published whole)", file=sys.stderr)
            return 130
        except (PlanError, CohortError, FileNotFoundError, FileExistsError, PermissionError,
                ValueError) as error:
            if args.debug:
                raise
            print(f"fmtc {args.command}: error: {error}", file=sys.stderr)
            return 2
