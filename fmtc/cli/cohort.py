"""``fmtc cohort``: validate, describe and build cohort folders."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc cohort validate | info | from-fmriprep``."""
    from fmtc.cli.cohort_build import add_from_fmriprep

    parser = subparsers.add_parser("cohort", help="validate, describe or build a cohort folder")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    validate = actions.add_parser(
        "validate", help="check a cohort folder against the contract (exit status 0 if valid)")
    validate.add_argument("cohort", type=Path, metavar="DIR")
    validate.add_argument("--label", default=None, help="label column (default: LabelColumn)")
    validate.set_defaults(handler=run_validate)

    info = actions.add_parser("info", help="summarise a cohort folder")
    info.add_argument("cohort", type=Path, metavar="DIR")
    info.add_argument("--label", default=None, help="label column (default: LabelColumn)")
    info.set_defaults(handler=run_info)

    add_from_fmriprep(actions)


def run_validate(args: argparse.Namespace) -> int:
    """Print every problem of the folder; exit 1 when there is any."""
    from fmtc.cohort.folder import validate_cohort

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = validate_cohort(args.cohort, label=args.label)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    if problems:
        print(f"{args.cohort}: INVALID, {len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(f"{args.cohort}: valid")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print subjects, labels by covariate, series lengths, TR and the planted truth."""
    import numpy as np

    from fmtc.cohort.folder import load_cohort

    cohort = load_cohort(args.cohort, label=args.label)
    print(repr(cohort))
    if cohort.is_simulated:
        print("SIMULATED data: synthetic subjects made by `fmtc simulate`, not patients.")
    lengths = np.array([len(cohort.timeseries[s]) for s in cohort.subject_ids])
    trs = sorted(set(cohort.repetition_time.values()))
    print(f"folder        {cohort.root}")
    print(f"content hash  {cohort.content_hash}")
    print(f"atlas         {cohort.atlas} ({cohort.n_regions} regions, "
          f"{cohort.regions['network'].nunique()} networks)")
    print(f"volumes       {lengths.min()}–{lengths.max()} (median {int(np.median(lengths))}); "
          f"TR {', '.join(f'{t:g}' for t in trs)} s")
    if cohort.excluded:
        print(f"left out      {len(cohort.excluded)} without a label: {', '.join(cohort.excluded)}")
    table = cohort.participants
    for covariate in ("Drug", "study"):
        if covariate in table.columns:
            counts = table.groupby(covariate)[cohort.label_column].agg(["count", "sum"])
            print(f"{cohort.label_column} by {covariate}:")
            for value, row in counts.iterrows():
                print(f"  {value}: {int(row['sum'])} positive of {int(row['count'])}")
    if cohort.ground_truth:
        truth = cohort.ground_truth
        print(f"planted truth effect_size={truth.get('effect_size')}: "
              f"{len(truth.get('fc_edges', []))} FC edges between {truth.get('fc_networks')}, "
              f"{len(truth.get('ts_regions', []))} temporal regions "
              + (f"in {truth['ts_network']}" if truth.get("ts_network")
                 else "scattered across networks"))
    return 0
