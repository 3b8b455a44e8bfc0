"""``fmtc cohort from-fmriprep``: bring your own fMRIPrep derivatives and labels.

Wired into ``fmtc cohort`` by :func:`add_from_fmriprep`; the build ends with the
same checks as ``fmtc cohort validate``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fmtc.cli.fetch import add_atlas_options, atlas_from_args, print_report
from fmtc.cli.options import at_least


def add_from_fmriprep(cohort_subparsers: argparse._SubParsersAction) -> None:
    """Add ``from-fmriprep`` to the sub-commands of ``fmtc cohort``."""
    parser = cohort_subparsers.add_parser(
        "from-fmriprep", help="build a cohort from any fMRIPrep derivatives folder",
        description="Parcellate every labelled subject of an fMRIPrep derivatives folder into "
                    "a cohort folder, then validate it. A DataLad dataset has content fetched "
                    "and dropped per subject.")
    parser.add_argument("derivatives", type=Path, metavar="DERIV_DIR")
    parser.add_argument("--participants", required=True, type=Path, metavar="TSV",
                        help="BIDS participants.tsv holding the label")
    parser.add_argument("--label", required=True, metavar="COL", help="label column")
    parser.add_argument("--positive", default=None, metavar="VALUE",
                        help="value of COL meaning 1 (default: COL already holds 0/1)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="cohort folder, published when complete (a partial build "
                             "resumes from the partial folder beside it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a different cohort already in --out")
    parser.add_argument("--atlas", default="A424", metavar="NAME",
                        help="A424 (default) or SIM424")
    add_atlas_options(parser)
    parser.add_argument("--space", default="MNI152NLin6Asym", help="BOLD space- entity")
    parser.add_argument("--desc", default="smoothAROMAnonaggr", help="BOLD desc- entity")
    parser.add_argument("--res", default=None, help="BOLD res- entity, if any")
    parser.add_argument("--task", default="rest", help="BOLD task- entity")
    parser.add_argument("--strategy", default=None,
                        choices=("simple", "scrubbing", "compcor", "ica_aroma"),
                        help="nilearn fMRIPrep denoising strategy (default: none)")
    parser.add_argument("--detrend", action="store_true", help="remove linear trends")
    parser.add_argument("--high-pass", type=float, default=None, metavar="HZ")
    parser.add_argument("--subjects", nargs="+", default=None, metavar="ID")
    parser.add_argument("--jobs", type=at_least(1), default=1, metavar="N",
                        help="subjects in parallel")
    parser.add_argument("--max-mean-fd", type=float, default=None, metavar="MM")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=_from_fmriprep)


def _from_fmriprep(args: argparse.Namespace) -> int:
    from fmtc.cohort.build import BoldSelection, build_from_fmriprep
    from fmtc.errors import InvalidDataError

    if not args.derivatives.is_dir():  # before the atlas is fetched
        state = "is a file, not a folder" if args.derivatives.exists() else "does not exist"
        raise InvalidDataError(f"derivatives folder {args.derivatives} {state}; give the "
                               "fMRIPrep output folder (the one holding sub-*/func/)")
    if args.participants.is_dir():
        raise InvalidDataError(f"--participants {args.participants} is a folder, not a table: "
                               "give the participants.tsv file that holds the label")
    if not args.participants.is_file():
        raise InvalidDataError(f"participants table {args.participants} does not exist")
    selection = BoldSelection(space=args.space, desc=args.desc, res=args.res, task=args.task,
                              strategy=args.strategy, detrend=args.detrend,
                              high_pass=args.high_pass)
    # Network, DataLad and disk failures reach fmtc.cli.main: one line, exit 1.
    report = build_from_fmriprep(args.derivatives, args.participants, args.label, args.out,
                                 atlas_from_args(args, args.atlas), positive=args.positive,
                                 selection=selection, subjects=args.subjects, jobs=args.jobs,
                                 max_mean_fd=args.max_mean_fd, progress=not args.no_progress,
                                 overwrite=args.overwrite)
    return print_report(report, "cohort from-fmriprep")
