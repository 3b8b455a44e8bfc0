"""The ``fmtc`` command line: thin wrappers that read the plan and call the stages.

Each sub-command lives in its own module of this package, which defines
``register(subparsers)``; the module's handler receives the parsed arguments
and returns an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fmtc import __version__

# Order of appearance in ``fmtc --help``: the data path, top to bottom.
_COMMAND_MODULES = (
    "fmtc.cli.simulate",
    "fmtc.cli.fetch",
    "fmtc.cli.cohort",
    "fmtc.cli.pretrain",
    "fmtc.cli.embed",
    "fmtc.cli.evaluate",
    "fmtc.cli.reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``fmtc`` argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="fmtc",
        description="Reproducible companion to FMM_TC (Fan et al., MICCAI 2025).",
    )
    parser.add_argument("--version", action="version", version=f"fmtc {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from fmtc.cohort.folder import CohortError
    from fmtc.plan import PlanError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (PlanError, CohortError, FileNotFoundError, ValueError) as error:
        print(f"fmtc {args.command}: error: {error}", file=sys.stderr)
        return 2
