"""``fmtc simulate``: write the embedded simulated cohort (or a variant of it)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from fmtc.cli.options import add_plan_options, plan_from_args, seed
from fmtc.execution import progress_enabled as bars

# (flag, SimulationPlan field, type, help)
_SETTINGS = (
    ("--n-subjects", "n_subjects", int, "number of subjects"),
    ("--n-volumes", "n_volumes", int, "volumes per recording"),
    ("--tr", "tr", float, "repetition time in seconds"),
    ("--seed", "seed", seed, "random seed (same arguments give byte-identical files)"),
    ("--effect-size", "effect_size", float, "0: no label signal; 1: paper-like; 3: easy"),
    ("--fc-effect", "fc_effect", float, "multiplier of the connectivity effect"),
    ("--ts-effect", "ts_effect", float, "multiplier of the temporal effect"),
    ("--responder-fraction", "responder_fraction", float, "fraction of responders"),
    ("--duloxetine-fraction", "duloxetine_fraction", float, "fraction in the duloxetine arm"),
    ("--n-studies", "n_studies", int, "studies (sites), assigned by alternation"),
    ("--study-shift", "study_shift", float,
     "per-study noise, global signal, motion and responder fraction (0: none)"),
    ("--covariate-effect", "covariate_effect", float,
     "link of head motion (mean_fd) to the label (0: independent)"),
    ("--drug-specificity", "drug_specificity", float,
     "fraction of placebo subjects whose brain signal is unrelated to their response "
     "(0: the signal is prognostic in both arms; 1: it predicts response to the drug only)"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc simulate``."""
    parser = subparsers.add_parser(
        "simulate", help="write a SIMULATED cohort with a known planted truth",
        description="Write a simulated cohort folder (SIM424 atlas, network dynamics, a "
                    "responder effect planted in connectivity and in temporal structure; "
                    "ground_truth.json records it). Defaults come from the plan's "
                    "'simulation' section.")
    parser.add_argument("--out", type=Path, default=None,
                        help="cohort folder (default: the plan's cohort cache, named by the "
                             "settings' hash)")
    for flag, _, kind, text in _SETTINGS:
        parser.add_argument(flag, type=kind, default=None, help=text)
    parser.add_argument("--unlabelled", action="store_true",
                        help="pain-agnostic cohort for pretraining: other subjects, no label, "
                             "no planted effect")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace what --out holds (default: refuse unless it holds this "
                             "very cohort)")
    add_plan_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Simulate, then print where the cohort is."""
    from fmtc.acquire.atlas import get_atlas
    from fmtc.plan import PlanError
    from fmtc.simulate.embedded import embedded_cohort
    from fmtc.simulate.generator import simulate_cohort
    from fmtc.storage import check_replaceable, staged_folder

    plan = plan_from_args(args)
    changes = {field: getattr(args, field) for _, field, _, _ in _SETTINGS
               if getattr(args, field) is not None}
    try:
        settings = replace(plan.simulation, **changes)
        settings.check("simulation")
    except PlanError as error:
        text = str(error)
        for flag, field, _, _ in _SETTINGS:  # name the option the user typed
            text = text.replace(f"plan key 'simulation.{field}'",
                                f"{flag} (plan key 'simulation.{field}')")
        raise PlanError(text) from None
    if args.out is None:
        out = embedded_cohort(plan, settings, unlabelled=args.unlabelled, progress=bars())
    elif _same_simulation(args.out, settings, args.unlabelled) and not args.overwrite:
        print(f"SIMULATED cohort with these settings already in {args.out}; kept as it is")
        return 0
    else:
        atlas = get_atlas("SIM424", cache_dir=plan.path(plan.outputs.data_dir) / "atlases")
        check_replaceable(args.out, ("dataset_description.json",), "cohort folder")
        with staged_folder(args.out, overwrite=args.overwrite, what="cohort") as staging:
            simulate_cohort(staging, settings, atlas, unlabelled=args.unlabelled,
                            progress=bars())
        out = args.out
    kind = "unlabelled pain-agnostic" if args.unlabelled else "labelled"
    print(f"SIMULATED {kind} cohort of {settings.n_subjects} subjects written to {out}")
    return 0


def _same_simulation(folder: Path, settings: object, unlabelled: bool) -> bool:
    """Whether ``folder`` is a complete simulated cohort made with exactly these settings."""
    import json

    from fmtc.simulate.generator import GENERATOR_VERSION

    try:
        description = json.loads((folder / "dataset_description.json").read_text("utf-8"))
        recorded = description["SimulationParameters"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    wanted = settings.identity() | {"unlabelled": unlabelled,
                                    "generator_version": GENERATOR_VERSION}
    return recorded == wanted
