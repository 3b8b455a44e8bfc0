"""Fits as results: one model trained on one split, identified by its own inputs and reused.

A fit (:class:`Fit`, kind ``fit`` of :mod:`fmtc.lifecycle`) is one registered model trained on
the ``fit`` subjects of one split and scored on its ``test`` subjects. Its identity is what
defines it and nothing else: the model and its hyper-parameters, the input switches it reads
(connectivity pooling and kind, the authors'-protocol switches), the content hash of the data it
reads (the arrays of its declared inputs, the labels and the subject order, plus the encoder and
read-out behind the TS features), the fit / validation / test indices, the fit seed, the
device type and the thread count. Any experiment, page or test that needs the same fit reads it
back from ``<fits>/fit-<model>-<key>/`` instead of training it again: the FMM_TC arm of the main
comparison, of the external-knowledge experiment and the honest arm of the authors' protocol are
one fit per fold.

A fit is selection-free: it stores the honest epoch's test predictions (the last epoch of the
declared schedule, or the epoch an inner validation split picks), the per-epoch validation
predictions, losses and learning rates. Two optional artifacts are computed only when asked for
(``Fit.extras``): ``test_trajectory``, the test subjects' predictions after every epoch (the
paper's selection reads it), and ``weights``, the honest epoch's ``state_dict`` (interpretation
reads it). A fit asked for with an artifact it lacks is trained again with it (same seed, same
numbers) and replaces the folder.

:func:`run_fits` runs any list of fits — of one run or of many — through one executor: those
published are read back, the others computed by whoever runs them (a worker publishes its own
fit, so an interruption loses no finished fit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fmtc.evaluate.selection import honest_selection, paper_selection, snapshot_rule
from fmtc.evaluate.splits import Split
from fmtc.execution import Executor
from fmtc.lifecycle import Result, find, materialise
from fmtc.predict.data import ExperimentData
from fmtc.predict.registry import ModelContext, ModelSpec, get_model
from fmtc.storage import write_json, write_torch

logger = logging.getLogger(__name__)

FIT_FILE = "fit.json"
WEIGHTS_FILE = "weights.pt"
WEIGHTS = "weights"
TEST_TRAJECTORY = "test_trajectory"


@dataclass(frozen=True)
class Arm:
    """One resolved arm: a registered model, its hyper-parameters and its input data.

    Attributes
    ----------
    name : str
        Arm name in every table (e.g. ``fmmtc`` or ``fmmtc-random-init``).
    model : str
        Registered model (:func:`fmtc.predict.registry.get_model`).
    params : object
        The model's hyper-parameters (its plan section, e.g. a ``TrainPlan``).
    context : ModelContext
        Device and connectivity settings of the model.
    data : str
        Key of this arm's :class:`ExperimentData` among the experiment's datasets.
    spec : ModelSpec, optional
        The model's declaration, carried with the arm so that worker processes, which only
        know the built-in models, can run models registered by the caller. Default: looked
        up in the registry.
    """

    name: str
    model: str
    params: Any
    context: ModelContext = field(default_factory=ModelContext)
    data: str = "default"
    spec: ModelSpec | None = None

    @property
    def model_spec(self) -> ModelSpec:
        """The model's declaration (carried, else from the registry)."""
        return self.spec if self.spec is not None else get_model(self.model)

    @property
    def display_name(self) -> str:
        """The model's display name when the arm is named after it, else the arm name."""
        return self.model_spec.display_name if self.name == self.model else self.name


@dataclass(frozen=True)
class FoldTask:
    """One independent fit: an arm on one split, with its fitting and validation subjects."""

    arm: Arm
    split: Split
    fit: np.ndarray
    validation: np.ndarray
    seed: int
    honest_epoch: str = "last"


