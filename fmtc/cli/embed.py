"""``fmtc embed``: BrainLM CLS features of a cohort's windows, computed once into the cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmtc.cli.options import add_plan_options, plan_from_args
from fmtc.execution import progress_enabled as bars
from fmtc.plan import READOUTS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc embed``."""
    parser = subparsers.add_parser(
        "embed", help="encode a cohort's windows with the frozen BrainLM (cached)",
        description="Compute the BrainLM TS feature (brainlm.readout) of every subject's "
                    "deterministic windows and store them in the plan's feature cache "
                    "(outputs.features_dir), keyed by cohort content, encoder weights, window "
                    "spec, token order and read-out. A second run with the same inputs reads "
                    "the cache.")
    parser.add_argument("--cohort", type=Path, default=None, metavar="DIR",
                        help="cohort folder (default: the plan's cohort, data.cohort)")
    parser.add_argument("--brainlm", default=None, metavar="SOURCE",
                        help="encoder: simulated-pretrained, random-init (the same architecture "
                             "untrained), a checkpoint folder, or a Hugging Face repo id such as "
                             "vandijklab/brainlm/old_13M (default: the plan's brainlm.source)")
    parser.add_argument("--readout", choices=READOUTS, default=None,
                        help="TS feature of a window: cls (the paper's), mean of the region "
                             "tokens, or network-mean (per atlas network) (default: "
                             "brainlm.readout)")
    add_plan_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Encode (or find in the cache) and print where the features are."""
    import time

    from fmtc.cohort.folder import load_cohort
    from fmtc.device import resolve_device
    from fmtc.pipeline import cohort_path, encoder_spec, feature_settings
    from fmtc.represent.features import cohort_features

    plan = plan_from_args(args, {"brainlm": {"readout": args.readout}} if args.readout else None)
    device = resolve_device(plan.device)
    began = time.perf_counter()
    folder = args.cohort if args.cohort is not None else cohort_path(plan, progress=bars())
    cohort = load_cohort(folder, label=plan.data.label, require_label=False)
    features = cohort_features(cohort, feature_settings(plan),
                               encoder_spec(plan, args.brainlm), device=device, progress=bars())
    seconds = time.perf_counter() - began
    print(f"BrainLM {plan.brainlm.readout} features of {len(features.subject_ids)} subjects "
          f"from {features.encoder['source']} ({features.encoder['token_order']} token order)")
    print(f"  shape {tuple(features.cls.shape)} (subjects, windows, features)"
          f"{', read back' if features.reused else ''}, {seconds:.1f} s")
    print(f"  {features.folder}")
    return 0
