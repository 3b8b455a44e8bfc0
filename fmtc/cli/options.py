"""Options shared by several sub-commands (plan file and profile, execution)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from fmtc.plan import SEED_LIMIT, Plan, load_plan


def seed(text: str) -> int:
    """``type=`` of ``--seed``-like options: an integer in ``0 .. 2**32 - 1``.

    Raises
    ------
    argparse.ArgumentTypeError
        Shown by argparse as ``fmtc <command>: error: argument --seed: <message>`` (exit 2).
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer seed") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is not a seed: give an integer from 0 to "
                                         f"2**32 - 1 = {SEED_LIMIT - 1}")
    return value


def at_least(minimum: int) -> Callable[[str], int]:
    """``type=`` of a count option: an integer ``>= minimum`` (argparse names the option)."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    count.__name__ = f"integer >= {minimum}"
    return count


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--profile`` and ``--plan`` to a sub-command."""
    parser.add_argument("--profile", default=None,
                        help="profile of the experiment plan (smoke, quick, paper, or your own; "
                             "default: the plan's default_profile)")
    parser.add_argument("--plan", default=None, metavar="YAML",
                        help="plan file overriding the built-in profiles (default: the first "
                             "_config.yml that is an experiment plan, from the working "
                             "directory up to the repository root)")


def plan_from_args(args: argparse.Namespace, overrides: dict | None = None) -> Plan:
    """Resolve the plan named by ``--profile`` / ``--plan`` with command-line overrides."""
    return load_plan(args.profile, args.plan, overrides=overrides)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options of commands that run an experiment: seed, repeats, execution, output."""
    parser.add_argument("--seed", type=seed, default=None,
                        help="seed of the splits and of every fit (default: the plan's seed)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats of the k-fold CV (default: evaluation.repeats)")
    parser.add_argument("--permute-labels", action="store_true",
                        help="shuffle the labels once before anything: a null run that should "
                             "give chance-level metrics")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="local worker processes for the fits (-1: every core; default: "
                             "execution.n_jobs); results do not depend on it")
    parser.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                        help="run the fits on a running Dask cluster (tcp://host:8786) "
                             "instead of local workers")
    parser.add_argument("--out", default=None, metavar="RUN_DIR",
                        help="run folder (default: <runs_dir>/<name>_<profile>_<key>, key = "
                             "hash of everything that defines the result)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out when it holds another run")
    parser.add_argument("--keep-weights", action="store_true",
                        help="keep every torch fit's weights (what `fmtc interpret` reads; "
                             "default: only the arms the plan's experiment names)")


def run_overrides(args: argparse.Namespace) -> dict:
    """Plan overrides of :func:`add_run_options` (seed, repeats, execution)."""
    overrides: dict = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    evaluation = {k: v for k, v in (("repeats", args.repeats),
                                     ("keep_weights", True if args.keep_weights else None))
                  if v is not None}
    if evaluation:
        overrides["evaluation"] = evaluation
    execution = {k: v for k, v in (("n_jobs", args.jobs), ("dask_scheduler", args.dask_scheduler))
                 if v is not None}
    if execution:  # validated with the plan, before anything runs
        overrides["execution"] = execution
    return overrides


def check_execution(args: argparse.Namespace, plan: Plan) -> None:
    """Checks of :func:`add_run_options` that need the plan, made before any cohort is read.

    A Dask scheduler (``--dask-scheduler`` or ``execution.dask_scheduler``) needs the
    ``distributed`` package (:func:`fmtc.execution.check_dask_available`).
    """
    from fmtc.execution import check_dask_available

    option = "--dask-scheduler" if args.dask_scheduler else "execution.dask_scheduler"
    check_dask_available(plan.execution.dask_scheduler, option)


def print_cohort(cohort) -> None:
    """Say which cohort a command runs on, and that it is SIMULATED when it is."""
    print(repr(cohort))
    if cohort.is_simulated:
        print("SIMULATED cohort: synthetic subjects with a planted effect, not patients.")


def print_run(run, plan: Plan, permuted: bool) -> None:
    """Print a run's table, its paired contrasts, optimism and folder (shared by commands)."""
    from fmtc.evaluate.protocol import selection_optimism
    from fmtc.report.tables import format_contrasts, format_table

    ev = plan.evaluation
    if permuted:
        print("Labels PERMUTED (null run): expect chance-level metrics.")
    print(f"\n{ev.folds}-fold CV x {ev.repeats} repeat(s), profile {plan.profile}, seed "
          f"{plan.seed}; mean pooled metric [{ev.bootstrap} subject-bootstrap 95% interval], "
          f"permutation p ({ev.permutations} permutations of the labels against fixed "
          "out-of-fold predictions):")
    print(format_table(run.summary))
    if run.contrasts is not None and len(run.contrasts):
        print(f"\npaired differences of pooled MCC, {run.contrasts['selection'].iloc[0]} "
              "selection (same splits; paired subject-bootstrap 95% interval, paired "
              "permutation p):")
        print(format_contrasts(run.contrasts))
    for row in selection_optimism(run.metrics).itertuples():
        print(f"optimism of the paper selection, {row.arm}: MCC {row.paper:.3f} (paper) - "
              f"{row.honest:.3f} (honest) = {row.optimism:+.3f}")
    provenance = run.tables["provenance"]
    total = provenance["timings"]["total_s"]
    fits = provenance.get("fits", {})
    state = ("reused: same identity" if run.reused else
             f"{total:.0f} s; {fits.get('computed', 0)} fit(s) computed, "
             f"{fits.get('read_back', 0)} read back")
    print(f"run folder: {run.run_dir} ({state})")
