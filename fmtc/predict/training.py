"""Training loop of FMM_TC and its unimodal variants, logging one trajectory per fold.

The paper's recipe (Fan et al., MICCAI 2025, Sec. 3): AdamW, a cosine schedule
over the epochs, batch size 8, cross-entropy. Each step draws one random window
(one cached BrainLM CLS row) per subject from its deterministic window set;
evaluation is deterministic: a subject's logits are the mean over all its
windows. After every epoch the loop records the predicted probabilities of the
inner-validation and of the test subjects, so that model selection (honest or
the paper's) is a read of the same trajectory and no model is trained twice.

The loop knows nothing about metrics or selection rules: the caller passes a
``snapshot`` callback that says, after each epoch, which selections would pick
this epoch; their weights are kept in memory (see :mod:`fmtc.evaluate.selection`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmtc.device import autocast
from fmtc.plan import TrainPlan
from fmtc.predict.models import ModelConfig, build_model

SnapshotRule = Callable[[np.ndarray, np.ndarray], list[str]]
"""``(val_probs [E, n_val], test_probs [E, n_test]) -> names of selections choosing epoch E-1``."""


@dataclass(frozen=True)
class ModelInputs:
    """Per-subject inputs of the torch models, already on the compute device.

    Attributes
    ----------
    cls : Tensor of shape (N, W, H) or None
        BrainLM CLS of each window; rows beyond ``n_windows[i]`` are zeros.
    n_windows : Tensor of shape (N,) or None
        Valid windows per subject.
    fc : Tensor of shape (N, R, R) or None
        Connectivity matrices.
    labels : Tensor of shape (N,)
        0/1 labels (int64).
    """

    cls: Tensor | None
    n_windows: Tensor | None
    fc: Tensor | None
    labels: Tensor

    @classmethod
    def from_arrays(cls_, labels: np.ndarray, device: torch.device, cls: np.ndarray | None = None,
                    n_windows: np.ndarray | None = None,
                    fc: np.ndarray | None = None) -> ModelInputs:
        """Check shapes, replace NaN padding windows by zeros and move to ``device``."""
        labels = np.array(labels, dtype=np.int64)  # a writable copy for torch.from_numpy
        n = len(labels)
        cls_t = windows_t = fc_t = None
        if cls is not None:
            cls = np.asarray(cls, dtype=np.float32)
            n_windows = np.asarray(n_windows, dtype=np.int64)
            if cls.ndim != 3 or cls.shape[0] != n or n_windows.shape != (n,):
                raise ValueError(f"expected CLS [N={n}, W, H] and n_windows [{n}], got "
                                 f"{cls.shape} and {n_windows.shape}")
            if (n_windows < 1).any() or (n_windows > cls.shape[1]).any():
                raise ValueError(f"n_windows must lie in [1, {cls.shape[1]}], got "
                                 f"{n_windows.min()}..{n_windows.max()}")
            valid = np.arange(cls.shape[1])[None, :] < n_windows[:, None]
            if not np.isfinite(cls[valid]).all():
                raise ValueError("CLS features hold NaN or infinite values inside valid windows; "
                                 "rebuild the feature cache")
            cls_t = torch.from_numpy(np.where(valid[..., None], cls, 0.0).astype(np.float32))
            cls_t, windows_t = cls_t.to(device), torch.from_numpy(n_windows).to(device)
        if fc is not None:
            fc = np.array(fc, dtype=np.float32)  # a writable copy (inputs may be memory-mapped)
            if fc.ndim != 3 or fc.shape[0] != n or fc.shape[1] != fc.shape[2]:
                raise ValueError(f"expected connectivity [N={n}, R, R], got {fc.shape}")
            fc_t = torch.from_numpy(fc).to(device)
        return cls_(cls_t, windows_t, fc_t, torch.from_numpy(labels).to(device))

    @classmethod
    def from_data(cls_, data: Any, inputs: Sequence[str], device: torch.device) -> ModelInputs:
        """The ``inputs`` (``cls``, ``fc``) of an :class:`~fmtc.predict.data.ExperimentData`."""
        use_cls = "cls" in inputs
        return cls_.from_arrays(data.labels, device,
                                cls=data.cls if use_cls else None,
                                n_windows=data.n_windows if use_cls else None,
                                fc=data.fc if "fc" in inputs else None)


@dataclass
class TrainingLog:
    """What one fold's training recorded.

    Attributes
    ----------
    train_loss, lr : list of float
        Mean training loss and learning rate of each epoch.
    val_probabilities : ndarray of shape (epochs, n_val)
        P(class 1) of the inner-validation subjects after each epoch.
    test_probabilities : ndarray of shape (epochs, n_test)
        P(class 1) of the test subjects after each epoch (logged, never trained on).
    snapshots : dict of str to (int, dict)
        Selection name -> (epoch, CPU ``state_dict`` of that epoch).
    model : torch.nn.Module or None
        The model after the last epoch.
    """

    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    test_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    snapshots: dict[str, tuple[int, dict[str, Tensor]]] = field(default_factory=dict)
    model: nn.Module | None = None


def standardisation_statistics(inputs: ModelInputs, subjects: np.ndarray
                               ) -> dict[str, tuple[Tensor, Tensor]]:
    """Mean and std of the inputs over ``subjects`` only (the fitting part of a training fold).

    CLS: per feature, over every valid window of those subjects. FC: per edge,
    over those subjects' matrices (population std).
    """
    index = torch.as_tensor(np.asarray(subjects), device=inputs.labels.device)
    stats: dict[str, tuple[Tensor, Tensor]] = {}
    if inputs.cls is not None:
        cls, n_windows = inputs.cls[index], inputs.n_windows[index]
        valid = torch.arange(cls.shape[1], device=cls.device)[None, :] < n_windows[:, None]
        rows = cls[valid]
        stats["cls"] = (rows.mean(0), rows.std(0, unbiased=False))
    if inputs.fc is not None:
        fc = inputs.fc[index]
        stats["fc"] = (fc.mean(0), fc.std(0, unbiased=False))
    return stats


def _batches(order: Tensor, batch_size: int) -> list[Tensor]:
    # BatchNorm cannot train on one sample: a final singleton joins the batch before it.
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = torch.cat([batches[-2], batches.pop()])
    return batches


def _sample_windows(inputs: ModelInputs, subjects: Tensor,
                    generator: torch.Generator) -> Tensor | None:
    if inputs.cls is None:
        return None
    draws = torch.rand(len(subjects), generator=generator).to(inputs.cls.device)
    window = (draws * inputs.n_windows[subjects]).long()
    return inputs.cls[subjects, window]


def predict_logits(model: torch.nn.Module, inputs: ModelInputs, subjects: np.ndarray,
                   device: torch.device, chunk: int = 16) -> np.ndarray:
    """Deterministic subject logits: the mean of the logits over each subject's valid windows.

    Parameters
    ----------
    model : torch.nn.Module
        A model of :mod:`fmtc.predict.models` (put in eval mode here).
    inputs : ModelInputs
    subjects : ndarray of int
        Rows of ``inputs`` to predict.
    device : torch.device
    chunk : int
        Subjects per forward pass.

    Returns
    -------
    ndarray of shape (len(subjects), 2), float64
    """
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(subjects), chunk):
            index = torch.as_tensor(np.asarray(subjects[start:start + chunk]), device=device)
            fc = inputs.fc[index] if inputs.fc is not None else None
            if inputs.cls is None:
                with autocast(device):
                    logits = model(None, fc).float()
                out.append(logits)
                continue
            cls = inputs.cls[index]
            with autocast(device):
                logits = model(cls, fc).float()
            valid = (torch.arange(cls.shape[1], device=device)[None, :]
                     < inputs.n_windows[index][:, None]).float()
            out.append((logits * valid[..., None]).sum(1) / valid.sum(1, keepdim=True))
    if not out:
        return np.zeros((0, 2))
    return torch.cat(out).cpu().double().numpy()


def probabilities(logits: np.ndarray) -> np.ndarray:
    """P(class 1) from two logits: ``softmax(logits)[:, 1]``, computed stably in float64."""
    from scipy.special import expit

    logits = np.asarray(logits, dtype=np.float64)
    return expit(logits[:, 1] - logits[:, 0])


def train_fold(config: ModelConfig | Callable[[], nn.Module], train: TrainPlan,
               inputs: ModelInputs, fit: np.ndarray, val: np.ndarray, test: np.ndarray, *,
               seed: int, device: torch.device,
               snapshot: SnapshotRule | None = None) -> TrainingLog:
    """Train one model on ``fit`` subjects, logging validation and test predictions per epoch.

    Parameters
    ----------
    config : ModelConfig or callable
        The model to build: a registered model's config, or a function returning a new
        module (called with the torch generator seeded by ``seed``, so initial weights
        depend on ``seed`` only; the caller's random state is left as it was).
    train : TrainPlan
        Epochs, batch size, AdamW learning rate and weight decay, class weights.
    inputs : ModelInputs
        Every subject of the cohort, on ``device``.
    fit, val, test : ndarray of int
        Subjects trained on, used for selection (inner validation), and held out.
        Only ``fit`` labels are read here.
    seed : int
        Seeds the initial weights, the batch order and the window draws.
    device : torch.device
        Where to train (chosen by the caller); CUDA runs in bf16 autocast.
    snapshot : callable, optional
        Called after each epoch with the probabilities logged so far; returns the
        names of the selections that choose this epoch, whose weights are kept.

    Returns
    -------
    TrainingLog
    """
    fit, val, test = (np.asarray(a, dtype=np.int64) for a in (fit, val, test))
    if len(fit) < 2:
        raise ValueError(f"training needs at least 2 subjects, got {len(fit)}")
    build = (lambda: build_model(config)) if isinstance(config, ModelConfig) else config
    devices = [device] if device.type == "cuda" else []
    # Everything random inside (initial weights; dropout of a registered module) draws from
    # torch's generator seeded here, and the caller's random state is restored afterwards.
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return _train(build().to(device), train, inputs, fit, val, test, seed=seed,
                      device=device, snapshot=snapshot)


def _train(model: nn.Module, train: TrainPlan, inputs: ModelInputs, fit: np.ndarray,
           val: np.ndarray, test: np.ndarray, *, seed: int, device: torch.device,
           snapshot: SnapshotRule | None) -> TrainingLog:
    if hasattr(model, "set_standardisation"):  # optional for registered modules
        stats = standardisation_statistics(inputs, fit)
        model.set_standardisation(cls=stats.get("cls"), fc=stats.get("fc"))
    optimiser = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=train.epochs)
    weight = None
    if train.class_weights:
        counts = torch.bincount(inputs.labels[torch.as_tensor(fit, device=device)], minlength=2)
        weight = (len(fit) / (2.0 * counts.clamp(min=1).float())).to(device)
    generator = torch.Generator().manual_seed(seed)
    fit_t = torch.as_tensor(fit, device=device)
    log = TrainingLog()
    val_history, test_history = [], []
    for epoch in range(train.epochs):
        model.train()
        losses, sizes = [], []
        order = fit_t[torch.randperm(len(fit), generator=generator).to(device)]
        for subjects in _batches(order, train.batch_size):
            cls = _sample_windows(inputs, subjects, generator)
            fc = inputs.fc[subjects] if inputs.fc is not None else None
            optimiser.zero_grad(set_to_none=True)
            with autocast(device):
                logits = model(cls, fc)
            loss = F.cross_entropy(logits.float(), inputs.labels[subjects], weight=weight)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            sizes.append(len(subjects))
        log.train_loss.append(float(np.average(losses, weights=sizes)))
        log.lr.append(float(optimiser.param_groups[0]["lr"]))
        scheduler.step()
        val_history.append(probabilities(predict_logits(model, inputs, val, device)))
        test_history.append(probabilities(predict_logits(model, inputs, test, device)))
        if snapshot is not None:
            chosen = snapshot(np.stack(val_history), np.stack(test_history))
            if chosen:
                state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                log.snapshots.update({name: (epoch, state) for name in chosen})
    log.val_probabilities = np.stack(val_history)
    log.test_probabilities = np.stack(test_history)
    log.model = model
    return log


class TorchClassifier:
    """A registry estimator around :func:`train_fold` for a torch module class.

    Parameters
    ----------
    kind : str
        Registered model name (``ModelConfig.kind``).
    module : type
        ``nn.Module`` class built from a :class:`ModelConfig`; takes ``(cls, fc)``.
    inputs : sequence of str
        Inputs it reads (``cls``, ``fc``).
    params : TrainPlan
        Epochs, batch size, learning rate, weight decay, class weights.
    context : ModelContext
        Device and connectivity settings.

    Attributes
    ----------
    config_ : ModelConfig
        Set by :meth:`fit`; with the weights, all a reader needs to rebuild the model.
    log_ : TrainingLog
        Per-epoch probabilities of the monitored subjects and the selections' snapshots.
    """

    def __init__(self, kind: str, module: type, inputs: Sequence[str], params: TrainPlan,
                 context: Any):
        self.kind, self.module, self.inputs = kind, module, tuple(inputs)
        self.params, self.context = params, context

    @property
    def device(self) -> torch.device:
        """The training device (CPU unless the context names one)."""
        return self.context.device if self.context.device is not None else torch.device("cpu")

    def fit(self, data: Any, train: np.ndarray, *, seed: int, validation: np.ndarray | None = None,
            test: np.ndarray | None = None,
            snapshot: SnapshotRule | None = None) -> TorchClassifier:
        """Train on rows ``train``; log per-epoch probabilities of ``validation`` and ``test``."""
        self.inputs_ = ModelInputs.from_data(data, self.inputs, self.device)
        self.config_ = ModelConfig(
            kind=self.kind,
            cls_dim=int(data.cls.shape[2]) if "cls" in self.inputs else 0,
            n_regions=int(data.fc.shape[1]) if "fc" in self.inputs else 0,
            pool_size=self.context.pool_size, fc_kind=self.context.fc_kind)
        empty = np.zeros(0, dtype=np.int64)
        config = self.config_
        self.log_ = train_fold(lambda: self.module(config), self.params, self.inputs_, train,
                               empty if validation is None else validation,
                               empty if test is None else test, seed=seed, device=self.device,
                               snapshot=snapshot)
        return self

    def predict_proba(self, data: Any, subjects: np.ndarray) -> np.ndarray:
        """P(class 1) of rows ``subjects`` from the last epoch's model."""
        inputs = ModelInputs.from_data(data, self.inputs, self.device)
        return probabilities(predict_logits(self.log_.model, inputs, np.asarray(subjects),
                                            self.device))
