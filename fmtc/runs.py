"""Run folders: named by what defines their result, written in staging, published whole.

A run folder holds::

    run.json             the run's identity (everything that defines its result) and its key
    metrics.csv          arm, model, selection, repeat, fold, metric, value
    predictions.csv      arm, model, repeat, fold, participant_id, probability, label
                         (first selection; others: predictions_<selection>.csv)
    summary.csv          arm, model, selection, metric, mean, repeat_low/high,
                         bootstrap_low/high, p_value
    contrasts.csv        paired differences between arms (experiments with contrasts)
    trajectories.csv     per arm, repeat, fold and epoch: lr, losses, MCC, AUC, chosen epochs
    splits.json          participant ids of the fit / validation / test parts of every fold
    models.json          what a reader needs to rebuild each arm's fold models
    weights/<arm>/repeat-R_fold-F.pt   state_dict of the selected epoch
    provenance.json      plan, versions, cohort and encoder hashes, device, execution, timings

The default folder name is ``<prefix>_<profile>_<key>``, where ``key`` is a hash of the
run's identity (cohort content, arms, the plan values they read, seed, selections, ...):
runs with other settings never overwrite each other, and a run whose identity already
has a complete folder is read back instead of recomputed. A run is computed into a
hidden staging folder beside its destination (``.<name>.<key>.partial``) and renamed into
place when complete, so a folder that exists is always a whole run. Each finished fit is
recorded in the staging folder as soon as it ends (:class:`FitStore`): a run that is
interrupted (Ctrl-C, SIGTERM, a crash) and started again computes only the fits that had
not finished, and its tables are identical to an uninterrupted run's. The tables hold no
paths, times or timestamps and print floats with ``%.6g``: identical runs give
byte-identical tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmtc import storage
from fmtc.errors import OutputExistsError
from fmtc.storage import atomic_open, check_replaceable, write_json

logger = logging.getLogger(__name__)

FLOAT_FORMAT = "%.6g"
RUN_RECORD = "run.json"
KEY_LENGTH = 12


def run_key(identity: dict[str, Any]) -> str:
    """A short hex hash of ``identity`` (canonical JSON)."""
    payload = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:KEY_LENGTH]


def run_name(prefix: str, profile: str, key: str) -> str:
    """``<prefix>_<profile>_<key>``."""
    return f"{prefix}_{profile}_{key}"


def read_key(run_dir: str | Path) -> str | None:
    """The key of a complete run folder, or None when ``run_dir`` holds no complete run."""
    record = Path(run_dir) / RUN_RECORD
    try:
        return json.loads(record.read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        return None


class RunExistsError(OutputExistsError):
    """The destination holds another run; the message says how to keep or replace it."""


def check_destination(run_dir: Path, key: str, overwrite: bool) -> bool:
    """Whether ``run_dir`` already holds this run (True: reuse it).

    With ``overwrite`` the answer is always False (recompute, then replace). Raises
    :class:`RunExistsError` when it holds something else and ``overwrite`` is False.
    """
    if overwrite:  # recompute even an identical run; replace only a run folder
        check_replaceable(run_dir, (RUN_RECORD, "metrics.csv", "weights", "provenance.json"),
                          "run folder")
        return False
    if not run_dir.exists():
        return False
    existing = read_key(run_dir)
    if existing == key:
        return True
    what = (f"holds another run (key {existing})" if existing
            else "is a file, not a run folder" if run_dir.is_file()
            else "holds files that are not a complete run")
    raise RunExistsError(f"{run_dir} {what}; this run's key is {key}. Choose another --out, "
                         "or pass --overwrite to replace it")


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove a run folder can be written there, before any work."""
    storage.check_writable(folder, "run folders", "Choose another --out (or outputs.runs_dir)")


def partial_folder(run_dir: Path, key: str) -> Path:
    """Where the run of ``key`` is computed before it is published as ``run_dir``."""
    return Path(run_dir).parent / f".{Path(run_dir).name}.{key}.partial"


