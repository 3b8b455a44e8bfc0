"""Training loop of FMM_TC and its unimodal variants, logging one trajectory per fold.

The paper's recipe (Fan et al., MICCAI 2025, Sec. 3): AdamW, a cosine schedule
over the epochs, batch size 8, cross-entropy. Each step draws one random window
(one cached BrainLM CLS row) per subject from its deterministic window set;
evaluation is deterministic: a subject's logits are the mean over all its
windows. Two switches of ``protocol`` reproduce the authors' loop instead
(``FMM_TC-tutorial.ipynb``, training cell): ``zero_grad: per_epoch`` and
``eval_crops: random``. After every epoch the loop records the predicted probabilities of the
inner-validation and of the test subjects, so that model selection (honest or
the paper's) is a read of the same trajectory and no model is trained twice.

The loop knows nothing about metrics or selection rules: the caller passes a
``snapshot`` callback that says, after each epoch, which selections would pick
this epoch; their weights are kept in memory (see :mod:`fmtc.evaluate.selection`).

Models are called with their declared inputs by name (:func:`declared_inputs`). What
does not train is computed once per fold: the standardised, pooled FC image of every
subject (:func:`fc_images`). AdamW is fused (:func:`adamw`). Per quick-sized FMM_TC fit
on one CPU thread the ResNet-18 itself is most of what is left
(``benchmarks/bench_training_epoch.py``).
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
    fc_windows : Tensor of shape (N, W, R, R) or None
        Connectivity of each window's crop (zeros beyond ``n_windows``), for
        ``eval_crops="random"`` and per-window FC kinds.
    cls_draws : Tensor of shape (N, W, S, H) or None
        Features of ``S`` token orders per window (``token_order: random_each_call``).
    window_fc : bool
        The FC is defined per window: pair each window with ``fc_windows`` of that window.
    """

    cls: Tensor | None
    n_windows: Tensor | None
    fc: Tensor | None
    labels: Tensor
    fc_windows: Tensor | None = None
    cls_draws: Tensor | None = None
    window_fc: bool = False

    @classmethod
    def from_arrays(cls_, labels: np.ndarray, device: torch.device, cls: np.ndarray | None = None,
                    n_windows: np.ndarray | None = None,
                    fc: np.ndarray | None = None, fc_windows: np.ndarray | None = None,
                    cls_draws: np.ndarray | None = None,
                    window_fc: bool = False) -> ModelInputs:
        """Check shapes, replace NaN padding windows by zeros and move to ``device``."""
        labels = np.array(labels, dtype=np.int64)  # a writable copy for torch.from_numpy
        n = len(labels)
        cls_t = windows_t = fc_t = fcw_t = draws_t = None
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
            if cls_draws is not None:
                draws = np.asarray(cls_draws, dtype=np.float32)
                if draws.ndim != 4 or draws.shape[:2] != cls.shape[:2]:
                    raise ValueError(f"expected CLS draws [N, W={cls.shape[1]}, S, H], got "
                                     f"{draws.shape}")
                draws = np.where(valid[:, :, None, None], draws, 0.0).astype(np.float32)
                draws_t = torch.from_numpy(draws).to(device)
        if fc is not None:
            fc = np.array(fc, dtype=np.float32)  # a writable copy (inputs may be memory-mapped)
            if fc.ndim != 3 or fc.shape[0] != n or fc.shape[1] != fc.shape[2]:
                raise ValueError(f"expected connectivity [N={n}, R, R], got {fc.shape}")
            fc_t = torch.from_numpy(fc).to(device)
        if fc_windows is not None:
            fcw = np.asarray(fc_windows, dtype=np.float32)
            if fcw.ndim != 4 or fcw.shape[0] != n or n_windows is None:
                raise ValueError(f"expected window connectivity [N={n}, W, R, R] with n_windows, "
                                 f"got {fcw.shape}")
            n_windows = np.asarray(n_windows, dtype=np.int64)
            valid = np.arange(fcw.shape[1])[None, :] < n_windows[:, None]
            fcw_t = torch.from_numpy(np.where(valid[..., None, None], fcw, 0.0)
                                     .astype(np.float32)).to(device)
            if windows_t is None:
                windows_t = torch.from_numpy(n_windows).to(device)
        elif window_fc:
            raise ValueError("window_fc needs fc_windows")
        return cls_(cls_t, windows_t, fc_t, torch.from_numpy(labels).to(device), fcw_t, draws_t,
                    window_fc)

    @classmethod
    def from_data(cls_, data: Any, inputs: Sequence[str], device: torch.device) -> ModelInputs:
        """The ``inputs`` (``cls``, ``fc``) of an :class:`~fmtc.predict.data.ExperimentData`."""
        use_cls, use_fc = "cls" in inputs, "fc" in inputs
        fc_windows = getattr(data, "fc_windows", None) if use_fc else None
        return cls_.from_arrays(data.labels, device,
                                cls=data.cls if use_cls else None,
                                n_windows=data.n_windows if use_cls or fc_windows is not None
                                else None,
                                fc=data.fc if use_fc else None,
                                fc_windows=fc_windows,
                                cls_draws=getattr(data, "cls_draws", None) if use_cls else None,
                                window_fc=bool(getattr(data, "window_fc", False)) and use_fc)