@dataclass
class FitRecord:
    """What one fit gives back (read from its folder, or computed in memory).

    Attributes
    ----------
    test : ndarray of int
        The test subjects (rows of the data).
    probabilities : ndarray of shape (n_test,)
        P(class 1) of the test subjects at the honest epoch (models without epochs: their
        only predictions).
    logits : ndarray of shape (n_test, 2) or None
        Their two logits (torch models).
    epoch : int or None
        The honest epoch (0-based; None for models without epochs).
    val_probabilities : ndarray of shape (epochs, n_val) or None
        Inner-validation predictions after every epoch (``honest_epoch: validation``).
    test_trajectory : ndarray of shape (epochs, n_test) or None
        Test predictions after every epoch (the ``test_trajectory`` artifact).
    test_logit_trajectory : ndarray of shape (epochs, n_test, 2) or None
    train_loss, lr : list of float or None
        Per epoch.
    config : dict or None
        The torch model's :class:`~fmtc.predict.models.ModelConfig`.
    seconds : float
    folder : Path or None
        The published fit folder (None when computed in memory only).
    key : str or None
    weights : Path or None
        The honest epoch's ``state_dict`` (the ``weights`` artifact), when present.
    """

    test: np.ndarray
    probabilities: np.ndarray
    logits: np.ndarray | None = None
    epoch: int | None = None
    val_probabilities: np.ndarray | None = None
    test_trajectory: np.ndarray | None = None
    test_logit_trajectory: np.ndarray | None = None
    train_loss: list[float] | None = None
    lr: list[float] | None = None
    config: dict[str, Any] | None = None
    seconds: float = 0.0
    folder: Path | None = None
    key: str | None = None
    weights: Path | None = None
    state: dict[str, Any] | None = field(default=None, repr=False)

    def select(self, selection: str, val_labels: np.ndarray,
               test_labels: np.ndarray) -> tuple[int | None, np.ndarray, np.ndarray | None]:
        """``(epoch, probabilities, logits)`` of the test subjects under ``selection``.

        ``honest`` is the stored epoch; ``paper`` (the best test MCC, the authors' rule) needs
        the ``test_trajectory`` artifact.
        """
        if self.epoch is None or selection == "honest":
            return self.epoch, self.probabilities, self.logits
        if selection != "paper":
            raise ValueError(f"unknown selection {selection!r}; use 'honest' or 'paper'")
        if self.test_trajectory is None:
            raise ValueError("the paper's selection reads the test fold after every epoch; this "
                             "fit was computed without its test trajectory")
        epoch = paper_selection(test_labels, self.test_trajectory)
        logits = (None if self.test_logit_trajectory is None
                  else self.test_logit_trajectory[epoch])
        return epoch, self.test_trajectory[epoch], logits

    def to_json(self) -> dict[str, Any]:
        """The stored fields (floats as JSON numbers: exact for float64)."""
        def plain(value: Any) -> Any:
            return None if value is None else np.asarray(value, dtype=np.float64).tolist()

        return {"test": [int(i) for i in self.test], "probabilities": plain(self.probabilities),
                "logits": plain(self.logits), "epoch": self.epoch,
                "val_probabilities": plain(self.val_probabilities),
                "test_trajectory": plain(self.test_trajectory),
                "test_logit_trajectory": plain(self.test_logit_trajectory),
                "train_loss": self.train_loss, "lr": self.lr, "config": self.config,
                "seconds": self.seconds}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FitRecord:
        """Inverse of :meth:`to_json`."""
        def array(name: str) -> np.ndarray | None:
            value = data.get(name)
            return None if value is None else np.asarray(value, dtype=np.float64)

        logits = array("logits")
        trajectory = array("test_logit_trajectory")
        n_test = len(data["test"])
        return cls(test=np.asarray(data["test"], dtype=np.int64),
                   probabilities=np.asarray(data["probabilities"], dtype=np.float64),
                   logits=None if logits is None else logits.reshape(n_test, 2),
                   epoch=data.get("epoch"), val_probabilities=array("val_probabilities"),
                   test_trajectory=array("test_trajectory"),
                   test_logit_trajectory=(None if trajectory is None
                                          else trajectory.reshape(-1, n_test, 2)),
                   train_loss=data.get("train_loss"), lr=data.get("lr"),
                   config=data.get("config"), seconds=float(data.get("seconds", 0.0)))


