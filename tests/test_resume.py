"""Interrupted runs resume: finished fits are kept, only the rest is computed, results equal.

Every fit is published in the fit store as soon as it ends (:mod:`fmtc.evaluate.fits`); a run
started again reads the finished ones back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fmtc.evaluate.fits as fits_module
from fmtc.cohort.folder import load_cohort
from fmtc.pipeline import evaluate
from fmtc.plan import load_plan

CPU = torch.device("cpu")
TABLES = ("metrics.csv", "predictions.csv", "predictions_paper.csv", "summary.csv",
          "trajectories.csv", "splits.json", "models.json")
MODELS = ["fc-logreg", "fc"]
N_FITS = len(MODELS) * 3  # 1 repeat x 3 folds
RUN_FOLD = fits_module.run_fold

pytestmark = pytest.mark.usefixtures("one_thread")


def write_plan(folder: Path, epochs: int = 2) -> Path:
    outputs = {key: str(folder / "data" / key) for key in
               ("data_dir", "cohorts_dir", "features_dir", "models_dir", "fits_dir", "runs_dir")}
    document = {"profiles": {"smoke": {
        "device": "cpu", "outputs": outputs, "execution": {"n_jobs": 1},
        "train": {"epochs": epochs}, "connectivity": {"pool_size": 16},
        "evaluation": {"folds": 3, "repeats": 1, "permutations": 20, "bootstrap": 50}}}}
    path = folder / "plan.yml"
    path.write_text(json.dumps(document))
    return path


def _counting(monkeypatch, fail_after: int | None = None) -> list[str]:
    """Count ``run_fold`` calls; raise KeyboardInterrupt on call ``fail_after + 1``."""
    calls: list[str] = []
    original = RUN_FOLD

    def counted(task, data, **options):
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt
        calls.append(f"{task.arm.name}/{task.split.fold}")
        return original(task, data, **options)

    monkeypatch.setattr(fits_module, "run_fold", counted)
    return calls


def _same_tables(a: Path, b: Path) -> None:
    for name in TABLES:
        if name == "predictions_paper.csv" and not (a / name).exists():
            continue
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_an_interrupted_evaluation_computes_only_the_unfinished_fits(small_cohort, tmp_path,
                                                                     monkeypatch):
    cohort = load_cohort(small_cohort)
    plan = load_plan("smoke", write_plan(tmp_path))

    def run(out: Path, store: str):
        return evaluate(plan.replace(outputs={"fits_dir": str(tmp_path / store)}), MODELS,
                        ["honest", "paper"], cohort=cohort, out=out, device=CPU)

    run(tmp_path / "whole", "fits-whole")

    _counting(monkeypatch, fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", "fits")
    assert not (tmp_path / "resumed").exists()  # nothing published half-done
    assert len(list((tmp_path / "fits").glob("fit-*/fit.json"))) == 4  # finished fits kept

    calls = _counting(monkeypatch)
    resumed = run(tmp_path / "resumed", "fits")
    assert len(calls) == N_FITS - 4  # only the unfinished fits were computed
    assert resumed.tables["provenance"]["fits"] == {"total": N_FITS, "computed": N_FITS - 4,
                                                    "read_back": 4}
    _same_tables(tmp_path / "whole", tmp_path / "resumed")
    assert not list(tmp_path.glob(".*staging*")) and not list((tmp_path / "fits").glob(".*st*"))


def test_a_damaged_or_foreign_fit_is_computed_again(small_cohort, tmp_path, monkeypatch):
    cohort = load_cohort(small_cohort)
    plan = load_plan("smoke", write_plan(tmp_path))
    run = lambda out: evaluate(plan, MODELS, ["honest"], cohort=cohort, out=out,  # noqa: E731
                               device=CPU)
    run(tmp_path / "whole")
    store = tmp_path / "data" / "fits_dir"
    folders = sorted(p for p in store.glob("fit-fc-*") if "logreg" not in p.name)
    (folders[0] / "fit.json").write_text('{"test": [1')  # truncated
    record = json.loads((folders[1] / ".fmtc-result.json").read_text())
    record["key"] = "0" * 16  # another fit's folder under this name
    (folders[1] / ".fmtc-result.json").write_text(json.dumps(record))
    calls = _counting(monkeypatch)
    run(tmp_path / "again")
    assert len(calls) == 2  # the two bad fits, nothing else
    _same_tables(tmp_path / "whole", tmp_path / "again")
    assert json.loads((folders[1] / ".fmtc-result.json").read_text())["key"] != "0" * 16


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_command_killed_mid_run_exits_cleanly_and_resumes(small_cohort, tmp_path, signum,
                                                              code):
    # Long enough torch fits that the signal lands while fits are still pending, even on a
    # machine ten times faster than the 2-core one this was written on (the poll is 50 ms).
    plan = write_plan(tmp_path, epochs=60)
    out = tmp_path / "run"
    store = tmp_path / "data" / "fits_dir"
    command = [sys.executable, "-m", "fmtc", "evaluate", "--cohort", str(small_cohort),
               "--profile", "smoke", "--plan", str(plan), "--out", str(out),
               *[arg for model in MODELS for arg in ("--model", model)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # Ctrl-C as in a terminal: a test worker may have SIGINT ignored (inherited by a child,
    # where Python then raises no KeyboardInterrupt), e.g. after a DataLad call in it.
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    records: list[Path] = []
    while time.monotonic() < deadline and process.poll() is None:
        records = [p for p in store.glob("fit-fc-*/fit.json") if "logreg" not in str(p)]
        if records:  # every baseline fit and at least one torch fit are finished
            break
        time.sleep(0.05)
    assert records, f"no fit finished in time: {process.poll()} {process.stderr.read()}"
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("fmtc evaluate: ")
    assert not out.exists()
    finished = len(list(store.glob("fit-*/fit.json")))
    assert 4 <= finished < N_FITS

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["fits"] == {"total": N_FITS, "computed": N_FITS - finished,
                                  "read_back": finished}
    assert f"{N_FITS} fit(s): {finished} read back, {N_FITS - finished} to compute" in rerun.stderr


def _stat(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name: state, parent, ...; [] once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _running(pid: int) -> bool:
    return _stat(pid)[:1] not in ([], ["Z"])  # a zombie has exited


def _children(pid: int) -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and _stat(int(p.name))[1:2] == [str(pid)]}


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_local_workers_exit_when_the_command_is_killed(small_cohort, tmp_path):
    # kill -9 leaves the command no chance to stop its workers: they must notice on their own
    # (fmtc.execution.exit_with_parent) instead of finishing their fits and idling for minutes.
    plan = write_plan(tmp_path, epochs=200)
    command = [sys.executable, "-m", "fmtc", "evaluate", "--cohort", str(small_cohort),
               "--profile", "smoke", "--plan", str(plan), "--out", str(tmp_path / "run"),
               "--model", "fc", "--jobs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline, busy = time.monotonic() + 120, set()
        while time.monotonic() < deadline and process.poll() is None and len(busy) < 2:
            # a worker has started its fit once it has used a second of CPU (a fit: minutes)
            busy = {p for p in _children(process.pid) if int((_stat(p) or [0] * 12)[11]) > 100}
            time.sleep(0.2)
        assert len(busy) >= 2, f"no two busy workers: exit {process.poll()}"
        workers = _children(process.pid)
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_running(p) for p in workers):
        time.sleep(0.2)
    alive = {p for p in workers if _running(p)}
    for pid in alive:  # leave nothing behind, whatever the outcome
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not alive, f"process(es) still running 30 s after kill -9 of their parent: {alive}"