@dataclass
class TrainingLog:
    """What one fold's training recorded.

    Attributes
    ----------
    train_loss, lr : list of float
        Mean training loss and learning rate of each epoch.
    val_probabilities : ndarray of shape (epochs, n_val)
        P(class 1) of the inner-validation subjects after each epoch.
    test_probabilities : ndarray of shape (scored epochs, n_test)
        P(class 1) of the test subjects after each scored epoch (logged, never trained on;
        every epoch unless ``score_test="last"``, see ``test_epochs``).
    snapshots : dict of str to (int, dict)
        Selection name -> (epoch, CPU ``state_dict`` of that epoch).
    test_logits : list of ndarray of shape (n_test, 2)
        The test subjects' two logits after each scored epoch (the authors' AUC reads the
        class-1 logit).
    test_epochs : list of int
        The epochs (0-based) after which the test subjects were scored.
    model : torch.nn.Module or None
        The model after the last epoch.
    """

    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    test_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    snapshots: dict[str, tuple[int, dict[str, Tensor]]] = field(default_factory=dict)
    model: nn.Module | None = None
    test_logits: list[np.ndarray] = field(default_factory=list)
    test_epochs: list[int] = field(default_factory=list)


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
        if inputs.cls_draws is not None:  # every token order's features of the valid windows
            rows = inputs.cls_draws[index][valid].flatten(0, 1)
        else:
            rows = cls[valid]
        stats["cls"] = (rows.mean(0), rows.std(0, unbiased=False))
    if inputs.window_fc:  # per-window FC: statistics over the valid windows' crops
        fcw, n_windows = inputs.fc_windows[index], inputs.n_windows[index]
        valid = torch.arange(fcw.shape[1], device=fcw.device)[None, :] < n_windows[:, None]
        rows = fcw[valid]
        stats["fc"] = (rows.mean(0), rows.std(0, unbiased=False))
    elif inputs.fc is not None:
        fc = inputs.fc[index]
        stats["fc"] = (fc.mean(0), fc.std(0, unbiased=False))
    return stats


def declared_inputs(model: nn.Module, inputs: ModelInputs,
                    reads: Sequence[str] | None = None) -> tuple[str, ...]:
    """The named inputs ``model`` is called with: ``model(**{name: tensor for name in ...})``.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : ModelInputs
    reads : sequence of str, optional
        The model's declared inputs (``ModelSpec.inputs``). Default: those of the registered
        model ``model.config.kind``, else the inputs that ``inputs`` holds.

    Returns
    -------
    tuple of str
        ``cls`` and/or ``fc``, in that order.
    """
    if reads is None:
        kind = getattr(getattr(model, "config", None), "kind", None)
        if isinstance(kind, str):
            from fmtc.predict.registry import get_model, model_names

            if kind in model_names():
                reads = get_model(kind).inputs
    if reads is None:
        reads = [name for name, held in (("cls", inputs.cls is not None),
                                         ("fc", inputs.fc is not None or inputs.window_fc))
                 if held]
    found = tuple(name for name in ("cls", "fc") if name in reads)
    if not found:
        raise ValueError(f"a torch model reads cls and/or fc; got {list(reads)}")
    if "cls" in found and inputs.cls is None:
        raise ValueError("the model reads cls but the inputs hold no CLS features")
    if "fc" in found and inputs.fc is None and not inputs.window_fc:
        raise ValueError("the model reads fc but the inputs hold no connectivity")
    return found


