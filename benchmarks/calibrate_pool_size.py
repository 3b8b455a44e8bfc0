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

import argparse
import time
from pathlib import Path

POOL_SIZES = (64, 32)
SEEDS = (1, 2)
EFFECTS = (1.0, 3.0)
ARMS = {"fmmtc": {"model": "fmmtc"}, "fc": {"model": "fc"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args()

    from fmtc.pipeline import run_experiments, sweep
    from fmtc.plan import load_plan
    from fmtc.provenance import provenance_record
    from fmtc.storage import write_json

    base = load_plan(args.profile).replace(evaluation={"repeats": 1})
    settings = [{"seed": s, "effect_size": e} for e in EFFECTS for s in SEEDS]
    experiments = {
        "pooling": {"description": "FMM_TC and FC-only, for the FC pooling",
                    "arms": ARMS, "selections": ["honest"]},
        "pooling-yardstick": {"description": "FC + logistic regression, the yardstick",
                              "arms": {"fc-logreg": {"model": "fc-logreg"}},
                              "selections": ["honest"]}}
    started = time.perf_counter()
    yardstick = sweep(base.replace(experiments=experiments), "pooling-yardstick", settings)
    sweeps = [(size, sweep(base.replace(experiments=experiments,
                                        connectivity={"pool_size": size}), "pooling", settings))
              for size in POOL_SIZES]
    requests = [r for _, s in sweeps for r in s.requests] + yardstick.requests
    runs = run_experiments(requests, progress=True)
    rows, offset = [], 0
    for size, found in sweeps:
        chunk = runs[offset:offset + len(found.requests)]
        offset += len(found.requests)
        table = found.table(chunk)
        for arm in ARMS:
            part = table[table["arm"] == arm]
            rows.append({"setting": f"pool {size}", "pool_size": size, "arm": arm,
                         "per_cohort": part[["seed", "effect_size", "value"]].to_dict("records")})
    reference = yardstick.table(runs[offset:])
    rows.append({"setting": "FC + logistic (yardstick)", "pool_size": None, "arm": "fc-logreg",
                 "per_cohort": reference[["seed", "effect_size", "value"]].to_dict("records")})
    for row in rows:
        for effect in EFFECTS:
            values = [r["value"] for r in row["per_cohort"] if r["effect_size"] == effect]
            row[f"effect_{effect:g}"] = {"mean": sum(values) / len(values),
                                         "min": min(values), "max": max(values)}
    record = provenance_record(command="benchmarks/calibrate_pool_size.py",
                               profile=args.profile, seed=base.seed)
    write_json(args.out, {"seeds": list(SEEDS), "effects": list(EFFECTS), "rows": rows,
                          "seconds": round(time.perf_counter() - started, 1),
                          "provenance": record})
    for row in rows:
        print(row["setting"], row["arm"], {k: round(v["mean"], 3) for k, v in row.items()
                                           if k.startswith("effect_")})


if __name__ == "__main__":
    main()
