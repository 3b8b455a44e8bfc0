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

from _calibration import candidate_rows, parse_args, sweep_candidates, write_record

POOL_SIZES = (64, 32)
ARMS = {"fmmtc": {"model": "fmmtc"}, "fc": {"model": "fc"}}


def main() -> None:
    args = parse_args(__doc__)

    from fmtc.plan import load_plan

    base = load_plan(args.profile).replace(evaluation={"repeats": 1})
    started = time.perf_counter()
    tables, yardstick = sweep_candidates(
        base, "pooling", "FMM_TC and FC-only, for the FC pooling", ARMS,
        [{"connectivity": {"pool_size": size}} for size in POOL_SIZES])
    rows = candidate_rows("pool_size", list(POOL_SIZES), "pool {}", ARMS, tables, yardstick)
    write_record(args.out, "benchmarks/calibrate_pool_size.py", base, rows, started)


if __name__ == "__main__":
    main()
