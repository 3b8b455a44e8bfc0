"""``fmtc pretrain``: masked-patch pretraining of BrainLM (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmtc.cli.options import add_plan_options, plan_from_args
from fmtc.execution import progress_enabled as bars


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc pretrain``."""
    parser = subparsers.add_parser(
        "pretrain", help="pretrain BrainLM with its masked-patch objective",
        description="Pretrain BrainLM (masked-patch reconstruction, settings from the plan's "
                    "'pretrain' section) and save it as a checkpoint folder that --brainlm "
                    "and brainlm.source accept. Training runs in a partial folder beside "
                    "--out and is published when finished; an interrupted run resumes there "
                    "from its last epoch, and a finished one is read back. Without --cohort, "
                    "--out and --init this builds the plan's simulated-pretrained encoder.")
    parser.add_argument("--cohort", type=Path, default=None, metavar="DIR",
                        help="cohort folder, labels not needed (default: the plan's SIMULATED "
                             "pain-agnostic pretraining cohort)")
    parser.add_argument("--out", type=Path, default=None, metavar="CKPT_DIR",
                        help="checkpoint folder to write (default, only without --cohort and "
                             "--init: the simulated-pretrained encoder's cache folder)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the checkpoint already in --out")
    parser.add_argument("--probe-cohort", type=Path, default=None, metavar="DIR",
                        help="labelled cohort for the linear-probe report (pretrain.probe_points "
                             "points; default without --cohort: the plan's SIMULATED probe "
                             "cohort; with --cohort: no probe)")
    parser.add_argument("--init", default=None, metavar="SOURCE",
                        help="continue from this encoder (checkpoint folder, Hub id or "
                             "simulated-pretrained) instead of a random initialisation")
    add_plan_options(parser)
    parser.set_defaults(handler=run)


def format_probe(report: dict) -> str:
    """The probe report as a table: a row per read-out and target, a column per step."""
    points = report["points"]
    rows = [(r, t) for r, targets in points[0]["mcc"].items() for t in targets]
    width = max(len(f"{r}:{t}") for r, t in rows) + 2
    lines = ["linear-probe MCC by pretraining step (step 0: the random initialisation)",
             " " * width + "".join(f"{p['step']:>8}" for p in points)]
    lines += [f"{r}:{t}".ljust(width) + "".join(f"{p['mcc'][r][t]:>8.2f}" for p in points)
              for r, t in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Pretrain, then print the held-out masked-patch losses and where the model is."""
    import json
    import time

    from fmtc.device import resolve_device
    from fmtc.errors import UsageError
    from fmtc.lifecycle import materialise
    from fmtc.pipeline import encoder_spec
    from fmtc.represent.encoder import (
        PretrainedEncoder,
        pretraining_cohort_settings,
        simulated_encoder,
    )
    from fmtc.represent.pretrain import LOG_FILE

    plan = plan_from_args(args)
    device = resolve_device(plan.device)
    began = time.perf_counter()
    spec = encoder_spec(plan)
    if args.out is None and (args.cohort is not None or args.init is not None
                             or args.probe_cohort is not None):
        raise UsageError("--out is required with --cohort, --init or --probe-cohort (only "
                         "the plan's simulated-pretrained encoder has a default folder)")
    if args.probe_cohort is not None and not plan.pretrain.probe_points:
        raise UsageError("--probe-cohort needs pretrain.probe_points >= 1 in the plan")
    if args.cohort is None and args.init is None and args.probe_cohort is None:
        encoder = simulated_encoder(spec, device, progress=bars())
    else:
        probe = args.probe_cohort
        if probe is None and args.cohort is None and plan.pretrain.probe_points:
            probe = spec.probe
        encoder = PretrainedEncoder(
            plan.pretrain, plan.windows, spec.store,
            args.cohort if args.cohort is not None else pretraining_cohort_settings(spec),
            probe, spec.with_source(args.init) if args.init is not None else None,
            device=device, label=plan.data.label, progress=bars())
    found = materialise(encoder, args.out, overwrite=args.overwrite)
    out = found.folder
    log = json.loads((out / LOG_FILE).read_text(encoding="utf-8"))
    held_out = log["held_out"]
    losses = ", ".join(f"{name} {value:.4f}" for name, value in held_out["loss"].items())
    print(f"held-out masked-patch loss ({len(held_out['subjects'])} subjects, "
          f"{held_out['n_windows']} windows): {losses}")
    print(f"  trained / random init = {held_out['trained_vs_random_init']:.3f}, "
          f"trained / zero prediction = {held_out['trained_vs_zero_prediction']:.3f}")
    if "probe" in log:
        print(format_probe(log["probe"]))
    print(f"BrainLM checkpoint in {out} ({time.perf_counter() - began:.1f} s)")
    return 0