@contextlib.contextmanager
def staged_run(run_dir: Path, overwrite: bool = False, key: str | None = None) -> Iterator[Path]:
    """Yield a staging folder beside ``run_dir``; publish it as ``run_dir`` on success.

    With a ``key`` the staging folder is :func:`partial_folder` and it survives an error
    or an interruption: it holds the finished fits (:class:`FitStore`), and the next run
    of the same identity resumes from them. Without a key it is a temporary folder,
    removed on error. ``run_dir`` itself is never modified until the new run is complete;
    an existing ``run_dir`` is replaced only when ``overwrite`` (moved aside first, and
    removed after the new run is in place). When another process published the same run
    (same ``key``) meanwhile, this copy is dropped and the other one kept.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not overwrite:
        raise RunExistsError(f"{run_dir} exists; choose another --out, or pass --overwrite to "
                             "replace it")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    if key is None:
        staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.staging-", dir=run_dir.parent))
    else:
        staging = partial_folder(run_dir, key)
        if staging.is_dir():
            logger.info("resuming from the partial run %s", staging)
        staging.mkdir(exist_ok=True)
    try:
        yield staging
    except BaseException:
        if key is None:
            shutil.rmtree(staging, ignore_errors=True)
        elif staging.is_dir():
            logger.info("finished fits are kept in %s; the same command resumes from them",
                        staging)
        raise
    staging.chmod(0o755)
    if run_dir.exists() and not overwrite and key is not None and read_key(run_dir) == key:
        shutil.rmtree(staging, ignore_errors=True)  # an identical run won the race
        return
    if run_dir.exists() and not overwrite:
        raise RunExistsError(f"{run_dir} appeared while this run was computed; the new run is "
                             f"kept in {staging} (rerun with --overwrite to replace it)")
    storage.publish_folder(staging, run_dir)


class FitStore:
    """The finished fits of a run being computed, one record per (arm, repeat, fold).

    Each fit's weights (``weights/<arm>/...``, as in a run folder) and then its record
    (``fits/<arm>/repeat-R_fold-F.json``: test probabilities, chosen epochs, trajectory)
    are written atomically by whoever ran the fit, a worker process included. A run that
    is interrupted and started again reads the records back instead of refitting; a
    record that cannot be read, or does not match its task, is refitted. Floats are
    stored as JSON numbers (exact for float64) with their dtype, so a resumed run's
    tables are identical to an uninterrupted one's.

    Parameters
    ----------
    folder : Path
        The run's staging folder (:func:`partial_folder`).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable for worker processes
        return (FitStore, (self.folder,))

    def record_path(self, arm: str, repeat: int, fold: int) -> Path:
        """The record of one fit."""
        return self.folder / "fits" / arm / f"repeat-{repeat}_fold-{fold}.json"

    def save(self, outcome: Any, seed: int) -> None:
        """Write the weights (when the fit has any) and then the record of ``outcome``."""
        if outcome.snapshots is not None:
            save_weights(self.folder / "weights", outcome.arm, outcome.repeat, outcome.fold,
                         outcome.snapshots)
        trajectory = outcome.trajectory
        write_json(self.record_path(outcome.arm, outcome.repeat, outcome.fold), {
            "arm": outcome.arm, "repeat": int(outcome.repeat), "fold": int(outcome.fold),
            "seed": int(seed), "test": [int(i) for i in outcome.test],
            "probabilities": {s: {"dtype": str(np.asarray(p).dtype),
                                  "values": np.asarray(p).tolist()}
                              for s, p in outcome.probabilities.items()},
            "epochs": outcome.epochs, "config": outcome.config, "seconds": outcome.seconds,
            "weights": outcome.snapshots is not None,
            **({} if getattr(outcome, "logits", None) is None else {"logits": {
                s: np.asarray(v, dtype=np.float64).tolist()
                for s, v in outcome.logits.items()}}),
            "trajectory": None if trajectory is None else {
                "columns": list(trajectory.columns),
                "dtypes": [str(d) for d in trajectory.dtypes],
                "data": {c: trajectory[c].tolist() for c in trajectory.columns}},
        })

    def load(self, arm: str, repeat: int, fold: int, seed: int, test: np.ndarray,
             selections: Sequence[str]) -> dict[str, Any] | None:
        """The stored fields of a finished fit, or None when it must be (re)computed."""
        path = self.record_path(arm, repeat, fold)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            matches = (record["arm"] == arm and record["repeat"] == repeat
                       and record["fold"] == fold and record["seed"] == seed
                       and record["test"] == [int(i) for i in test]
                       and sorted(record["probabilities"]) == sorted(selections))
            probabilities = {s: np.asarray(v["values"], dtype=v["dtype"])
                             for s, v in record["probabilities"].items()}
            trajectory = None
            if record["trajectory"] is not None:
                stored = record["trajectory"]
                trajectory = pd.DataFrame({c: pd.Series(stored["data"][c], dtype=d)
                                           for c, d in zip(stored["columns"], stored["dtypes"],
                                                           strict=True)})
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("fit record %s is damaged (%s); refitting", path, error)
            return None
        weights = self.folder / "weights" / arm / f"repeat-{repeat}_fold-{fold}.pt"
        if not matches or (record["weights"] and not weights.is_file()):
            logger.warning("fit record %s does not match its task; refitting", path)
            return None
        return {"test": np.asarray(record["test"], dtype=np.int64),
                "probabilities": probabilities, "trajectory": trajectory,
                "epochs": record["epochs"], "config": record["config"],
                "seconds": float(record["seconds"]),
                "logits": None if record.get("logits") is None else {
                    s: np.asarray(v, dtype=np.float64).reshape(-1, 2)
                    for s, v in record["logits"].items()}}

    def discard(self) -> None:
        """Remove the records (the run's tables now hold everything they held)."""
        shutil.rmtree(self.folder / "fits", ignore_errors=True)


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write a table atomically with the run folders' float format and line endings."""
    with atomic_open(path) as handle:
        frame.to_csv(handle, index=False, float_format=FLOAT_FORMAT, lineterminator="\n",
                     na_rep="nan")


