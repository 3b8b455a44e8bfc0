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
                    "and brainlm.source accept. Training runs in .CKPT_DIR.partial beside "
                    "--out and is published when finished; an interrupted run resumes there "
                    "from its last epoch. Without --cohort, --out and --init this builds the "
                    "plan's simulated-pretrained encoder.")
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

    from fmtc.cohort.folder import load_cohort
    from fmtc.device import resolve_device
    from fmtc.errors import OutputExistsError, UsageError
    from fmtc.represent.encoder import (
        build_simulated_encoder,
        pretraining_cohort_settings,
        resolve_encoder,
        simulated_probe_set,
    )
    from fmtc.represent.pretrain import CHECKPOINT_FILE, LOG_FILE, pretrain_brainlm
    from fmtc.represent.probe import probe_set
    from fmtc.simulate.embedded import embedded_cohort
    from fmtc.storage import check_replaceable, check_writable, publish_folder

    plan = plan_from_args(args)
    device = resolve_device(plan.device)
    began = time.perf_counter()
    if args.out is None:
        if args.cohort is not None or args.init is not None or args.probe_cohort is not None:
            raise UsageError("--out is required with --cohort, --init or --probe-cohort (only "
                             "the plan's simulated-pretrained encoder has a default folder)")
        out = build_simulated_encoder(plan, device, progress=bars())
        log = json.loads((out / LOG_FILE).read_text(encoding="utf-8"))
    else:
        out = args.out
        check_replaceable(out, ("config.json", CHECKPOINT_FILE, LOG_FILE),
                          "BrainLM checkpoint folder")
        if out.exists() and not args.overwrite:
            raise OutputExistsError(f"{out} already holds a BrainLM checkpoint; choose another "
                                    "--out, or pass --overwrite to replace it")
        staging = out.parent / f".{out.name}.partial"  # resumed by the same command
        check_writable(out.parent, "the checkpoint", "Choose another --out")
        if args.cohort is None:
            folder = embedded_cohort(plan, pretraining_cohort_settings(plan), unlabelled=True,
                                     progress=bars())
        else:
            folder = args.cohort
        cohort = load_cohort(folder, label=plan.data.label, require_label=False)
        init = resolve_encoder(plan, device, args.init) if args.init is not None else None
        probes = None
        if args.probe_cohort is not None:
            if not plan.pretrain.probe_points:
                raise UsageError("--probe-cohort needs pretrain.probe_points >= 1 in the plan")
            probes = probe_set(load_cohort(args.probe_cohort, label=plan.data.label),
                               plan.windows)
        elif args.cohort is None and plan.pretrain.probe_points:
            probes = simulated_probe_set(plan, progress=bars())
        log = pretrain_brainlm(cohort, staging, plan.pretrain, init=init, device=device,
                               windows=plan.windows, progress=bars(), probes=probes)
        publish_folder(staging, out)
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
