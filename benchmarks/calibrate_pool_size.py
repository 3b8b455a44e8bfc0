"""The FC pooling of the CPU profiles, measured on calibration seeds only.

The ``quick`` profile reduces the 424 x 424 FC matrix to ``connectivity.pool_size`` x
``pool_size`` inside the model (a differentiable average pooling) before the ResNet-18, because
the ResNet-18's forward and backward pass is most of a CPU fit. This script trains FMM_TC and
FC-only at each candidate pooling on the **calibration** seeds (simulator seeds 1 and 2, never
reported), at effect sizes 1 and 3, one repeat of 5-fold CV, with FC + logistic regression on
the full matrix as the yardstick, and writes the pooled MCC per cohort, the mean per effect
size. The untuned seeds 41-45 of the book are not touched here.

Usage::

    python benchmarks/calibrate_pool_size.py --out fmtc/plans/pool_size_calibration.json

Two cores: about 16 minutes with the encoder pretrained (the fits of every setting run in one pool
of workers).
"""

from __future__ import annotations

import time

from _calibration import EFFECTS, SEEDS, YARDSTICK, parse_args, per_cohort, write_record

POOL_SIZES = (64, 32)
ARMS = {"fmmtc": {"model": "fmmtc"}, "fc": {"model": "fc"}}


def main() -> None:
    args = parse_args(__doc__)

    from fmtc.pipeline import run_experiments, sweep
    from fmtc.plan import load_plan

    base = load_plan(args.profile).replace(evaluation={"repeats": 1})
    settings = [{"seed": s, "effect_size": e} for e in EFFECTS for s in SEEDS]
    experiments = {"pooling": {"description": "FMM_TC and FC-only, for the FC pooling",
                               "arms": ARMS, "selections": ["honest"]},
                   "pooling-yardstick": YARDSTICK}
    started = time.perf_counter()
    yardstick = sweep(base.replace(experiments=experiments), "pooling-yardstick", settings)
    sweeps = [(size, sweep(base.replace(experiments=experiments,
                                        connectivity={"pool_size": size}), "pooling", settings))
              for size in POOL_SIZES]
    requests = [r for _, s in sweeps for r in s.requests] + yardstick.requests
    runs = run_experiments(requests, progress=True)
    rows, offset = [], 0
    for size, found in sweeps:
        table = found.table(runs[offset:offset + len(found.requests)])
        offset += len(found.requests)
        rows += [{"setting": f"pool {size}", "pool_size": size, "arm": arm,
                  "per_cohort": per_cohort(table[table["arm"] == arm])} for arm in ARMS]
    rows.append({"setting": "FC + logistic (yardstick)", "pool_size": None, "arm": "fc-logreg",
                 "per_cohort": per_cohort(yardstick.table(runs[offset:]))})
    write_record(args.out, "benchmarks/calibrate_pool_size.py", base, rows, started)


if __name__ == "__main__":
    main()