def write_run(out: Path, result: Any, provenance: dict[str, Any],
              identity: dict[str, Any] | None = None, key: str | None = None,
              contrasts: pd.DataFrame | None = None) -> Path:
    """Write the tables, splits, model records and provenance of ``result`` into ``out``.

    ``run.json`` (identity and key) is written last: it marks the folder complete.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "metrics.csv", result.metrics)
    for i, (selection, frame) in enumerate(result.predictions.items()):
        write_csv(out / ("predictions.csv" if i == 0 else f"predictions_{selection}.csv"), frame)
    if result.summary is not None:
        write_csv(out / "summary.csv", result.summary)
    if contrasts is not None:
        write_csv(out / "contrasts.csv", contrasts)
    write_csv(out / "trajectories.csv", result.trajectories)
    write_json(out / "splits.json", result.splits)
    write_json(out / "models.json", result.models)
    write_json(out / "provenance.json", provenance)
    if key is not None:
        write_json(out / RUN_RECORD, {"key": key, "identity": identity or {}})
    return out


def save_weights(weights_dir: Path, arm: str, repeat: int, fold: int,
                 snapshots: dict[str, dict[str, Any]]) -> None:
    """Save each selection's ``state_dict`` (the first selection's at ``weights/<arm>/``)."""
    import torch

    for i, (selection, state) in enumerate(snapshots.items()):
        folder = Path(weights_dir) / arm / ("" if i == 0 else selection)
        # A handle, so the archive's record names do not carry the temporary file's name.
        with atomic_open(folder / f"repeat-{repeat}_fold-{fold}.pt", "wb") as handle:
            torch.save(state, handle)


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read a run folder's tables and records (for notebooks and ``fmtc interpret``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.csv").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no metrics.csv); run "
                                "`fmtc evaluate` or `fmtc experiment` first")
    tables = {"metrics": pd.read_csv(run_dir / "metrics.csv", dtype={"fold": str}),
              "predictions": pd.read_csv(run_dir / "predictions.csv"),
              "trajectories": pd.read_csv(run_dir / "trajectories.csv")}
    for name in ("summary", "contrasts"):
        if (run_dir / f"{name}.csv").is_file():
            tables[name] = pd.read_csv(run_dir / f"{name}.csv")
    for path in sorted(run_dir.glob("predictions_*.csv")):
        tables[path.stem] = pd.read_csv(path)
    for name in ("provenance", "models", "splits"):
        tables[name] = json.loads((run_dir / f"{name}.json").read_text())
    if (run_dir / RUN_RECORD).is_file():
        tables["run"] = json.loads((run_dir / RUN_RECORD).read_text())
    return tables
