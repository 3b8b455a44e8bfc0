"""``fmtc interpret``: integrated gradients of a run's fold models (regions, networks, modality)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmtc.cli.options import at_least
from fmtc.execution import progress_enabled as bars


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc interpret``."""
    from fmtc.interpret.baselines import BASELINES, DEFAULT_BASELINE
    from fmtc.interpret.settings import CPU_TS_SUBJECTS, IGSettings

    defaults = IGSettings()
    parser = subparsers.add_parser(
        "interpret", help="integrated gradients of a run's FMM_TC / TS / FC fold models",
        description="Attribute the responder evidence (logit_1 - logit_0) of every fold's test "
                    "subjects with the fold's own model (captum IntegratedGradients): the TS "
                    "and FC halves of FMM_TC's fused representation (each subject's TS share), "
                    "every FC edge, and the input time-series window through the frozen "
                    "BrainLM encoder; aggregated to regions and atlas networks. Simulated "
                    "cohorts also get ground_truth_recovery.json (recall@k of the planted "
                    "regions, against chance and non-IG references). Writes tables and PNG/SVG "
                    "figures into an interpretation folder.")
    parser.add_argument("--run", type=Path, required=True, metavar="RUN_DIR",
                        help="run folder of fmtc evaluate / fmtc experiment")
    parser.add_argument("--arm", action="append", default=None, metavar="NAME",
                        help="arm to attribute; repeat for several (default: every fmmtc, ts "
                             "and fc arm)")
    subjects = parser.add_mutually_exclusive_group()
    subjects.add_argument("--subjects", type=at_least(0), default=None, metavar="N",
                          help="test subjects per fold attributed through the BrainLM encoder "
                               f"(TS path, one window each; default {CPU_TS_SUBJECTS} on a "
                               "CPU, all on a GPU; 0: no TS path)")
    subjects.add_argument("--all-subjects", action="store_true",
                          help="TS path for every test subject (slow on a CPU)")
    parser.add_argument("--baseline", choices=BASELINES, default=DEFAULT_BASELINE,
                        help=f"IG baseline (default: {DEFAULT_BASELINE}; see "
                             "fmtc.interpret.baselines)")
    parser.add_argument("--steps", type=at_least(2), default=defaults.n_steps, metavar="N",
                        help=f"integration steps, FC path and fused representation (default "
                             f"{defaults.n_steps})")
    parser.add_argument("--ts-steps", type=at_least(2), default=defaults.ts_steps,
                        metavar="N",
                        help=f"integration steps of the TS path (default {defaults.ts_steps})")
    parser.add_argument("--batch", type=at_least(1), default=defaults.internal_batch_size,
                        metavar="N",
                        help="interpolated inputs per forward pass (default "
                             f"{defaults.internal_batch_size})")
    parser.add_argument("--cohort", type=Path, default=None, metavar="DIR",
                        help="the run's cohort folder, when it is not where the run recorded it")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                        help="where to attribute (default: the run plan's device)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="interpretation folder (default: interpret_<run>_<key> beside the run "
                             "folder)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out when it holds another interpretation")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Attribute, print the recovery of a planted truth, say where the folder is."""
    from fmtc.device import resolve_device
    from fmtc.errors import UsageError
    from fmtc.interpret.settings import CPU_TS_SUBJECTS, IGSettings
    from fmtc.pipeline import interpret_run

    device = resolve_device(args.device) if args.device else None
    ts_subjects = (None if args.all_subjects else args.subjects)
    if ts_subjects is None and not args.all_subjects:
        cuda = device is not None and device.type == "cuda"
        ts_subjects = None if cuda or (device is None and _cuda_default()) else CPU_TS_SUBJECTS
    try:
        settings = IGSettings(baseline=args.baseline, n_steps=args.steps,
                              ts_steps=args.ts_steps, ts_subjects=ts_subjects,
                              internal_batch_size=args.batch)
    except ValueError as error:  # the options are checked by argparse; this is a fallback
        raise UsageError(f"--steps / --ts-steps / --subjects / --batch: {error}") from None
    result = interpret_run(args.run, arms=args.arm, settings=settings, cohort=args.cohort,
                           out=args.out, device=device, overwrite=args.overwrite,
                           progress=bars())
    tables = result.tables
    recovery = tables.get("recovery")
    if recovery:
        print(f"planted-truth recovery ({recovery['arm']}, SIMULATED cohort):")
        for prefix, k, chance in (("fc", "k", "fc_chance"), ("ts", "ts_k", "ts_chance")):
            if f"{prefix}_recall_at_k" in recovery:
                print(f"  {prefix.upper()} recall@{recovery[k]}: "
                      f"{recovery[f'{prefix}_recall_at_k']:.3f} (chance {recovery[chance]:.3f})")
        for name, value in recovery.get("reference", {}).items():
            print(f"  reference {name}: {value:.3f}")
    subjects = tables.get("subjects")
    if subjects is not None and "ts_share" in subjects and subjects["ts_share"].notna().any():
        shares = subjects.dropna(subset=["ts_share"]).groupby("arm")["ts_share"].median()
        for arm, share in shares.items():
            print(f"  {arm}: median TS share of |IG| {share:.3f}")
    state = "reused" if result.reused else "written"
    print(f"interpretation folder ({state}): {result.folder}")
    return 0


def _cuda_default() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False