# --------------------------------------------------------------------------- one fit


@contextlib.contextmanager
def _deterministic_torch() -> Iterator[None]:
    import torch
    import torch.utils.deterministic as deterministic

    previous = torch.are_deterministic_algorithms_enabled()
    filled = deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN before it is written: memory
    # traffic that changes no result (the values are overwritten), ~2-4% of a fit.
    deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        deterministic.fill_uninitialized_memory = filled
        torch.use_deterministic_algorithms(previous)


def run_fold(task: FoldTask, data: ExperimentData, *, weights: bool = False,
             trajectory: bool = False) -> FitRecord:
    """Fit ``task.arm`` on one split and predict its test subjects (in memory).

    A module-level function so that worker processes can run it; it reads nothing but its
    arguments and leaves the caller's random state unchanged.

    Parameters
    ----------
    task : FoldTask
    data : ExperimentData
    weights : bool
        Keep the honest epoch's ``state_dict`` (``FitRecord.state``).
    trajectory : bool
        Record the test subjects' predictions after every epoch.
    """
    start = time.perf_counter()
    arm, split = task.arm, task.split
    spec = arm.model_spec
    labels = np.asarray(data.labels, dtype=np.int64)
    estimator = spec.create(arm.params, arm.context)
    if not spec.epochs:
        estimator.fit(data, split.train, seed=task.seed)
        probs = np.asarray(estimator.predict_proba(data, split.test), dtype=np.float64)
        return FitRecord(np.asarray(split.test), probs, seconds=time.perf_counter() - start)
    val, test = np.asarray(task.validation), np.asarray(split.test)
    by_validation = task.honest_epoch == "validation"
    rule = (snapshot_rule(["honest"], labels[val], labels[test], task.honest_epoch)
            if weights and by_validation else None)
    # The test subjects are scored after every epoch only where something reads it: the
    # paper's selection (the trajectory), or the epoch an inner validation split picks.
    every = trajectory or by_validation
    with _deterministic_torch():
        estimator.fit(data, task.fit, seed=task.seed, validation=val, test=test, snapshot=rule,
                      score_test="every_epoch" if every else "last")
    log = estimator.log_
    epoch = (honest_selection(labels[val], log.val_probabilities) if by_validation
             else len(log.train_loss) - 1)
    logits = np.stack([np.asarray(z, dtype=np.float64) for z in log.test_logits])
    row = log.test_epochs.index(epoch)
    state = None
    if weights:
        if by_validation:
            state = log.snapshots["honest"][1]
        else:
            state = {k: v.detach().to("cpu", copy=True) for k, v in log.model.state_dict().items()}
    return FitRecord(
        test, np.asarray(log.test_probabilities[row], dtype=np.float64), logits[row], epoch,
        val_probabilities=(np.asarray(log.val_probabilities, dtype=np.float64)
                           if len(val) else None),
        test_trajectory=(np.asarray(log.test_probabilities, dtype=np.float64)
                         if trajectory else None),
        test_logit_trajectory=logits if trajectory else None,
        train_loss=[float(v) for v in log.train_loss], lr=[float(v) for v in log.lr],
        config=estimator.config_.to_dict(), seconds=time.perf_counter() - start, state=state)


