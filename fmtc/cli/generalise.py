"""``fmtc generalise``: drug-, study- and cohort-level generalisation of registered models."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmtc.cli.options import (
    add_plan_options,
    add_run_options,
    check_execution,
    plan_from_args,
    print_cohort,
    run_overrides,
    seed,
)
from fmtc.execution import progress_enabled as bars


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc generalise``."""
    from fmtc.evaluate.generalisation import SCHEMES
    from fmtc.predict.registry import model_names

    parser = subparsers.add_parser(
        "generalise", help="train on one drug arm / study / cohort, test on another",
        description="Generalisation beyond the cohort's own folds: drug (train on one drug arm, "
                    "test on the other), study (leave one study out) and cross-cohort (train on "
                    "the plan's cohort, test on another). Each cross fit is reported beside CV "
                    "within its training group and the drop between them, with a 95%% subject "
                    "bootstrap interval of the cross MCC; torch models take the last epoch of "
                    "the schedule. Also reports how well each model input predicts the study "
                    "(a confounds check). Writes a run folder named by the run's identity.")
    parser.add_argument("--cohort", type=Path, default=None, metavar="DIR",
                        help="cohort folder (default: the plan's data.cohort)")
    parser.add_argument("--model", action="append", default=None, metavar="NAME",
                        help=f"model, one of {', '.join(model_names())}; repeat for several "
                             "(default: evaluation.models, else the registry's default "
                             "models)")
    parser.add_argument("--scheme", action="append", choices=SCHEMES, default=None,
                        help="generalisation scheme; repeat for several (default: drug and "
                             "study)")
    parser.add_argument("--test-cohort", type=Path, default=None, metavar="DIR",
                        help="test cohort folder of the cross-cohort scheme")
    parser.add_argument("--test-seed", type=seed, default=None, metavar="N",
                        help="cross-cohort test cohort: new subjects (simulation.seed N) of the "
                             "plan's simulated population (same planted effects)")
    parser.add_argument("--test-study-shift", type=float, default=None, metavar="S",
                        help="cross-cohort test cohort: the plan's simulated cohort with "
                             "simulation.study_shift S (with a --test-seed other than the plan's)")
    add_run_options(parser)
    add_plan_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the schemes, print the table, say where the run folder is."""
    from fmtc.cohort.folder import load_cohort
    from fmtc.errors import UsageError
    from fmtc.pipeline import cohort_path, executor_for, run_generalisation
    from fmtc.predict.registry import check_models, default_models

    if args.permute_labels:
        raise UsageError("fmtc generalise has no --permute-labels (use fmtc evaluate)")
    plan = plan_from_args(args, overrides=run_overrides(args))
    models = check_models(dict.fromkeys(args.model or plan.evaluation.models or default_models()),
                          "--model")
    schemes = list(dict.fromkeys(args.scheme or ["drug", "study"]))
    changes = {k: v for k, v in (("seed", args.test_seed),
                                 ("study_shift", args.test_study_shift)) if v is not None}
    if changes and args.test_cohort is not None:
        raise UsageError("give --test-cohort or --test-seed/--test-study-shift, not both")
    test_options = [flag for flag, value in (("--test-cohort", args.test_cohort),
                                             ("--test-seed", args.test_seed),
                                             ("--test-study-shift", args.test_study_shift))
                    if value is not None]
    if test_options and "cross-cohort" not in schemes:
        verb = "applies" if len(test_options) == 1 else "apply"
        raise UsageError(f"{' and '.join(test_options)} only {verb} to --scheme cross-cohort, but "
                         f"the schemes are {', '.join(schemes)}"
                         f"{'' if args.scheme else ' (the default)'}: add --scheme "
                         f"cross-cohort, or drop {' and '.join(test_options)}")
    if "cross-cohort" in schemes and args.test_cohort is None and not changes:
        raise UsageError("--scheme cross-cohort needs --test-cohort DIR, or --test-seed N / "
                         "--test-study-shift S (a second simulated cohort)")
    check_execution(args, plan)
    root = args.cohort if args.cohort is not None else cohort_path(plan, progress=bars())
    cohort = load_cohort(root, label=plan.data.label)
    print_cohort(cohort)
    test_cohort = (load_cohort(args.test_cohort, label=plan.data.label)
                   if args.test_cohort is not None else None)
    test_simulation = changes or None
    result = run_generalisation(plan, models, schemes, cohort=cohort, test_cohort=test_cohort,
                                test_simulation=test_simulation, out=args.out,
                                executor=executor_for(plan), overwrite=args.overwrite,
                                progress=bars())
    shown = ["arm", "scheme", "kind", "train_on", "test_on", "n_test", "mcc", "mcc_low",
             "mcc_high", "auc", "within_mcc", "drop_mcc"]
    print(result.table[shown].to_string(index=False, float_format="%.3f"))
    if not result.confounds.empty:
        print("\nStudy predictability of the model inputs (chance: balanced accuracy "
              f"{result.confounds['chance'].iloc[0]:.2f}):")
        print(result.confounds.to_string(index=False, float_format="%.3f"))
    print(f"\n{'reused' if result.reused else 'run folder'}: {result.run_dir}")
    return 0
