"""Why a Dask ``LocalCluster`` was slower than local workers: the allocator its nanny sets up.

A Dask nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``; glibc then keeps its
mmap threshold at 128 KiB, and every larger block of a fit (FC batches, activations) is a
fresh ``mmap`` whose pages fault in again at every step. :func:`fmtc.execution.tune_allocator`
(called by every task) restores a 32 MiB mmap threshold and a 128 MiB trim threshold.

One 2-worker ``LocalCluster`` (one thread each), the same FMM_TC fits (smoke sizes: 60
synthetic subjects, 424-region FC pooled to 64, ``--epochs`` epochs, 5 folds x ``--repeats``)
run alternately with the allocator as the nanny leaves it and as ``tune_allocator`` sets it,
after one untimed warm-up. Measured inside each task: wall, user and system CPU seconds and
minor page faults; printed: per-fit medians per mode, the run wall ratio, and whether the
predictions are identical.

Usage: ``.venv/bin/python benchmarks/bench_dask_allocator.py [--epochs 4] [--rounds 2]``

Measured on the project's 2-core CPU (2026-12-07, ``--epochs 4``), medians per fit, nanny vs
tuned; predictions identical in every run:

- first version of this script (``--rounds 2``): 6.45 vs 4.12 s, 1.09 M vs 0.11 M faults,
  2.0 vs 0.2 s system time; run wall 1.48x;
- this script, ``--rounds 2``: 4.59 vs 3.73 s, 0.23 M vs 0.09 M faults, 0.49 vs 0.21 s; 1.29x;
- this script, ``--rounds 4``: 5.59 vs 3.80 s, 0.84 M vs 0.08 M faults, 1.56 vs 0.15 s; 1.35x.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
NANNY = {"mmap": 128 << 10, "trim": 65536}  # what MALLOC_TRIM_THRESHOLD_=65536 leaves


def instrumented(item: tuple, datasets: dict) -> tuple[np.ndarray, dict[str, float]]:
    """One fit under the allocator mode ``item[1]``, with its costs measured in the worker."""
    from fmtc import execution
    from fmtc.evaluate.fits import _compute_fit

    fit, mode = item
    libc = ctypes.CDLL("libc.so.6")
    if mode == "nanny":
        libc.mallopt(M_MMAP_THRESHOLD, NANNY["mmap"])
        libc.mallopt(M_TRIM_THRESHOLD, NANNY["trim"])
    else:
        execution.tune_allocator()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    record = _compute_fit(fit, datasets)
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
    return record.probabilities, {"wall": wall, "user": after.ru_utime - before.ru_utime,
                                  "sys": after.ru_stime - before.ru_stime,
                                  "faults": after.ru_minflt - before.ru_minflt}


def main() -> None:
    """Alternate the two allocator modes on one cluster and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("glibc's mallopt: Linux only")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from distributed import LocalCluster
    from synthetic import CPU, synthetic_data

    from fmtc.evaluate.protocol import CrossValidation
    from fmtc.execution import Executor
    from fmtc.pipeline import resolve_arms
    from fmtc.plan import ArmPlan, load_plan

    data = synthetic_data(n=60, regions=424, hidden=32, windows=3, seed=0)
    plan = load_plan("smoke").replace(train={"epochs": args.epochs},
                                      evaluation={"repeats": args.repeats})
    arms, _ = resolve_arms(plan, {"fmmtc": ArmPlan(model="fmmtc")}, CPU)
    arms = [dataclasses.replace(a, data="default") for a in arms]
    cv = CrossValidation({"default": data}, arms, plan.evaluation, plan.seed, ["honest"])
    items = [(f, frozenset(), False) for f in cv.fits(None)]
    per_fit: dict[str, list[dict[str, float]]] = {"nanny": [], "tuned": []}
    walls: dict[str, list[float]] = {"nanny": [], "tuned": []}
    outputs: list[np.ndarray] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        executor = Executor(dask_scheduler=cluster.scheduler_address)
        list(executor.map(instrumented, [(items[0], "tuned")] * 2, cv.datasets))  # warm-up
        for round_ in range(args.rounds):
            for mode in (("nanny", "tuned") if round_ % 2 == 0 else ("tuned", "nanny")):
                start = time.perf_counter()
                results = list(executor.map(instrumented, [(i, mode) for i in items],
                                            cv.datasets))
                walls[mode].append(time.perf_counter() - start)
                per_fit[mode] += [costs for _, costs in results]
                outputs.append(np.concatenate([p for p, _ in results]))
                print(f"  round {round_ + 1} {mode:<5} {walls[mode][-1]:6.1f} s", flush=True)
    print(f"{len(items)} FMM_TC fits of {args.epochs} epochs per run, 2 Dask workers")
    for mode in ("nanny", "tuned"):
        median = {k: statistics.median(c[k] for c in per_fit[mode])
                  for k in ("wall", "user", "sys", "faults")}
        print(f"  {mode:<5} per fit: wall {median['wall']:5.2f} s, user {median['user']:5.2f} s, "
              f"system {median['sys']:5.2f} s, {median['faults']:9.0f} page faults; run wall "
              f"{statistics.median(walls[mode]):6.1f} s")
    print(f"run wall nanny / tuned: "
          f"{statistics.median(walls['nanny']) / statistics.median(walls['tuned']):.2f}x")
    print(f"predictions identical: {all(np.array_equal(outputs[0], o) for o in outputs)}")


if __name__ == "__main__":
    main()