@dataclass(frozen=True, eq=False)
class Fit(Result):
    """One fit as a result (see the module docstring).

    Parameters
    ----------
    task : FoldTask
    data_identity : dict
        What the model reads (:meth:`fmtc.predict.data.ExperimentData.identity` of its
        inputs).
    fits : Path
        Where fits are published.
    device : str
        The device type the fit trains on (``cpu``, ``cuda``).
    threads : int
        Torch / BLAS threads of the fit.
    dataset : str
        Key of its data in the mapping handed to the workers (not part of the identity).
    data : ExperimentData, optional
        The data itself, set where the fit is computed.
    """

    kind: ClassVar[str] = "fit"
    place: ClassVar[str] = "outputs.fits_dir"
    extras: ClassVar[frozenset[str]] = frozenset({WEIGHTS, TEST_TRAJECTORY})

    task: FoldTask
    data_identity: dict[str, Any]
    fits: Path
    device: str = "cpu"
    threads: int = 1
    dataset: str = field(default="default", compare=False)
    data: ExperimentData | None = field(default=None, compare=False, repr=False)

    def config(self) -> dict[str, Any]:
        task, arm = self.task, self.task.arm
        spec = arm.model_spec
        config: dict[str, Any] = {
            "model": arm.model, "inputs": list(spec.inputs),
            "params": dataclasses.asdict(arm.params) if dataclasses.is_dataclass(arm.params)
            else arm.params,
            "fit": np.asarray(task.fit).tolist(),
            "validation": np.asarray(task.validation).tolist(),
            "test": np.asarray(task.split.test).tolist(), "seed": int(task.seed),
            "threads": self.threads}
        if "fc" in spec.inputs:
            config["connectivity"] = {"pool_size": arm.context.pool_size,
                                      "kind": arm.context.fc_kind}
        if spec.epochs:
            config.update(device=self.device, honest_epoch=task.honest_epoch,
                          protocol={"zero_grad": arm.context.zero_grad,
                                    "eval_crops": arm.context.eval_crops})
        return config

    def inputs(self) -> dict[str, Any]:
        return {"data": self.data_identity}

    def default_folder(self) -> Path:
        return Path(self.fits) / f"fit-{self.task.arm.model}-{self.key}"

    def compute(self, staging: Path, extras: frozenset[str]) -> None:
        if self.data is None:
            raise RuntimeError("a fit is computed where its data is (Fit.data is not set)")
        record = run_fold(self.task, self.data, weights=WEIGHTS in extras,
                          trajectory=TEST_TRAJECTORY in extras)
        if record.state is not None:
            write_torch(staging / WEIGHTS_FILE, record.state)
        write_json(staging / FIT_FILE, record.to_json())

    def load(self, folder: Path, record: dict[str, Any]) -> FitRecord:
        from fmtc.errors import CacheError

        path = folder / FIT_FILE
        try:
            found = FitRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CacheError(f"fit {path} cannot be read ({error})", path=path,
                             reason=f"{type(error).__name__}: {error}") from None
        if found.test.tolist() != np.asarray(self.task.split.test).tolist():
            raise CacheError(f"fit {path} does not hold its test subjects", path=path,
                             reason="its test subjects differ from its identity's")
        weights = folder / WEIGHTS_FILE
        return dataclasses.replace(found, folder=folder, key=record["key"],
                                   weights=weights if weights.is_file() else None)

    def provenance(self) -> dict[str, Any]:
        split = self.task.split
        return {"arm": self.task.arm.name, "repeat": int(split.repeat), "fold": int(split.fold)}


# --------------------------------------------------------------------------- many fits


def _compute_fit(item: tuple[Fit, frozenset[str], bool], datasets: dict[str, ExperimentData]
                 ) -> FitRecord:
    """Run one fit where its data is (this process or a worker); publish it when stored."""
    fit, need, publish = item
    fit = dataclasses.replace(fit, data=datasets[fit.dataset])
    if not publish:
        record = run_fold(fit.task, fit.data, weights=WEIGHTS in need,
                          trajectory=TEST_TRAJECTORY in need)
        record.state = None if WEIGHTS not in need else record.state
        return record
    return materialise(fit, need=need).value


@dataclass
class FitBatch:
    """What :func:`run_fits` did: the records, and which were computed (not read back)."""

    records: list[FitRecord]
    computed_at: list[bool] = field(default_factory=list)

    @property
    def computed(self) -> int:
        """Fits computed (identical fits asked for twice count once)."""
        return len({r.key or id(r) for r, fresh in zip(self.records, self.computed_at,
                                                        strict=True) if fresh})

    @property
    def reused(self) -> int:
        """Fits read back."""
        return self.computed_at.count(False)