def fc_images(model: nn.Module, inputs: ModelInputs, chunk: int = 32) -> Tensor | None:
    """``model.fc_encoder.image`` of every subject's connectivity, computed once.

    The standardised, pooled matrices depend on no trained weight, only on the
    standardisation set from the fold's fitting subjects, so a fold computes them once and
    feeds them as ``fc_image`` at every step and evaluation. Needs a model that accepts
    ``fc_image`` (``accepts_fc_image``) and pools its input (``pool_size``; without pooling
    the image is the standardised matrix itself, and a copy of every matrix would only cost
    memory).

    Parameters
    ----------
    model : torch.nn.Module
        Its standardisation already set.
    inputs : ModelInputs
    chunk : int
        Matrices per call.

    Returns
    -------
    Tensor of shape (N, 1, P, P) or (N, W, 1, P, P), or None
        One image per subject, or per window when ``inputs.window_fc``; None when the model
        takes no ``fc_image`` or does not pool.
    """
    from fmtc.predict.models import FCEncoder

    encoder = getattr(model, "fc_encoder", None)
    if (not getattr(model, "accepts_fc_image", False) or not isinstance(encoder, FCEncoder)
            or encoder.pool_size is None):
        return None
    source = inputs.fc_windows if inputs.window_fc else inputs.fc
    if source is None:
        return None
    flat = source.flatten(0, 1) if inputs.window_fc else source
    with torch.no_grad():
        images = torch.cat([encoder.image(flat[start:start + chunk])
                            for start in range(0, len(flat), chunk)])
    return images.unflatten(0, source.shape[:2]) if inputs.window_fc else images


def _batches(order: Tensor, batch_size: int) -> list[Tensor]:
    # BatchNorm cannot train on one sample: a final singleton joins the batch before it.
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()  # popped first: the target below is then the new last batch
        batches[-1] = torch.cat([batches[-1], last])
    return batches


@dataclass(frozen=True)
class _Feed:
    """Gathers the keyword inputs of a model for some subjects (and windows).

    ``images`` (:func:`fc_images` of the same inputs) replace ``fc`` by ``fc_image``.
    """

    inputs: ModelInputs
    reads: tuple[str, ...]
    images: Tensor | None = None

    def window_fc(self, subjects: Tensor, window: Tensor | None) -> dict[str, Tensor]:
        """The crop FC (or FC image) of one window per subject, or of all windows (flattened).

        Images stand for the crops only when the FC is defined per window (``window_fc``);
        otherwise they are the whole-recording matrices', and crops come from ``fc_windows``.
        """
        if "fc" not in self.reads:
            return {}
        name, source = (("fc_image", self.images)
                        if self.images is not None and self.inputs.window_fc
                        else ("fc", self.inputs.fc_windows))
        rows = source[subjects].flatten(0, 1) if window is None else source[subjects, window]
        return {name: rows}

    def subject_fc(self, subjects: Tensor) -> dict[str, Tensor]:
        """The whole-recording FC (or FC image) of each subject."""
        if "fc" not in self.reads:
            return {}
        if self.images is None:
            return {"fc": self.inputs.fc[subjects]}
        return {"fc_image": self.images[subjects]}

    def fc(self, subjects: Tensor, window: Tensor | None) -> dict[str, Tensor]:
        """The FC input of one window per subject: the window's own when ``window_fc``."""
        if self.inputs.window_fc:
            return self.window_fc(subjects, window)
        return self.subject_fc(subjects)


def _sample_windows(inputs: ModelInputs, subjects: Tensor,
                    generator: torch.Generator) -> tuple[Tensor | None, Tensor | None]:
    """One random window per subject and its CLS (None without per-window inputs).

    Returns the drawn window of each subject and its CLS row; the draws (a uniform per
    subject, then a token order per subject with ``cls_draws``) depend on the inputs held,
    never on the model.
    """
    if inputs.cls is None and not inputs.window_fc:
        return None, None
    device = inputs.labels.device
    draws = torch.rand(len(subjects), generator=generator).to(device)
    window = (draws * inputs.n_windows[subjects]).long()
    cls = None
    if inputs.cls is not None:
        if inputs.cls_draws is not None:  # a token order drawn afresh for this step
            order = torch.randint(inputs.cls_draws.shape[2], (len(subjects),),
                                  generator=generator).to(device)
            cls = inputs.cls_draws[subjects, window, order]
        else:
            cls = inputs.cls[subjects, window]
    return window, cls


