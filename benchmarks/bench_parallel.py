"""Wall time of the main comparison with 1 vs 2 local workers and on a 2-worker Dask cluster.

The main comparison (plan experiment ``main-comparison``: FMM_TC, TS-only, FC-only and the
two logistic baselines on identical splits) is (arm x repeat x fold) independent fits plus
one summary task per arm and selection. :class:`fmtc.execution.Executor` runs them in this
process (``n_jobs=1``), on joblib's loky workers (``n_jobs=2``) or on a Dask cluster through
joblib's Dask backend. Every task runs with ``execution.threads_per_worker`` threads (1 by
default), so the three runs compute the same bits and the benchmark checks that their tables
are byte-identical.

Measured side by side in one process, one after another, on the same cohort and cached
BrainLM features (built, untimed, before the first run): the wall time of the experiment
under each executor, each into a fresh run folder and a fresh fit store (so that no fit is
read back from an earlier executor's run). The Dask cluster's start-up (scheduler
and two worker processes) is timed separately and not counted in its run. The headline is
``t(1 worker) / t(2 workers)``; with 2 cores and tasks of very different cost, the ideal
is 2.0 less the tail where one worker waits for the other's last fit.

Usage: ``.venv/bin/python benchmarks/bench_parallel.py [--profile quick] [--repeats R]``
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

TABLES = ("metrics.csv", "predictions.csv", "predictions_paper.csv", "summary.csv",
          "contrasts.csv", "trajectories.csv")


def main() -> None:
    """Run the three executors and print their wall times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--plan", default=None, help="plan file (default: the project's)")
    parser.add_argument("--repeats", type=int, default=None, help="override evaluation.repeats")
    parser.add_argument("--experiment", default="main-comparison")
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args()

    from distributed import LocalCluster

    from fmtc.device import resolve_device
    from fmtc.execution import Executor
    from fmtc.pipeline import gather_datasets, plan_cohort, resolve_arms, run_experiment
    from fmtc.plan import load_plan

    logging.basicConfig(level=logging.WARNING)
    overrides = {"evaluation": {"repeats": args.repeats}} if args.repeats else None
    plan = load_plan(args.profile, args.plan, overrides=overrides)
    device = resolve_device(plan.device)
    cohort = plan_cohort(plan, progress=True)
    arms, requests = resolve_arms(plan, plan.experiments[args.experiment].arms, device)
    start = time.perf_counter()
    gather_datasets(cohort, requests, device=device, progress=True)  # fill the caches, untimed
    print(f"inputs ready (cohort, encoder, features) in {time.perf_counter() - start:.0f} s")

    ev = plan.evaluation
    print(f"{args.experiment} on profile {plan.profile}: {len(arms)} arms x {ev.repeats} "
          f"repeat(s) x {ev.folds} folds = {len(arms) * ev.repeats * ev.folds} fits, "
          f"{plan.train.epochs} epochs; {len(cohort.subject_ids)} subjects; "
          f"{os.cpu_count()} cores; {platform.processor() or platform.machine()}")
    scratch = Path(tempfile.mkdtemp(prefix="fmtc-bench-parallel-"))
    times: dict[str, float] = {}
    try:
        def timed(name: str, executor: Executor) -> None:
            # A fit store of its own: every executor computes every fit (none is read back).
            own = plan.replace(outputs={"fits_dir": str(scratch / f"fits-{len(times)}")})
            start = time.perf_counter()
            run_experiment(own, args.experiment, cohort=cohort, out=scratch / name,
                           device=device, executor=executor)
            times[name] = time.perf_counter() - start
            print(f"  {name:<22} {times[name]:7.1f} s", flush=True)

        timed("1 worker (in process)", Executor(n_jobs=1))
        timed("2 local workers (loky)", Executor(n_jobs=2))
        if not args.skip_dask:
            start = time.perf_counter()
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster:
                print(f"  (Dask LocalCluster of 2 workers started in "
                      f"{time.perf_counter() - start:.1f} s, not counted)")
                timed("2 Dask workers", Executor(dask_scheduler=cluster.scheduler_address))
        names = list(times)
        identical = all(len({(scratch / n / t).read_bytes() for n in names}) == 1
                        for t in TABLES if (scratch / names[0] / t).exists())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = times[names[0]]
    print("ratios (1 worker / this):")
    for name in names[1:]:
        print(f"  {name:<22} {base / times[name]:5.2f}x")
    print(f"tables byte-identical across executors: {identical}")


if __name__ == "__main__":
    main()
