"""The training schedule of the ``quick`` profile, measured on calibration seeds only.

A ``quick`` book's cost is its ResNet-18 fits (a fit's time is proportional to its epochs), so
the schedule decides whether the book runs from an empty ``data/`` within the 90 minutes a
2-core machine allows (README: the measured run). This script trains FMM_TC and FC-only under
``quick`` with each candidate number of epochs (the cosine schedule spans the whole run, so a
shorter run also anneals faster) on the **calibration** seeds (simulator seeds 1 and 2, never
reported), at effect sizes 1 and 3, one repeat of 5-fold CV, with FC + logistic regression as
the yardstick, and writes the pooled MCC per cohort and the mean per effect size. The untuned
seeds 41-45 of the book are not touched here.

Rule, fixed before the run: ``quick`` takes the fewest epochs whose mean pooled MCC, for both
FMM_TC and FC-only at both effect sizes, is no more than 0.1 below that of 40 epochs (the
schedule chosen earlier, which 16 epochs under-trained: ``fmtc/plans/profiles.yml``).

Usage::

    python benchmarks/calibrate_epochs.py --out fmtc/plans/epochs_calibration.json

Two cores: 40 minutes (2,425 s with the encoder's pretraining; 2026-12-07, fmtc at 24dbf3b;
the record names 17b94f2, the commit when it was written, which changed no training code;
every setting's fits in one pool of workers). It kept 40 epochs: 24 left FC-only at 0.00 against
0.13 at effect size 1, 20 left it at 0.72 against 0.87 at effect size 3. The same 40-epoch fits
in ``pool_size_calibration.json``, computed on another machine, differ from these by up to 0.17
per cohort (last-bit arithmetic differences grow into other trajectories), so two seeds do not
resolve differences of that size either way; the longer schedule is kept.
"""

from __future__ import annotations

import time

from _calibration import (
    EFFECTS,
    add_means,
    candidate_rows,
    parse_args,
    sweep_candidates,
    write_record,
)

EPOCHS = (40, 24, 20)
REFERENCE = 40
TOLERANCE = 0.1
ARMS = {"fmmtc": {"model": "fmmtc"}, "fc": {"model": "fc"}}


def chosen_epochs(rows: list[dict]) -> int:
    """The fewest epochs within ``TOLERANCE`` of ``REFERENCE`` for every arm and effect."""
    by = {(r["epochs"], r["arm"]): r for r in rows if r.get("epochs") is not None}
    passing = [e for e in EPOCHS
               if all(by[(e, arm)][f"effect_{x:g}"]["mean"]
                      >= by[(REFERENCE, arm)][f"effect_{x:g}"]["mean"] - TOLERANCE
                      for arm in ARMS for x in EFFECTS)]
    return min(passing)


def main() -> None:
    args = parse_args(__doc__)

    from fmtc.plan import load_plan

    base = load_plan(args.profile).replace(evaluation={"repeats": 1})
    started = time.perf_counter()
    tables, yardstick = sweep_candidates(base, "schedule", "FMM_TC and FC-only, for the schedule",
                                         ARMS, [{"train": {"epochs": e}} for e in EPOCHS])
    rows = candidate_rows("epochs", list(EPOCHS), "{} epochs", ARMS, tables, yardstick)
    add_means(rows)
    chosen = chosen_epochs(rows)
    write_record(args.out, "benchmarks/calibrate_epochs.py", base, rows, started,
                 rule=(f"fewest epochs whose mean pooled MCC (FMM_TC and FC-only, each effect "
                       f"size) is at most {TOLERANCE} below {REFERENCE} epochs'"),
                 reference_epochs=REFERENCE, tolerance=TOLERANCE, chosen_epochs=chosen)
    print("chosen:", chosen, "epochs")

if __name__ == "__main__":
    main()