EVAL_CROPS = ("all_windows", "random")
"""``protocol.eval_crops``: how a subject is evaluated (see :func:`predict_logits`)."""


def evaluation_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's evaluation draws (random crops, token orders)."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def predict_logits(model: torch.nn.Module, inputs: ModelInputs, subjects: np.ndarray,
                   device: torch.device, chunk: int = 16, crops: str = "all_windows",
                   generator: torch.Generator | None = None, *,
                   reads: Sequence[str] | None = None,
                   images: Tensor | None = None) -> np.ndarray:
    """Subject logits: by default the mean of the logits over each subject's valid windows.

    Parameters
    ----------
    model : torch.nn.Module
        A model of :mod:`fmtc.predict.models` (put in eval mode here), called with its
        declared inputs as keywords.
    inputs : ModelInputs
    subjects : ndarray of int
        Rows of ``inputs`` to predict.
    device : torch.device
    chunk : int
        Subjects per forward pass.
    crops : {"all_windows", "random"}
        ``all_windows`` (deterministic unless ``inputs.cls_draws``): the mean logits over the
        valid windows, with the whole-recording FC (or each window's own FC when
        ``inputs.window_fc``). A model that reads no per-window input (FC-only on
        whole-recording FC) is called once per subject: its logits are every window's.
        ``random`` (the authors' evaluation, ``protocol.eval_crops``): one window drawn per
        subject from ``generator``, with the FC of that window's crop.
    generator : torch.Generator, optional
        Draws of ``random`` crops and of ``cls_draws`` token orders (default: seed 0).
    reads : sequence of str, optional
        The model's declared inputs (:func:`declared_inputs`).
    images : Tensor, optional
        :func:`fc_images` of ``inputs`` for this model (fed as ``fc_image``); None computes
        the model's whole path from ``fc``.

    Returns
    -------
    ndarray of shape (len(subjects), 2), float64
    """
    if crops not in EVAL_CROPS:
        raise ValueError(f"unknown eval_crops {crops!r}; use one of {list(EVAL_CROPS)}")
    if crops == "random" and inputs.n_windows is None:
        raise ValueError("random evaluation crops need per-window inputs (n_windows)")
    if crops == "random" and inputs.fc is not None and inputs.fc_windows is None:
        raise ValueError("random evaluation crops need each window's connectivity (fc_windows)")
    feed = _Feed(inputs, declared_inputs(model, inputs, reads), images)
    drawn = (inputs.cls_draws is not None or crops == "random")
    if drawn and generator is None:
        generator = torch.Generator().manual_seed(0)
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(subjects), chunk):
            index = torch.as_tensor(np.asarray(subjects[start:start + chunk]), device=device)
            if crops == "random":
                out.append(_random_crop_logits(model, feed, index, device, generator))
                continue
            cls = None
            if inputs.cls is not None:
                cls = inputs.cls[index]
                if inputs.cls_draws is not None:  # one token order per window and evaluation
                    width = int(inputs.cls.shape[1])
                    order = torch.randint(inputs.cls_draws.shape[2], cls.shape[:2],
                                          generator=generator).to(device)
                    rows = torch.arange(len(index), device=device)[:, None]
                    cols = torch.arange(width, device=device)[None, :]
                    cls = inputs.cls_draws[index][rows, cols, order]
            per_window = "cls" in feed.reads or inputs.window_fc
            if not per_window:  # one call per subject; its logits are every window's
                with autocast(device):
                    out.append(model(**feed.subject_fc(index)).float())
                continue
            n_windows = inputs.n_windows[index]
            width = int(inputs.cls.shape[1] if inputs.cls is not None
                        else inputs.fc_windows.shape[1])
            named = {"cls": cls} if "cls" in feed.reads else {}
            with autocast(device):
                if inputs.window_fc:  # each window with its own crop's FC
                    if "cls" in named:
                        named["cls"] = cls.flatten(0, 1)
                    logits = model(**named, **feed.window_fc(index, None)).float()
                    logits = logits.view(len(index), width, 2)
                else:
                    logits = model(**named, **feed.subject_fc(index)).float()
            valid = (torch.arange(width, device=device)[None, :] < n_windows[:, None]).float()
            out.append((logits * valid[..., None]).sum(1) / valid.sum(1, keepdim=True))
    if not out:
        return np.zeros((0, 2))
    return torch.cat(out).cpu().double().numpy()


