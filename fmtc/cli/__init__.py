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
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from fmtc import __version__
from fmtc.errors import (
    EXIT_INTERRUPTED,
    EXIT_INVALID_DATA,
    EXIT_TERMINATED,
    FmtcError,
    Terminated,
    one_line,
)

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
    "fmtc.cli.generalise",
    "fmtc.cli.interpret",
    "fmtc.cli.reproduce",
    "fmtc.cli.book_settings",
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


@contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """Turn SIGTERM into :class:`~fmtc.errors.Terminated` (clean-ups run) while a command runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _message_of(error: BaseException) -> str:
    """The message of an unexpected built-in error, with the file it concerns when known."""
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return str(error) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (see :mod:`fmtc.errors` for the codes)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    with _logging(level), _sigterm_as_exception():
        try:
            return int(args.handler(args) or 0)
        except (KeyboardInterrupt, Terminated) as stop:
            if args.debug:
                raise
            what = "interrupted" if isinstance(stop, KeyboardInterrupt) else "terminated"
            print(f"fmtc {args.command}: {what}; nothing half-done was published, and finished "
                  "work is kept: rerun the same command to continue", file=sys.stderr)
            return EXIT_INTERRUPTED if isinstance(stop, KeyboardInterrupt) else EXIT_TERMINATED
        except FmtcError as error:
            if args.debug:
                raise
            print(one_line(f"fmtc {args.command}: error: ", str(error)), file=sys.stderr)
            return error.exit_code
        except (OSError, ValueError) as error:
            # Not raised on purpose by fmtc: a file-system problem or a check that has not yet
            # been given its own error class. One line still, and the way to see more.
            if args.debug:
                raise
            print(one_line(f"fmtc {args.command}: error: ", _message_of(error),
                           " (run with --debug for the traceback)"), file=sys.stderr)
            return EXIT_INVALID_DATA
