"""``fmtc evaluate``: cross-validate FMM_TC, its unimodal variants and the logistic baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmtc.cli.options import add_plan_options, plan_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc evaluate``."""
    from fmtc.evaluate.protocol import MODELS
    from fmtc.evaluate.selection import SELECTIONS

    parser = subparsers.add_parser(
        "evaluate", help="cross-validate models on a cohort and write a run folder",
        description="Repeated stratified k-fold over subjects. Torch models choose their epoch "
                    "on an inner validation split (honest) or on the test fold (paper, the "
                    "authors' optimistic rule, kept to measure it); both read one training "
                    "trajectory. Writes metrics.csv, predictions.csv, summary.csv, "
                    "trajectories.csv, splits.json, models.json, weights/ and provenance.json.")
    parser.add_argument("--cohort", type=Path, default=None, metavar="DIR",
                        help="cohort folder (default: the plan's data.cohort)")
    parser.add_argument("--model", action="append", choices=MODELS, default=None,
                        help="model to evaluate; repeat for several (default: evaluation.models)")
    parser.add_argument("--selection", action="append", choices=SELECTIONS, default=None,
                        help="epoch selection; repeat for both (default: evaluation.selection)")
    parser.add_argument("--seed", type=int, default=None, help="seed of splits and training")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of the k-fold CV")
    parser.add_argument("--permute-labels", action="store_true",
                        help="shuffle the labels once before anything: a null run that should "
                             "give chance-level metrics")
    parser.add_argument("--label", default=None, help="label column (default: the plan's)")
    parser.add_argument("--brainlm", default=None, metavar="SOURCE",
                        help="BrainLM checkpoint folder or hub id (default: brainlm.source)")
    parser.add_argument("--out", type=Path, default=None, metavar="RUN_DIR",
                        help="run folder (default: <runs_dir>/evaluate_<models>_<profile>_"
                             "seed-<seed>)")
    add_plan_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, say where the run folder is."""
    from fmtc.cohort.folder import load_cohort
    from fmtc.device import resolve_device
    from fmtc.evaluate.protocol import (
        default_run_dir,
        evaluate_cohort,
        format_table,
        selection_optimism,
    )
    from fmtc.workflow import cohort_path

    overrides: dict = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.repeats is not None:
        overrides["evaluation"] = {"repeats": args.repeats}
    if args.label is not None:
        overrides["data"] = {"label": args.label}
    plan = plan_from_args(args, overrides=overrides)
    device = resolve_device(plan.device)
    models = list(dict.fromkeys(args.model or plan.evaluation.models))
    selections = list(dict.fromkeys(args.selection or [plan.evaluation.selection]))
    root = args.cohort if args.cohort is not None else cohort_path(plan, progress=True)
    cohort = load_cohort(root, label=plan.data.label)
    print(repr(cohort))
    if cohort.is_simulated:
        print("SIMULATED cohort: synthetic subjects with a planted effect, not patients.")
    if args.permute_labels:
        print("Labels PERMUTED (null run): expect chance-level metrics.")
    result = evaluate_cohort(plan, cohort, models, selections, out=args.out, device=device,
                             source=args.brainlm, permute_labels=args.permute_labels,
                             progress=True)
    ev = plan.evaluation
    print(f"\n{ev.folds}-fold CV x {ev.repeats} repeat(s), profile {plan.profile}, seed "
          f"{plan.seed}; mean pooled metric [{ev.bootstrap} subject-bootstrap 95% interval], "
          f"permutation p ({ev.permutations} permutations of the labels against fixed "
          "out-of-fold predictions):")
    print(format_table(result.summary))
    optimism = selection_optimism(result.metrics)
    for row in optimism.itertuples():
        print(f"optimism of the paper selection, {row.model}: MCC {row.paper:.3f} (paper) - "
              f"{row.honest:.3f} (honest) = {row.optimism:+.3f}")
    out = args.out if args.out is not None else default_run_dir(plan, models, args.permute_labels)
    print(f"run folder: {out} ({result.timings['total_s']:.0f} s)")
    return 0