def _random_crop_logits(model: torch.nn.Module, feed: _Feed, index: Tensor,
                        device: torch.device, generator: torch.Generator) -> Tensor:
    """Logits ``[B, 2]`` of one random window per subject, with that crop's FC."""
    inputs = feed.inputs
    draws = torch.rand(len(index), generator=generator).to(device)
    window = (draws * inputs.n_windows[index]).long()
    named: dict[str, Tensor] = {}
    if inputs.cls is not None:
        if inputs.cls_draws is not None:
            order = torch.randint(inputs.cls_draws.shape[2], (len(index),),
                                  generator=generator).to(device)
            cls = inputs.cls_draws[index, window, order]
        else:
            cls = inputs.cls[index, window]
        if "cls" in feed.reads:
            named["cls"] = cls
    if inputs.fc_windows is not None:
        named.update(feed.window_fc(index, window))
    with autocast(device):
        return model(**named).float()


def probabilities(logits: np.ndarray) -> np.ndarray:
    """P(class 1) from two logits: ``softmax(logits)[:, 1]``, computed stably in float64."""
    from scipy.special import expit

    logits = np.asarray(logits, dtype=np.float64)
    return expit(logits[:, 1] - logits[:, 0])


def adamw(parameters: Any, lr: float, weight_decay: float, device: torch.device
          ) -> torch.optim.AdamW:
    """AdamW, fused where torch has a fused kernel for ``device`` (CPU and CUDA).

    The fused kernel updates each parameter in one pass instead of the per-tensor loop's
    chain of operations (each allocating a temporary): the same update, rounded differently
    in the last bits (``tests/test_training_speed.py``), and deterministic (elementwise).
    """
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay,
                             **({"fused": True} if fused else {}))


