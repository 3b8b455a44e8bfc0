"""``fmtc evaluate``: cross-validate registered models on a cohort (an ad-hoc experiment)."""

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
from fmtc.plan import READOUTS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc evaluate``."""
    from fmtc.evaluate.selection import SELECTIONS
    from fmtc.predict.registry import model_names

    parser = subparsers.add_parser(
        "evaluate", help="cross-validate models on a cohort and write a run folder",
        description="Repeated stratified k-fold over subjects; every model on the same splits. "
                    "Models with epochs are selected honestly (evaluation.honest_epoch: the "
                    "last epoch of the declared schedule by default, or the best epoch on an "
                    "inner validation split) and, on request, by the paper's rule (best epoch "
                    "on the test fold itself, kept to measure its optimism); both read one "
                    "training. Writes a run folder named by the run's identity; an identical "
                    "earlier run is read back instead of recomputed. `fmtc models` lists the "
                    "models.")
    parser.add_argument("--cohort", type=Path, default=None, metavar="DIR",
                        help="cohort folder (default: the plan's data.cohort)")
    parser.add_argument("--model", action="append", default=None, metavar="NAME",
                        help=f"model to evaluate, one of {', '.join(model_names())}; repeat "
                             "for several (default: evaluation.models, else the registry's "
                             "default models)")
    parser.add_argument("--selection", action="append", choices=SELECTIONS, default=None,
                        help="epoch selection; repeat for both (default: evaluation.selection)")
    parser.add_argument("--label", default=None, help="label column (default: the plan's)")
    parser.add_argument("--brainlm", default=None, metavar="SOURCE",
                        help="BrainLM encoder: simulated-pretrained, random-init, a checkpoint "
                             "folder or a Hub id (default: brainlm.source)")
    parser.add_argument("--readout", choices=READOUTS, default=None,
                        help="TS feature of a window: cls (the paper's), mean of the region "
                             "tokens, or network-mean (per atlas network) (default: "
                             "brainlm.readout)")
    add_run_options(parser)
    add_plan_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, say where the run folder is."""
    from fmtc.cohort.folder import load_cohort
    from fmtc.pipeline import cohort_path, evaluate, executor_for
    from fmtc.predict.registry import check_models, default_models

    overrides = run_overrides(args)
    if args.label is not None:
        overrides["data"] = {"label": args.label}
    if args.readout is not None:
        overrides["brainlm"] = {"readout": args.readout}
    plan = plan_from_args(args, overrides=overrides)
    models = check_models(dict.fromkeys(args.model or plan.evaluation.models or default_models()),
                          "--model")
    check_encoder_options(args, models)
    check_execution(args, plan)
    root = args.cohort if args.cohort is not None else cohort_path(plan, progress=bars())
    cohort = load_cohort(root, label=plan.data.label)
    print_cohort(cohort)
    result = evaluate(plan, models, list(dict.fromkeys(args.selection or [])) or None,
                      cohort=cohort, out=args.out, source=args.brainlm,
                      executor=executor_for(plan),
                      permute_labels=args.permute_labels, overwrite=args.overwrite,
                      progress=bars())
    print_run(result, plan, args.permute_labels)
    return 0


def check_encoder_options(args: argparse.Namespace, models: list[str]) -> None:
    """Refuse ``--brainlm`` / ``--readout`` when none of the models reads BrainLM features.

    They would change nothing in the run (a checkpoint that does not exist would not even be
    noticed): a usage error naming both options is clearer than a silent no-op.

    Raises
    ------
    fmtc.errors.UsageError
    """
    from fmtc.errors import UsageError
    from fmtc.plan import show
    from fmtc.predict.registry import get_model, model_names

    given = [f"{flag} {show(value, 60) if flag == '--brainlm' else value}"
             for flag, value in (("--brainlm", args.brainlm), ("--readout", args.readout))
             if value is not None]
    if not given or any("cls" in get_model(m).inputs for m in models):
        return
    chosen = "--model " + " --model ".join(models) if args.model else (
        f"evaluation.models ({', '.join(models)})")
    readers = [m for m in model_names() if "cls" in get_model(m).inputs]
    raise UsageError(f"{' and '.join(given)} would change nothing with {chosen}: none of these "
                     "models reads BrainLM features; drop the option, or add a model that does "
                     f"({', '.join(readers)})")
