"""``fmtc experiment``: run a named experiment of the plan (arms paired on identical splits)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmtc.cli.options import (
    add_plan_options,
    add_run_options,
    check_execution,
    plan_from_args,
    print_cohort,
    print_run,
    run_overrides,
)
from fmtc.execution import progress_enabled as bars


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc experiment``."""
    parser = subparsers.add_parser(
        "experiment", help="run a named experiment of the plan and its paired contrasts",
        description="An experiment (plan key experiments.NAME) evaluates named arms - a model, "
                    "its encoder and protocol switches - on one cohort with identical splits, "
                    "and reports paired differences between the arms it contrasts (subject "
                    "bootstrap interval, paired permutation p). `--list` shows the plan's "
                    "experiments.")
    parser.add_argument("name", nargs="?", default=None, help="experiment name")
    parser.add_argument("--list", action="store_true", help="list the plan's experiments")
    parser.add_argument("--cohort", type=Path, default=None, metavar="DIR",
                        help="cohort folder (default: the plan's cohort, data.cohort)")
    add_run_options(parser)
    add_plan_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the experiment (or list them), print the tables and the run folder."""
    from fmtc.errors import UsageError
    from fmtc.pipeline import executor_for, experiment_plan, plan_cohort, run_experiment

    plan = plan_from_args(args, overrides=run_overrides(args))
    if args.list or args.name is None:
        if not plan.experiments:
            print(f"profile {plan.profile} declares no experiments")
        for name, spec in plan.experiments.items():
            arms = ", ".join(f"{a} ({arm.model})" for a, arm in spec.arms.items())
            print(f"{name}: {spec.description.strip() or '(no description)'}\n  arms: {arms}")
            for a, b in spec.contrasts:
                print(f"  contrast: {a} - {b}")
        if args.list:
            return 0
        raise UsageError("name the experiment to run (one of those listed above), or pass "
                         "--list")
    experiment_plan(plan, args.name)  # an unknown name fails before any work
    check_execution(args, plan)
    if args.cohort is not None:
        from fmtc.cohort.folder import load_cohort

        cohort = load_cohort(args.cohort, label=plan.data.label)
    else:
        cohort = plan_cohort(plan, progress=bars())
    print_cohort(cohort)
    result = run_experiment(plan, args.name, cohort=cohort, out=args.out,
                            executor=executor_for(plan),
                            permute_labels=args.permute_labels, overwrite=args.overwrite,
                            progress=bars())
    print_run(result, plan, args.permute_labels)
    return 0