def run_fits(fits: Sequence[Fit], datasets: dict[str, ExperimentData], *,
             need: Sequence[frozenset[str]] | None = None, executor: Executor | None = None,
             publish: bool = True, progress: bool | None = None,
             desc: str = "fits") -> FitBatch:
    """Every fit of ``fits``, read back when published, the others computed on ``executor``.

    Parameters
    ----------
    fits : sequence of Fit
        Their ``dataset`` keys index ``datasets``.
    datasets : dict of str to ExperimentData
        Handed once to the executor's workers (memory-mapped by local workers).
    need : sequence of frozenset of str, optional
        Per fit, the optional artifacts (``weights``, ``test_trajectory``) it must hold.
    executor : Executor, optional
        Default: this process.
    publish : bool
        Publish computed fits in their folders and read published ones back (False: compute
        every fit in memory, nothing read or written).
    progress : bool, optional
        Progress bar over the computed fits.

    Returns
    -------
    FitBatch
        One record per fit, in the order of ``fits``.
    """
    need = list(need) if need is not None else [frozenset()] * len(fits)
    records: dict[int, FitRecord] = {}
    pending: dict[str, list[int]] = {}  # key -> positions (identical fits are computed once)
    wants: dict[str, frozenset[str]] = {}
    for i, (fit, extras) in enumerate(zip(fits, need, strict=True)):
        if publish and (found := find(fit, need=extras)) is not None:
            records[i] = found.value
            continue
        key = fit.key if publish else f"{i}"
        pending.setdefault(key, []).append(i)
        wants[key] = wants.get(key, frozenset()) | extras
    reused = len(records)
    if pending:
        executor = executor or Executor()
        todo = [fits[positions[0]] for positions in pending.values()]
        logger.info("%d fit(s): %d read back, %d to compute on %s%s", len(fits), reused,
                    len(pending), executor.backend,
                    _estimate(todo, executor) if publish else "")
        items = [(fits[positions[0]], wants[key], publish) for key, positions in pending.items()]
        computed = executor.map(_compute_fit, items, datasets, desc=desc, progress=progress)
        for positions, record in zip(pending.values(), computed, strict=True):
            for i in positions:
                records[i] = record
    elif fits:
        logger.debug("%d fit(s), every one read back", len(fits))
    fresh = {i for positions in pending.values() for i in positions}
    return FitBatch([records[i] for i in range(len(fits))],
                    [i in fresh for i in range(len(fits))])


def _estimate(todo: Sequence[Fit], executor: Executor, sample: int = 20) -> str:
    """`` (about N min ...)``: the time ``todo`` should take, from earlier fits of their models.

    The median seconds of the most recent published fits of each model (at most ``sample``),
    summed over the fits to compute and divided by the workers; empty when the store holds no
    earlier fit of a model to go by.
    """
    import os
    import statistics

    seconds: dict[tuple[Path, str], float | None] = {}
    total = 0.0
    for fit in todo:
        tag = (Path(fit.fits), fit.task.arm.model)
        if tag not in seconds:
            found = sorted(tag[0].glob(f"fit-{tag[1]}-*/{FIT_FILE}"),
                           key=lambda p: p.stat().st_mtime, reverse=True)[:sample]
            values = []
            for path in found:
                try:
                    values.append(float(json.loads(path.read_text())["seconds"]))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
            seconds[tag] = statistics.median(values) if values else None
        if seconds[tag] is None:
            return ""
        total += seconds[tag]
    workers = max(1, executor.n_jobs if executor.n_jobs > 0 else os.cpu_count() or 1)
    if executor.backend == "sequential":
        workers = 1
    wall = total / workers
    when = f"{wall:.0f} s" if wall < 90 else f"{wall / 60:.0f} min"
    return f" (about {when}, from earlier fits of these models)"