def train_fold(config: ModelConfig | Callable[[], nn.Module], train: TrainPlan,
               inputs: ModelInputs, fit: np.ndarray, val: np.ndarray, test: np.ndarray, *,
               seed: int, device: torch.device,
               snapshot: SnapshotRule | None = None, zero_grad: str = "per_batch",
               eval_crops: str = "all_windows", reads: Sequence[str] | None = None,
               score_test: str = "every_epoch") -> TrainingLog:
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
    zero_grad : {"per_batch", "per_epoch"}
        ``per_epoch`` (``protocol.zero_grad``, the authors' loop): gradients are zeroed once per
        epoch, so each step applies the sum of the epoch's batch gradients so far.
    eval_crops : {"all_windows", "random"}
        How validation and test subjects are predicted after each epoch
        (:func:`predict_logits`); random draws come from :func:`evaluation_generator` of
        ``seed`` and the epoch.
    reads : sequence of str, optional
        The model's declared inputs, passed by name (:func:`declared_inputs`; default: the
        registered model's).
    score_test : {"every_epoch", "last"}
        Predict the test subjects after every epoch (what the paper's selection reads), or
        after the last one only (the honest last epoch needs nothing else; it saves an
        evaluation per epoch). ``TrainingLog.test_epochs`` says which epochs were scored.

    Returns
    -------
    TrainingLog

    Notes
    -----
    A model that accepts ``fc_image`` gets the standardised, pooled FC of every subject
    computed once per fold (:func:`fc_images`), not per sample and step: the same numbers.
    AdamW is fused (:func:`adamw`): the same update, rounded differently in the last bits.
    """
    if zero_grad not in ("per_batch", "per_epoch"):
        raise ValueError(f"unknown zero_grad {zero_grad!r}; use 'per_batch' or 'per_epoch'")
    if score_test not in ("every_epoch", "last"):
        raise ValueError(f"unknown score_test {score_test!r}; use 'every_epoch' or 'last'")
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
                      device=device, snapshot=snapshot, zero_grad=zero_grad,
                      eval_crops=eval_crops, reads=reads, score_test=score_test)


def _train(model: nn.Module, train: TrainPlan, inputs: ModelInputs, fit: np.ndarray,
           val: np.ndarray, test: np.ndarray, *, seed: int, device: torch.device,
           snapshot: SnapshotRule | None, zero_grad: str = "per_batch",
           eval_crops: str = "all_windows", reads: Sequence[str] | None = None,
           score_test: str = "every_epoch") -> TrainingLog:
    if hasattr(model, "set_standardisation"):  # optional for registered modules
        stats = standardisation_statistics(inputs, fit)
        model.set_standardisation(cls=stats.get("cls"), fc=stats.get("fc"))
    reads = declared_inputs(model, inputs, reads)
    # The standardised, pooled FC is fixed from here on: computed once for every subject.
    images = fc_images(model, inputs) if "fc" in reads else None
    feed = _Feed(inputs, reads, images)
    optimiser = adamw(model.parameters(), train.lr, train.weight_decay, device)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=train.epochs)
    weight = None
    if train.class_weights:
        counts = torch.bincount(inputs.labels[torch.as_tensor(fit, device=device)], minlength=2)
        weight = (len(fit) / (2.0 * counts.clamp(min=1).float())).to(device)
    # Auxiliary branch losses: only models with two branches (FMM_TC's branch_logits) have
    # them; a single-branch model (TS-only, FC-only) trains as before.
    aux_weight = getattr(train, "aux_weight", 0.0) if hasattr(model, "branch_logits") else 0.0
    generator = torch.Generator().manual_seed(seed)
    fit_t = torch.as_tensor(fit, device=device)
    log = TrainingLog()
    val_history, test_history = [], []
    for epoch in range(train.epochs):
        model.train()
        losses, sizes = [], []
        order = fit_t[torch.randperm(len(fit), generator=generator).to(device)]
        if zero_grad == "per_epoch":  # the authors' loop: gradients accumulate over the epoch
            optimiser.zero_grad(set_to_none=True)
        for subjects in _batches(order, train.batch_size):
            window, cls = _sample_windows(inputs, subjects, generator)
            named = {"cls": cls} if "cls" in reads else {}
            named.update(feed.fc(subjects, window))
            if zero_grad == "per_batch":
                optimiser.zero_grad(set_to_none=True)
            labels = inputs.labels[subjects]
            with autocast(device):
                if aux_weight > 0:
                    logits, branches = model.branch_logits(**named)
                else:
                    logits, branches = model(**named), ()
            loss = F.cross_entropy(logits.float(), labels, weight=weight)
            for branch in branches:  # unimodal auxiliary losses (train.aux_weight)
                loss = loss + aux_weight * F.cross_entropy(branch.float(), labels, weight=weight)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            sizes.append(len(subjects))
        log.train_loss.append(float(np.average(losses, weights=sizes)))
        log.lr.append(float(optimiser.param_groups[0]["lr"]))
        scheduler.step()
        drawn = eval_crops == "random" or inputs.cls_draws is not None
        evaluation = evaluation_generator(seed, epoch) if drawn else None
        val_logits = predict_logits(model, inputs, val, device, crops=eval_crops,
                                    generator=evaluation, reads=reads, images=images)
        val_history.append(probabilities(val_logits))
        if score_test == "every_epoch" or epoch == train.epochs - 1:
            test_logits = predict_logits(model, inputs, test, device, crops=eval_crops,
                                         generator=evaluation, reads=reads, images=images)
            log.test_logits.append(test_logits)
            log.test_epochs.append(epoch)
            test_history.append(probabilities(test_logits))
        if snapshot is not None:
            scored = np.stack(test_history) if test_history else np.zeros((0, len(test)))
            chosen = snapshot(np.stack(val_history), scored)
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
        ``nn.Module`` class built from a :class:`ModelConfig`; called with its ``inputs``
        as keywords (``model(cls=..., fc=...)``).
    inputs : sequence of str
        Inputs it reads (``cls``, ``fc``): what is gathered and passed by name.
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
            test: np.ndarray | None = None, snapshot: SnapshotRule | None = None,
            score_test: str = "every_epoch") -> TorchClassifier:
        """Train on rows ``train``; log per-epoch probabilities of ``validation`` and ``test``.

        ``score_test="last"`` scores the test subjects after the last epoch only
        (:func:`train_fold`)."""
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
                               snapshot=snapshot,
                               zero_grad=getattr(self.context, "zero_grad", "per_batch"),
                               eval_crops=getattr(self.context, "eval_crops", "all_windows"),
                               reads=self.inputs, score_test=score_test)
        return self

    def predict_proba(self, data: Any, subjects: np.ndarray) -> np.ndarray:
        """P(class 1) of rows ``subjects`` from the last epoch's model."""
        inputs = ModelInputs.from_data(data, self.inputs, self.device)
        return probabilities(predict_logits(self.log_.model, inputs, np.asarray(subjects),
                                            self.device, reads=self.inputs))
