"""What the calibration scripts share: their command line, the yardstick and the record.

``calibrate_stability.py``, ``calibrate_pool_size.py`` and ``calibrate_epochs.py`` train
candidate settings on the calibration seeds only, with FC + logistic regression on the same
cohorts as the yardstick, and write one JSON record (per setting, the pooled MCC per cohort and
its mean and range per effect size) with the run's provenance.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

SEEDS = (1, 2)
EFFECTS = (1.0, 3.0)
YARDSTICK = {"description": "FC + logistic regression, the yardstick",
             "arms": {"fc-logreg": {"model": "fc-logreg"}}, "selections": ["honest"]}


def parse_args(doc: str) -> argparse.Namespace:
    """``--out`` (the JSON record) and ``--profile`` (default ``quick``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--profile", default="quick")
    return parser.parse_args()


def sweep_candidates(base: Any, name: str, description: str, arms: dict[str, Any],
                     candidates: list[dict[str, Any]]) -> tuple[list[Any], Any]:
    """Train ``arms`` on every calibration cohort under each candidate's plan changes.

    All fits, the yardstick's included, run in one pool of workers. Returns each candidate's
    sweep table (in ``candidates`` order) and the yardstick's.
    """
    from fmtc.pipeline import run_experiments, sweep

    settings = [{"seed": s, "effect_size": e} for e in EFFECTS for s in SEEDS]
    experiments = {name: {"description": description, "arms": arms, "selections": ["honest"]},
                   f"{name}-yardstick": YARDSTICK}
    yardstick = sweep(base.replace(experiments=experiments), f"{name}-yardstick", settings)
    sweeps = [sweep(base.replace(experiments=experiments, **changes), name, settings)
              for changes in candidates]
    runs = run_experiments([r for s in sweeps for r in s.requests] + yardstick.requests,
                           progress=True)
    tables, offset = [], 0
    for found in sweeps:
        tables.append(found.table(runs[offset:offset + len(found.requests)]))
        offset += len(found.requests)
    return tables, yardstick.table(runs[offset:])


def candidate_rows(key: str, values: list[Any], label: str, arms: dict[str, Any],
                   tables: list[Any], yardstick: Any) -> list[dict[str, Any]]:
    """The record's rows: one per candidate ``values`` (``label.format(value)``) and arm, then
    the yardstick's (``key`` None)."""
    rows = [{"setting": label.format(value), key: value, "arm": arm,
             "per_cohort": per_cohort(table[table["arm"] == arm])}
            for value, table in zip(values, tables, strict=True) for arm in arms]
    rows.append({"setting": "FC + logistic (yardstick)", key: None, "arm": "fc-logreg",
                 "per_cohort": per_cohort(yardstick)})
    return rows


def per_cohort(table: Any) -> list[dict[str, Any]]:
    """The pooled MCC of each calibration cohort of a sweep's table."""
    return table[["seed", "effect_size", "value"]].to_dict("records")


def add_means(rows: list[dict[str, Any]]) -> None:
    """Set each row's ``effect_<size>``: the mean, min and max of its cohorts' pooled MCC."""
    for row in rows:
        for effect in EFFECTS:
            values = [r["value"] for r in row["per_cohort"] if r["effect_size"] == effect]
            row[f"effect_{effect:g}"] = {"mean": sum(values) / len(values),
                                         "min": min(values), "max": max(values)}


def write_record(out: Path, command: str, plan: Any, rows: list[dict[str, Any]],
                 started: float, **extra: Any) -> None:
    """Add each row's mean and range per effect size, write the record (with ``extra``
    top-level fields) and print the means."""
    from fmtc.provenance import provenance_record
    from fmtc.storage import write_json

    add_means(rows)
    record = provenance_record(command=command, profile=plan.profile, seed=plan.seed)
    write_json(out, {"seeds": list(SEEDS), "effects": list(EFFECTS), "rows": rows,
                     "seconds": round(time.perf_counter() - started, 1), "provenance": record,
                     **extra})
    for row in rows:
        name = " ".join(str(row[k]) for k in ("remedy", "setting", "arm") if k in row)
        print(name, {k: round(v["mean"], 3) for k, v in row.items() if k.startswith("effect_")})
