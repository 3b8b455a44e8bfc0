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
    from fmtc.lifecycle import materialise
    from fmtc.pipeline import store_for
    from fmtc.plan import PlanError
    from fmtc.simulate.embedded import SimulatedCohort

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
    cohort = SimulatedCohort(settings, store_for(plan), args.unlabelled, progress=bars())
    found = materialise(cohort, args.out, overwrite=args.overwrite, load=False)
    if found.reused:
        print(f"SIMULATED cohort with these settings already in {found.folder}; kept as it is")
        return 0
    out = found.folder
    kind = "unlabelled pain-agnostic" if args.unlabelled else "labelled"
    print(f"SIMULATED {kind} cohort of {settings.n_subjects} subjects written to {out}")
    return 0

