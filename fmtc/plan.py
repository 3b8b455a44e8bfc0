"""The experiment plan: named profiles read from YAML into one typed, validated object.

The built-in profiles (``smoke``, ``quick``, ``paper``) ship inside the package
(``fmtc/plans/profiles.yml``) so Colab and wheel installs work. A project's
top-level ``_config.yml`` overrides them key by key and may add profiles of its
own (``extends: quick``). Every number a user can change lives here and is
passed down explicitly; an unknown key or a bad value is an error that names the
key.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from fmtc.planfile import PlanError, PlanLoader, read_yaml, show

PLAN_FILENAME = "_config.yml"

SEED_LIMIT = 2**32
"""Seeds lie in ``0 .. SEED_LIMIT - 1`` (numpy's and scikit-learn's range)."""


TRAIT_LAYOUTS = ("networks", "scattered")
"""``simulation.trait_layout``: the regions a latent temporal trait paces."""


@dataclass(frozen=True)
class SimulationPlan:
    """Settings of the embedded simulated cohort (see :mod:`fmtc.simulate`).

    ``n_studies`` splits the subjects into studies (sites) 1..n by alternation, like
    ds000208's studies 1 and 2; ``study_shift`` (0: none) gives each study its own scanner
    noise, global-signal strength, head motion and responder fraction; ``covariate_effect``
    (0: none) links the simulated head motion (``mean_fd``) to the label. ``seed`` draws the
    subjects; ``population_seed`` (default: ``seed``) draws what a population shares — the
    network coupling, loadings and baseline intensities, and where the effects are planted —
    so two cohorts of one population differ in ``seed`` only (cross-cohort transfer).
    ``drug_specificity`` (0: none) makes the planted brain signal a *predictive* marker: in
    the placebo arm, that fraction of subjects carries a brain state drawn independently of
    their response, so the brain predicts response to the drug better than to placebo.
    ``trait_layout`` says which regions each latent temporal trait paces: ``networks`` (every
    region of one network, the same networks for every seed) or ``scattered`` (as many
    regions, drawn across all networks per population seed), so that a read-out averaging
    along networks has no built-in advantage.
    """

    n_subjects: int = 60
    n_volumes: int = 300
    tr: float = 2.5
    effect_size: float = 1.0
    fc_effect: float = 1.0
    ts_effect: float = 1.0
    responder_fraction: float = 0.5
    duloxetine_fraction: float = 0.5
    seed: int = 0
    n_studies: int = 2
    study_shift: float = 0.0
    covariate_effect: float = 0.0
    population_seed: int | None = None
    drug_specificity: float = 0.0
    trait_layout: str = "networks"

    def identity(self) -> dict[str, Any]:
        """The settings as plain data, without later settings left at their neutral default.

        ``drug_specificity: 0`` and ``trait_layout: networks`` leave the cohort as it was
        before the setting existed, so they are left out of cohort names, recorded parameters
        and encoder keys (caches stay valid).
        """
        values = dataclasses.asdict(self)
        if values["drug_specificity"] == 0:
            values.pop("drug_specificity")
        if values["trait_layout"] == "networks":
            values.pop("trait_layout")
        return values

    @property
    def population(self) -> int:
        """The seed of the population-level draws (``population_seed``, else ``seed``)."""
        return self.seed if self.population_seed is None else self.population_seed

    def check(self, key: str) -> None:
        _require(self.n_subjects >= 4, f"{key}.n_subjects", "must be at least 4")
        _require(1 <= self.n_studies <= self.n_subjects // 2, f"{key}.n_studies",
                 f"must lie in 1-{self.n_subjects // 2} (at least 2 subjects per study)")
        _require(self.study_shift >= 0, f"{key}.study_shift", "must be >= 0 (0: no site shift)")
        _require(self.covariate_effect >= 0, f"{key}.covariate_effect",
                 "must be >= 0 (0: covariates independent of the label)")
        _require(self.n_volumes >= 20, f"{key}.n_volumes", "must be at least 20")
        _require(self.tr > 0, f"{key}.tr", "must be positive (seconds)")
        _require(self.tr < 100, f"{key}.tr",
                 f"{self.tr:g} looks like milliseconds; give seconds (e.g. {self.tr / 1000:g})")
        _require(0.1 <= self.tr <= 10, f"{key}.tr",
                 f"{self.tr:g} s is outside 0.1-10 s, the range of fMRI repetition times")
        for name in ("effect_size", "fc_effect", "ts_effect"):
            _require(getattr(self, name) >= 0, f"{key}.{name}", "must be >= 0")
        _require(0 <= self.drug_specificity <= 1, f"{key}.drug_specificity",
                 "must lie in [0, 1] (0: the brain signal predicts response in both arms)")
        for name in ("responder_fraction", "duloxetine_fraction"):
            _require(0 < getattr(self, name) < 1, f"{key}.{name}", "must lie in (0, 1)")
        _require(self.trait_layout in TRAIT_LAYOUTS, f"{key}.trait_layout",
                 f"must be one of {', '.join(TRAIT_LAYOUTS)}")
        _check_seed(self.seed, f"{key}.seed")
        if self.population_seed is not None:
            _check_seed(self.population_seed, f"{key}.population_seed")


@dataclass(frozen=True)
class DataPlan:
    """Which cohort to read.

    ``cohort: simulated`` means the embedded simulated cohort, generated on first
    use into ``outputs.cohorts_dir`` from ``simulation``; any other value is the
    path of a cohort folder (see :mod:`fmtc.cohort.folder`).
    """

    cohort: str = "simulated"
    label: str | None = None


@dataclass(frozen=True)
class WindowPlan:
    """Deterministic 200-time-point windows cut from each series (robust-scaled unless
    ``protocol.input_scaling: none``)."""

    length: int = 200
    stride: int = 50
    max_windows: int = 8

    def check(self, key: str) -> None:
        _require(self.length >= 20 and self.length % 20 == 0, f"{key}.length",
                 "must be a positive multiple of 20 (BrainLM patches are 20 time points)")
        _require(self.stride >= 1, f"{key}.stride", "must be >= 1")
        _require(self.max_windows >= 1, f"{key}.max_windows", "must be >= 1")


@dataclass(frozen=True)
class ConnectivityPlan:
    """Functional connectivity input of the FC branch.

    ``kind``: ``pearson`` (Fisher z of the robust-scaled recording, the honest default);
    ``gram`` (``X Xᵀ`` of the whole robust-scaled recording: the authors' formula on fmtc's
    scaled input, *not* their input); ``gram_raw_window`` (``X Xᵀ`` of the raw, unscaled
    200-TR crop that also feeds BrainLM, as the authors' ``MultimodalfMRI.forward``:
    ``torch.bmm(signal_vectors, signal_vectors.permute(0, 2, 1))`` on the ``Raw_Recording``
    crop). With ``gram_raw_window`` the FC is per window: training pairs the drawn window's
    BrainLM features with that window's Gram, evaluation averages logits over windows each with
    its own Gram (:mod:`fmtc.predict.training`).
    """

    kind: Literal["pearson", "gram", "gram_raw_window"] = "pearson"
    pool_size: int | None = None

    def check(self, key: str) -> None:
        if self.pool_size is not None:
            _require(self.pool_size >= 2, f"{key}.pool_size", "must be >= 2 or null")


@dataclass(frozen=True)
class BrainLMArchitecture:
    """Width and depth of a BrainLM encoder/decoder (the ``old_13M`` values by default)."""

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    decoder_hidden_size: int = 256
    decoder_num_hidden_layers: int = 2
    decoder_num_attention_heads: int = 4
    decoder_intermediate_size: int = 1024

    def check(self, key: str) -> None:
        for name, value in dataclasses.asdict(self).items():
            _require(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")
        for width, heads in (("hidden_size", "num_attention_heads"),
                             ("decoder_hidden_size", "decoder_num_attention_heads")):
            _require(getattr(self, width) % getattr(self, heads) == 0, f"{key}.{width}",
                     f"{getattr(self, width)} is not divisible by {heads} = "
                     f"{getattr(self, heads)}")
        _require(self.hidden_size % 2 == 0, f"{key}.hidden_size",
                 f"must be even (BrainLM's sinusoidal position table), got {self.hidden_size}")
        _require(self.decoder_hidden_size == self.hidden_size, f"{key}.decoder_hidden_size",
                 f"must equal hidden_size ({self.hidden_size}), as BrainLM's decoder requires")


READOUTS = ("cls", "mean", "network-mean")
"""TS read-outs of the encoder (``brainlm.readout``)."""


@dataclass(frozen=True)
class BrainLMPlan:
    """Which frozen BrainLM encoder produces the TS features, and how.

    ``source: simulated-pretrained`` is a small BrainLM pretrained by
    ``fmtc pretrain`` on the simulator's pain-agnostic cohort, built once and
    cached (no network); ``random-init`` is the same architecture untrained (seed
    ``pretrain.seed``), the ablation. ``readout`` is the TS feature of a window: ``cls`` (the
    paper's CLS vector), ``mean`` (the mean of the encoder's region tokens) or ``network-mean``
    (their mean within each atlas network, concatenated in sorted network order). Any other
    ``source`` is a local checkpoint folder or a Hugging Face repo id with subfolder
    (``vandijklab/brainlm/old_13M``). Pin a Hub checkpoint with ``revision`` (a commit)
    and/or ``sha256`` (of its weight file, checked before loading); an unpinned one is
    reported with the commit it resolved to.

    ``token_order``: ``identity`` (ROI-major tokens), ``shuffle-mean`` (features averaged over
    ``n_shuffles`` seeded token orders) or ``random_each_call`` (the authors': their BrainLM
    embedding calls ``random_masking(x, noise=None)``, so ``torch.rand`` draws a new token order
    on every encoder call, ``brainlm_mae/modeling_brainlm.py``, ``BrainLMEmbeddings``). The
    ``n_shuffles`` seeded orders' features are stored un-averaged and one is drawn per training
    step and per evaluation instead of averaged (their mean is ``shuffle-mean`` up to float
    rounding).
    """

    source: str = "simulated-pretrained"
    revision: str | None = None
    sha256: str | None = None
    token_order: Literal["identity", "shuffle-mean", "random_each_call"] = "identity"
    n_shuffles: int = 8
    batch_size: int = 8
    readout: Literal["cls", "mean", "network-mean"] = "cls"

    def check(self, key: str) -> None:
        _require(bool(self.source.strip()), f"{key}.source",
                 "must name an encoder (simulated-pretrained, random-init, a checkpoint folder "
                 "or a Hub id)")
        _require(self.n_shuffles >= 1, f"{key}.n_shuffles", "must be >= 1")
        _require(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")


@dataclass(frozen=True)
class PretrainPlan:
    """Masked-patch pretraining of BrainLM (``fmtc pretrain``)."""

    architecture: BrainLMArchitecture = field(default_factory=BrainLMArchitecture)
    n_subjects: int = 40
    n_volumes: int = 300
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    warmup_fraction: float = 0.1
    weight_decay: float = 0.05
    mask_ratio: float = 0.2
    masking: Literal["random", "time"] = "random"
    regions_per_window: int | None = None
    probe_points: int = 0
    seed: int = 0

    def check(self, key: str) -> None:
        _require(0 < self.mask_ratio < 1, f"{key}.mask_ratio", "must lie in (0, 1)")
        _require(self.probe_points >= 0, f"{key}.probe_points", "must be >= 0 (0: no probe)")
        _require(self.regions_per_window is None or self.regions_per_window >= 2,
                 f"{key}.regions_per_window", "must be null (every region) or >= 2")
        _require(self.epochs >= 1, f"{key}.epochs", "must be >= 1")
        _require(0 <= self.warmup_fraction < 1, f"{key}.warmup_fraction", "must lie in [0, 1)")
        _require(self.n_subjects >= 4, f"{key}.n_subjects",
                 "must be at least 4 (the simulated pretraining cohort)")
        _require(self.n_volumes >= 20, f"{key}.n_volumes", "must be at least 20")
        _require(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        _require(self.lr > 0, f"{key}.lr", "must be positive")
        _require(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0 (0: none)")
        _check_seed(self.seed, f"{key}.seed")


@dataclass(frozen=True)
class TrainPlan:
    """Training of the torch models (FMM_TC, TS-only, FC-only).

    ``aux_weight`` > 0 adds, for FMM_TC, a cross-entropy loss of a linear head on each branch
    alone (weighted by it) to the fused loss during training; predictions still come from the
    fused head. 0 (the paper's objective) trains the fused head only. Single-branch models
    (TS-only, FC-only) have no auxiliary heads and ignore it.
    """

    epochs: int = 100
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.01
    class_weights: bool = False
    aux_weight: float = 0.0

    def check(self, key: str) -> None:
        _require(self.aux_weight >= 0, f"{key}.aux_weight", "must be >= 0 (0: no auxiliary loss)")
        _require(self.epochs >= 1, f"{key}.epochs", "must be >= 1")
        _require(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        _require(self.lr > 0, f"{key}.lr", "must be positive")
        _require(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0 (0: none)")


@dataclass(frozen=True)
class LogisticPlan:
    """The classical baselines: standardise, then L2 logistic regression."""

    c_grid: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0])
    inner_folds: int = 3

    def check(self, key: str) -> None:
        _require(bool(self.c_grid), f"{key}.c_grid", "must list at least one C value")
        _require(all(c > 0 for c in self.c_grid), f"{key}.c_grid",
                 f"C values must be positive, got {show(self.c_grid)}")
        _require(self.inner_folds >= 2, f"{key}.inner_folds",
                 "must be >= 2 (the inner cross-validation that picks C)")


@dataclass(frozen=True)
class EvaluationPlan:
    """Cross-validation protocol, model selection and uncertainty.

    ``honest_epoch`` is how the honest selection picks a torch model's epoch without
    reading the test fold: ``last``, the end of the declared schedule (``train.epochs``),
    trained on the whole training fold; or ``validation``, the best epoch on an inner
    validation split (``inner_validation_fraction`` of the training fold, not trained on).
    ``models`` are the arms of ``fmtc evaluate`` without ``--model`` (empty: the registry's
    default models, :func:`fmtc.predict.registry.default_models`). ``keep_weights`` keeps every
    torch fit's weights (``--keep-weights``; by default only the arms an experiment names in
    its ``keep_weights`` keep theirs, for interpretation).
    """

    folds: int = 5
    repeats: int = 5
    selection: Literal["honest", "paper"] = "honest"
    honest_epoch: Literal["last", "validation"] = "last"
    inner_validation_fraction: float = 0.2
    permutations: int = 200
    bootstrap: int = 1000
    models: list[str] = field(default_factory=list)
    keep_weights: bool = False

    def check(self, key: str) -> None:
        _require(self.folds >= 2, f"{key}.folds", "must be >= 2")
        _require(1 <= self.folds <= MAX_FOLDS, f"{key}.folds", f"must be <= {MAX_FOLDS}")
        _require(1 <= self.repeats <= MAX_REPEATS, f"{key}.repeats",
                 f"must lie in 1-{MAX_REPEATS} (each repeat refits every arm on every fold)")
        _require(self.bootstrap <= MAX_RESAMPLES and self.permutations <= MAX_RESAMPLES,
                 f"{key}.bootstrap", f"bootstrap and permutations must be <= {MAX_RESAMPLES}")
        _require(0 < self.inner_validation_fraction < 1, f"{key}.inner_validation_fraction",
                 "must lie in (0, 1)")
        _require(self.permutations >= 0, f"{key}.permutations", "must be >= 0")
        _require(self.bootstrap >= 0, f"{key}.bootstrap", "must be >= 0")


MAX_FOLDS = 100
MAX_REPEATS = 1000
MAX_RESAMPLES = 1_000_000
"""Upper bounds that no study needs and that stop a typo (``--repeats 1000000000``) from running
for ever before a single fit."""


@dataclass(frozen=True)
class ExecutionPlan:
    """How the independent (arm x repeat x fold) fits and the summaries are executed.

    Results do not depend on ``n_jobs`` or on the backend: every task seeds itself
    and runs with ``threads_per_worker`` threads, whatever runs it.

    Attributes
    ----------
    n_jobs : int
        Local worker processes (joblib ``loky``); ``1`` runs in this process, ``-1``
        uses every core.
    threads_per_worker : int
        Torch / BLAS threads of each task. Part of a result's identity: float sums
        may differ in their last bits with another thread count.
    dask_scheduler : str or None
        Address of a running Dask scheduler (``tcp://host:8786``); when set, tasks go to
        that cluster through joblib's Dask backend and ``n_jobs`` is ignored.
    """

    n_jobs: int = 1
    threads_per_worker: int = 1
    dask_scheduler: str | None = None

    def check(self, key: str) -> None:
        _require(self.n_jobs >= 1 or self.n_jobs == -1, f"{key}.n_jobs", "must be >= 1 or -1")
        _require(self.threads_per_worker >= 1, f"{key}.threads_per_worker", "must be >= 1")
        _require(self.dask_scheduler is None or bool(self.dask_scheduler.strip()),
                 f"{key}.dask_scheduler", "must be an address (tcp://host:8786) or null")


PROTOCOL_PER_FIT = ("zero_grad", "eval_crops", "input_scaling")
"""Switches of ``protocol`` that act per fit: an experiment's arm may override them."""


@dataclass(frozen=True)
class ProtocolPlan:
    """Switches towards the authors' protocol (Shef-AIRE/FMM_TC, ``FMM_TC-tutorial.ipynb``).

    Every default is fmtc's honest behaviour; each other value reproduces one behaviour of the
    authors' code and changes nothing else (:mod:`fmtc.evaluate.official`). Two more switches
    live in their own sections: ``connectivity.kind: gram_raw_window`` and
    ``brainlm.token_order: random_each_call``; the paper's epoch selection is
    ``selection: paper`` (an experiment's ``selections``).

    Attributes
    ----------
    zero_grad : {"per_batch", "per_epoch"}
        ``per_epoch``: ``optimiser.zero_grad()`` once per epoch, so gradients accumulate over
        the epoch's batches (the notebook calls ``optimizer.zero_grad()`` before
        ``for example in trainloader:`` and ``loss.backward(); optimizer.step()`` inside).
        Per fit (arm-overridable).
    eval_crops : {"all_windows", "random"}
        ``random``: each evaluation of a subject (every epoch's validation and test
        prediction) uses one randomly drawn window, with the FC recomputed from that crop,
        instead of the mean logits over all windows with the whole-recording FC (their
        ``fMRIDataset.__getitem__`` draws ``random.randint`` offsets for the validation loader
        too). Drawn from the subject's deterministic window set (``windows.stride``), an
        approximation of their any-offset draw; seeded from the fold seed and the epoch. Per
        fit (arm-overridable).
    input_scaling : {"robust", "none"}
        ``none``: BrainLM windows and FC are computed from the raw recording (their
        ``col_name = "Raw_Recording"``; the robust-scaled column that ``process_datasets``
        builds is never read). The in-model standardisation of the CLS/FC inputs (training-
        subject statistics) is kept: it is not a scaling of the recording, and switching it
        off would change a second thing. Per fit (arm-overridable).
    auc : {"on_probability", "on_logit"}
        ``on_logit``: AUC of the class-1 logit (``roc_auc_score(labels_list,
        logits_list[:, 1])``) instead of the probability ``softmax(logits)[:, 1]``. Reporting.
    cv : {"stratified_repeated", "unshuffled_single"}
        ``unshuffled_single``: one repeat of ``StratifiedKFold(n_splits=folds,
        shuffle=False)`` (theirs), in the cohort's subject order; other splits, so not paired
        with a stratified_repeated run. A run-wide setting.
    report : {"pooled", "fold_mean"}
        ``fold_mean``: the mean of per-fold metrics (their per-fold ``metric_df`` rows)
        instead of the metric of the pooled out-of-fold predictions. Reporting.
    """

    zero_grad: Literal["per_batch", "per_epoch"] = "per_batch"
    eval_crops: Literal["all_windows", "random"] = "all_windows"
    input_scaling: Literal["robust", "none"] = "robust"
    auc: Literal["on_probability", "on_logit"] = "on_probability"
    cv: Literal["stratified_repeated", "unshuffled_single"] = "stratified_repeated"
    report: Literal["pooled", "fold_mean"] = "pooled"

    def check(self, key: str) -> None:
        # The reporting switches are readings of a run's predictions, not settings of a run:
        # a run always stores honest pooled metrics and probability AUC.
        for name, default in (("auc", "on_probability"), ("report", "pooled")):
            _require(getattr(self, name) == default, f"{key}.{name}",
                     f"is a reading of a run's predictions, not a run setting: leave it "
                     f"{default!r} and read the authors' value with "
                     "fmtc.evaluate.official.reporting_table(run.predictions) "
                     "(book: the authors' protocol page)")


@dataclass(frozen=True)
class ArmPlan:
    """One arm of an experiment: a model, its encoder and protocol switches.

    Attributes
    ----------
    model : str
        A registered model (``fmtc models`` lists them).
    encoder : str or None
        BrainLM source of this arm's TS features; None: the plan's ``brainlm.source``.
    overrides : dict
        Plan values changed for this arm only, as nested sections (e.g.
        ``{train: {epochs: 50}, connectivity: {kind: gram}}``). Sections that define
        the splits or the cohort (``seed``, ``data``, ``simulation``, ``evaluation``,
        ``outputs``, ``execution``) cannot change inside a paired experiment.
    """

    model: str
    encoder: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def check(self, key: str) -> None:
        fixed = sorted(set(self.overrides) & ARM_FIXED_SECTIONS)
        _require(not fixed, f"{key}.overrides",
                 f"cannot change {fixed}: every arm of an experiment shares its cohort and splits")
        protocol = self.overrides.get("protocol")
        if isinstance(protocol, dict):
            shared = sorted(set(protocol) - set(PROTOCOL_PER_FIT))
            _require(not shared, f"{key}.overrides.protocol",
                     f"cannot change {shared} per arm (reporting and splits are shared by the "
                     f"arms); per-arm switches: {list(PROTOCOL_PER_FIT)}")


ARM_FIXED_SECTIONS = frozenset({"seed", "data", "simulation", "evaluation", "outputs",
                                "execution", "experiments", "profile", "root", "description",
                                "meaningful", "plan_file", "device", "pages"})
"""Plan sections an arm cannot override (they define what the arms are paired on)."""


@dataclass(frozen=True)
class ExperimentPlan:
    """Named arms evaluated on one cohort with identical splits, and the contrasts to report.

    Attributes
    ----------
    description : str
    arms : dict of str to ArmPlan
        Arm name -> arm; names appear in every table of the run.
    selections : list of {"honest", "paper"}
        Epoch selections reported (one training serves all).
    contrasts : list of [arm_a, arm_b]
        Paired differences ``a - b`` to report (:mod:`fmtc.evaluate.paired`).
    logits : bool
        Also store each prediction's two logits (``logit_0``, ``logit_1``) in the predictions
        tables, so that the authors' AUC on the class-1 logit can be recomputed
        (:mod:`fmtc.evaluate.official`).
    keep_weights : list of str
        Arms whose fits keep their weights (what ``fmtc interpret`` reads); the others' fits
        hold predictions only.
    """

    arms: dict[str, ArmPlan] = field(default_factory=dict)
    description: str = ""
    selections: list[Literal["honest", "paper"]] = field(default_factory=lambda: ["honest"])
    contrasts: list[list[str]] = field(default_factory=list)
    logits: bool = False
    keep_weights: list[str] = field(default_factory=list)

    def check(self, key: str) -> None:
        _require(bool(self.arms), f"{key}.arms", "must declare at least one arm")
        _require(bool(self.selections), f"{key}.selections", "must name at least one selection")
        _check_contrasts(self.contrasts, list(self.arms), f"{key}.contrasts")
        unknown = [name for name in self.keep_weights if name not in self.arms]
        _require(not unknown, f"{key}.keep_weights",
                 f"unknown arm(s) {unknown}; known: {list(self.arms)}")


def _check_contrasts(contrasts: list[list[str]], names: list[str], key: str) -> None:
    for i, pair in enumerate(contrasts):
        _require(len(pair) == 2 and pair[0] != pair[1], f"{key}[{i}]",
                 f"must be two different names [a, b], got {pair}")
        unknown = [name for name in pair if name not in names]
        _require(not unknown, f"{key}[{i}]", f"unknown arm(s) {unknown}; known: {names}")


@dataclass(frozen=True)
class PagesPlan:
    """How much the book's pages compute beyond the plan's experiments (never read from the
    profile's name: a profile sets these).

    Attributes
    ----------
    stability_seeds : list of int
        Simulator seeds of the stability sweep (none of them used to choose a setting; the
        calibration seeds were 1 and 2).
    stability_effects : list of float
        Effect sizes of the stability sweep.
    null_replicates : int
        Label-permuted replicates of the authors' selection on a null cohort.
    ig_steps, ig_ts_steps : int
        Integration steps of the interpretation page (FC and fused paths; the TS path through
        BrainLM).
    ig_ts_subjects : int or None
        Test subjects per fold whose windows the interpretation page attributes through
        BrainLM (None: fmtc's default, every subject on a GPU and 4 on a CPU).
    calibration_pool : int
        Simulated subjects of each pool of the inference calibration (the population).
    calibration_seeds : list of int
        Simulator seeds of the pools the interval method is chosen on (every seed but the
        last; the method must hold on each) and of the fresh pool it is reported on (the
        last).
    calibration_replicates, calibration_null_replicates : int
        Fresh replicates for coverage and label-permuted ones for family-wise error.
    calibration_choice_replicates : int
        Replicates (each kind) on the calibration pool.
    calibration_truth_draws : int
        Monte Carlo training sets per row of the truth.
    encoder_pretrained_seeds, encoder_random_seeds : list of int
        ``pretrain.seed`` of the pretrained encoders and of the random initialisations whose
        spread the encoder-level pretrained-against-random-init contrast resamples.
    encoder_models : list of str
        The models that contrast is computed for (each reads the TS features).
    stages_source, stages_revision : str or None
        Where the real-trial page clones the STAGES repository from, and its commit (None:
        the pinned GitHub repository and commit; a local clone or a test fixture otherwise).
    stages_regions_file, stages_subcortical_file : str or None
        The Schaefer-400 centroid table (None: downloaded once from CBIG into the atlas cache)
        and the 19 subcortical centroids (None: the cortex only).
    stages_tr : float or None
        Seconds per volume of the STAGES scans (None: the fetch's documented assumption).
    """

    stability_seeds: list[int] = field(default_factory=lambda: [41, 42, 43, 44, 45])
    stability_effects: list[float] = field(default_factory=lambda: [1.0, 3.0])
    null_replicates: int = 8
    ig_steps: int = 50
    ig_ts_steps: int = 16
    ig_ts_subjects: int | None = None
    calibration_pool: int = 3000
    calibration_seeds: list[int] = field(default_factory=lambda: [1, 2, 62])
    calibration_replicates: int = 1000
    calibration_null_replicates: int = 400
    calibration_choice_replicates: int = 400
    calibration_truth_draws: int = 200
    encoder_pretrained_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    encoder_random_seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    encoder_models: list[str] = field(default_factory=lambda: ["ts", "cls-logreg"])
    stages_source: str | None = None
    stages_revision: str | None = None
    stages_regions_file: str | None = None
    stages_subcortical_file: str | None = None
    stages_tr: float | None = None

    def check(self, key: str) -> None:
        _require(len(self.calibration_seeds) >= 2
                 and len(set(self.calibration_seeds)) == len(self.calibration_seeds),
                 f"{key}.calibration_seeds",
                 "must be at least two different seeds: [the pools the interval method is "
                 "chosen on ..., the fresh pool it is reported on]")
        _require(min(self.calibration_replicates, self.calibration_null_replicates,
                     self.calibration_choice_replicates, self.calibration_truth_draws) >= 2,
                 f"{key}.calibration_replicates",
                 "calibration replicates, null replicates, choice replicates and truth draws "
                 "must each be >= 2")
        _require(bool(self.stability_seeds), f"{key}.stability_seeds",
                 "must list at least one seed")
        _require(bool(self.stability_effects), f"{key}.stability_effects",
                 "must list at least one effect size")
        _require(self.null_replicates >= 1, f"{key}.null_replicates", "must be >= 1")
        for name in ("encoder_pretrained_seeds", "encoder_random_seeds"):
            seeds = getattr(self, name)
            _require(len(seeds) >= 2 and len(set(seeds)) == len(seeds), f"{key}.{name}",
                     "must list at least two different seeds")
            for seed in seeds:
                _check_seed(seed, f"{key}.{name}")
        _require(bool(self.encoder_models), f"{key}.encoder_models",
                 "must list at least one model")
        _require(self.ig_steps >= 2 and self.ig_ts_steps >= 2, f"{key}.ig_steps",
                 "integration steps must be >= 2 (ig_steps, ig_ts_steps)")
        _require(self.ig_ts_subjects is None or self.ig_ts_subjects >= 0,
                 f"{key}.ig_ts_subjects", "must be >= 0, or null for fmtc's default")


@dataclass(frozen=True)
class OutputPlan:
    """Where data, caches and runs are written (relative paths: to the plan's folder)."""

    data_dir: str = "data"
    cohorts_dir: str = "data/cohorts"
    features_dir: str = "data/features"
    models_dir: str = "data/models"
    fits_dir: str = "data/fits"
    runs_dir: str = "data/runs"
    book_dir: str = "book"


@dataclass(frozen=True)
class Plan:
    """One resolved profile of the experiment plan.

    ``meaningful`` says whether the profile's numbers can be read as results: ``false`` for
    profiles that only show that the pages run (``smoke``, ``tiny``, ``preview``); the book's
    reading and verdict cells then say "not interpreted" (:func:`fmtc.report.pages.interpreted`).
    ``plan_file`` is the project plan file that was read (None: only the built-in profiles).
    """

    profile: str
    description: str = ""
    meaningful: bool = True
    plan_file: str | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataPlan = field(default_factory=DataPlan)
    simulation: SimulationPlan = field(default_factory=SimulationPlan)
    windows: WindowPlan = field(default_factory=WindowPlan)
    connectivity: ConnectivityPlan = field(default_factory=ConnectivityPlan)
    brainlm: BrainLMPlan = field(default_factory=BrainLMPlan)
    pretrain: PretrainPlan = field(default_factory=PretrainPlan)
    train: TrainPlan = field(default_factory=TrainPlan)
    logistic: LogisticPlan = field(default_factory=LogisticPlan)
    evaluation: EvaluationPlan = field(default_factory=EvaluationPlan)
    protocol: ProtocolPlan = field(default_factory=ProtocolPlan)
    execution: ExecutionPlan = field(default_factory=ExecutionPlan)
    experiments: dict[str, ExperimentPlan] = field(default_factory=dict)
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    pages: PagesPlan = field(default_factory=PagesPlan)
    outputs: OutputPlan = field(default_factory=OutputPlan)
    root: str = "."

    def check(self, key: str) -> None:
        ev = self.evaluation
        # Each fit's seed is seed + 1000 x repeat + fold (fmtc.evaluate.protocol.fold_seed).
        _check_seed(self.seed, _join(key, "seed"), 1000 * (ev.repeats - 1) + ev.folds - 1)
        for name, value in dataclasses.asdict(self.outputs).items():
            _check_output_folder(self.path(value), value, _join(key, f"outputs.{name}"))
        # Each arm's overrides must make a valid plan: say so when the plan is read, naming
        # the arm, not when the experiment runs.
        for name, experiment in self.experiments.items():
            for arm_name, arm in experiment.arms.items():
                if not arm.overrides:
                    continue
                raw = dataclasses.asdict(self)
                raw["experiments"] = {}
                _deep_merge(raw, arm.overrides)
                where = _join(key, f"experiments.{name}.arms.{arm_name}.overrides")
                try:
                    _build(Plan, raw, "")
                except PlanError as error:
                    raise PlanError(f"{where}: {error}") from None

    def path(self, relative: str) -> Path:
        """Resolve a path of the plan against the folder of the plan file."""
        candidate = Path(relative).expanduser()
        return candidate if candidate.is_absolute() else Path(self.root) / candidate

    def replace(self, **changes: Any) -> Plan:
        """Return a copy with nested changes, e.g. ``replace(evaluation={"repeats": 3})``."""
        raw = self.to_dict()
        _deep_merge(raw, changes)
        return _build(Plan, raw, "")

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data (for provenance records)."""
        return dataclasses.asdict(self)


def plan_from_dict(data: dict[str, Any]) -> Plan:
    """Rebuild a :class:`Plan` from :meth:`Plan.to_dict` (e.g. a run's ``provenance.json``).

    Raises :class:`~fmtc.planfile.PlanError` naming the key when a value is not valid for this fmtc.
    """
    return _build(Plan, copy.deepcopy(data), "")


PLAN_KEYS = frozenset({"default_profile", "base", "profiles"})
"""Top-level keys of an experiment plan file."""


def is_plan_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an fmtc experiment plan (not, e.g., a Jupyter Book ``_config.yml``).

    A plan has at least one top-level key of :data:`PLAN_KEYS` (others are reported as
    errors when it is loaded); a file that cannot be read or parsed is not a plan.
    """
    try:
        document = read_yaml(path)
    except PlanError:
        return False
    # Any plan key makes it a plan (then validated: a misspelt sibling key is an error, not a
    # reason to ignore the file); a Jupyter Book config has none of them.
    return isinstance(document, dict) and bool(set(document) & PLAN_KEYS)


def find_project_plan(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The project's plan file: the first ``_config.yml`` that is a plan, walking up from ``start``.

    The search looks in ``start`` (default: the working directory) and its parents, skips
    files that are not experiment plans (the book's own ``_config.yml``), and stops at the
    first folder holding ``.git`` (the repository root) or at the file-system root. A
    notebook executed from ``book/`` or ``notebooks/``, or a command run anywhere inside the
    repository, therefore finds the repository's plan.

    Returns
    -------
    Path or None
        None when no plan is found (the built-in profiles apply).
    """
    folder = Path(start if start is not None else Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        path = candidate / PLAN_FILENAME
        if path.is_file():
            document = read_yaml(path)  # a damaged file is reported, not skipped in silence
            if isinstance(document, dict) and set(document) & PLAN_KEYS:
                return path
        if (candidate / ".git").exists():
            return None
    return None


def load_plan(
    profile: str | None = None,
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Plan:
    """Read the built-in profiles, apply a project plan file, and resolve one profile.

    Parameters
    ----------
    profile : str, optional
        Profile name. Defaults to the plan file's ``default_profile`` (``quick``).
    path : path-like, optional
        A project plan file. Default: :func:`find_project_plan` from the working
        directory (the repository's top-level ``_config.yml``), else none.
    overrides : dict, optional
        Nested values applied last (command-line options).

    Returns
    -------
    Plan
        The validated plan; relative output paths resolve against the plan file's folder
        (the working directory when there is no plan file).
    """
    builtin = yaml.load(  # PlanLoader is a SafeLoader
        resources.files("fmtc").joinpath("plans/profiles.yml").read_text(encoding="utf-8"),
        Loader=PlanLoader)
    document = copy.deepcopy(builtin)
    root = Path.cwd()
    if path is None:
        path = find_project_plan()
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise PlanError(f"plan file {path} is a folder, not a file: give the plan's YAML "
                            f"file (e.g. {path / PLAN_FILENAME})")
        if not path.is_file():
            raise PlanError(f"plan file {path} does not exist")
        user = read_yaml(path)
        if user is None or user == {}:
            raise PlanError(f"plan file {path} is empty: a plan sets 'profiles' (and may set "
                            "'default_profile' and 'base'); see fmtc/plans/profiles.yml")
        if not isinstance(user, dict):
            raise PlanError(f"{path}: the plan must be a mapping with 'profiles', found a "
                            f"{type(user).__name__}")
        unknown = set(user) - PLAN_KEYS
        if unknown:
            raise PlanError(f"{path}: unknown top-level key(s) {sorted(unknown)}; "
                            f"allowed: {', '.join(sorted(PLAN_KEYS))}")
        _check_shape(user, path)
        _deep_merge(document, user)
        root = path.resolve().parent
    name = profile or document.get("default_profile", "quick")
    profiles = document.get("profiles") or {}
    if name not in profiles:
        raise PlanError(f"unknown profile {name!r}; known profiles: {sorted(profiles)}")
    resolved = _resolve_profile(name, profiles, document.get("base") or {}, seen=())
    if overrides:
        _deep_merge(resolved, overrides)
    resolved["profile"] = name
    resolved["root"] = str(root)
    resolved["plan_file"] = None if path is None else str(Path(path).resolve())
    try:
        plan = _build(Plan, resolved, "")
        check_models(plan)
    except PlanError as error:
        if path is None:
            raise
        raise PlanError(f"{path} (profile '{name}'): {error}") from None
    return plan


def check_models(plan: Plan) -> None:
    """Refuse a plan that names a model the registry does not know, naming the plan key.

    Checks ``evaluation.models``, every experiment arm's ``model``, and ``model_params``:
    each entry must be a registered model whose hyper-parameters live there (not in ``train``
    or ``logistic``), and must be valid for its dataclass. :func:`load_plan` calls it, so a
    typo fails when the plan is read; a model registered later (a notebook's own model) is
    checked when it runs (:func:`fmtc.pipeline.resolve_arms`).

    Raises
    ------
    PlanError
    """
    from fmtc.predict.registry import get_model, model_names

    known = model_names()

    def require_known(names: list[str], key: str) -> None:
        unknown = [n for n in names if n not in known]
        _require(not unknown, key, f"unknown model(s) {show(unknown)}; known models: "
                                   f"{', '.join(known)} (`fmtc models` describes them)")

    require_known(plan.evaluation.models, "evaluation.models")
    for name, experiment in plan.experiments.items():
        for arm_name, arm in experiment.arms.items():
            require_known([arm.model], f"experiments.{name}.arms.{arm_name}.model")
    for model, params in plan.model_params.items():
        key = f"model_params.{model}"
        require_known([model], key)
        section = get_model(model).params_section
        _require(section == key, key,
                 f"model {model!r} reads its settings from plan section '{section}', not "
                 f"model_params: set them under '{section}'")
        build_section(get_model(model).params_type(), params, key)



def _check_shape(document: dict[str, Any], path: Path) -> None:
    """Check the shape of a plan file's top level (mappings where mappings are expected)."""
    for key in ("base", "profiles"):
        value = document.get(key)
        if value is not None and not isinstance(value, dict):
            raise PlanError(f"{path}: '{key}' must be a mapping of plan sections, found a "
                            f"{type(value).__name__}")
    for name, body in (document.get("profiles") or {}).items():
        if body is not None and not isinstance(body, dict):
            raise PlanError(f"{path}: profile '{name}' must be a mapping of plan sections "
                            f"(e.g. 'extends: quick'), found a {type(body).__name__}")
    default = document.get("default_profile")
    if default is not None and not isinstance(default, str):
        raise PlanError(f"{path}: 'default_profile' must be a profile name, found {default!r}")


def build_section(cls: type, data: dict[str, Any] | None, key: str) -> Any:
    """Validate ``data`` as the plan section ``cls`` (a dataclass), naming ``key`` in errors.

    Used for sections declared outside this module, e.g. a registered model's
    hyper-parameters under ``model_params.<name>``.
    """
    return _build(cls, dict(data or {}), key)


def _resolve_profile(name: str, profiles: dict, base: dict, seen: tuple[str, ...]) -> dict:
    if name in seen:
        raise PlanError(f"profile {name!r}: circular 'extends' chain {' -> '.join(seen + (name,))}")
    body = copy.deepcopy(profiles[name] or {})
    parent = body.pop("extends", None)
    if parent is None:
        resolved = copy.deepcopy(base)
    elif parent not in profiles:
        raise PlanError(f"profiles.{name}.extends: unknown profile {parent!r}")
    else:
        resolved = _resolve_profile(parent, profiles, base, seen + (name,))
    _deep_merge(resolved, body)
    return resolved


def _deep_merge(target: dict, update: dict) -> None:
    for key, value in update.items():
        if key == "experiments" and isinstance(value, dict) and isinstance(target.get(key), dict):
            # An experiment is replaced whole (so a profile can drop arms); null removes it.
            for name, experiment in value.items():
                if experiment is None:
                    target[key].pop(name, None)
                else:
                    target[key][name] = copy.deepcopy(experiment)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise PlanError(f"plan key '{key}': {message}")


def _check_output_folder(folder: Path, value: str, key: str) -> None:
    """Refuse an output folder that is the file-system root or the home folder.

    fmtc writes and replaces folders under them, and a user's home or ``/`` is never meant.
    """
    try:
        resolved = folder.resolve()
    except (OSError, RuntimeError):  # pragma: no cover - a loop of links: reported when used
        return
    homes = set()
    try:
        homes.add(Path.home().resolve())
    except (OSError, RuntimeError, KeyError):  # pragma: no cover - no home folder
        pass
    what = ("the file-system root" if resolved == Path(resolved.anchor)
            else "your home folder" if resolved in homes else None)
    _require(what is None, key,
             f"{show(value)} is {what}; fmtc writes and replaces folders there: give a folder "
             "of its own (e.g. data/runs)")


def _check_seed(seed: int, key: str, offset: int = 0) -> None:
    """A seed, and ``seed + offset`` (the largest seed derived from it), lie in 0..2**32 - 1."""
    why = (f"it and its fold seeds, up to seed + {offset}, must stay below 2**32" if offset
           else "below 2**32")
    _require(0 <= seed and seed + offset < SEED_LIMIT, key,
             f"must lie in 0..{SEED_LIMIT - 1 - offset} ({why}), got {seed}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise PlanError(f"plan key '{prefix}': expected a mapping, got {show(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        where = f"'{prefix}'" if prefix else "the profile"
        keys = show([_join(prefix, str(k)) for k in unknown], 160)
        raise PlanError(f"unknown plan key(s) {keys} in {where}; allowed: {sorted(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                and f.name not in data]
    if required:
        raise PlanError(f"plan key(s) {[_join(prefix, k) for k in required]} missing")
    values = {name: _coerce(hints[name], value, _join(prefix, name))
              for name, value in data.items()}
    obj = cls(**values)
    if hasattr(obj, "check"):
        obj.check(prefix)
    return obj


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key)
            except PlanError:
                continue
        raise PlanError(f"plan key '{key}': {show(value)} is not a valid {_describe(hint)}")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise PlanError(f"plan key '{key}': {show(value)} is not one of {list(allowed)}")
        return value
    if hint is Any:
        return copy.deepcopy(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise PlanError(f"plan key '{key}': expected a mapping, got {show(value)}")
        key_type, item = typing.get_args(hint)
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise PlanError(f"plan key '{key}': keys must be strings, got {show(bad)}")
        return {k: _coerce(item, v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise PlanError(f"plan key '{key}': expected a list, got {show(value)}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise PlanError(f"plan key '{key}': expected true or false, got {show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PlanError(f"plan key '{key}': expected an integer, got {show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PlanError(f"plan key '{key}': expected a number, got {show(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if not math.isfinite(number):
            raise PlanError(f"plan key '{key}': must be a finite number, got {show(value)}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise PlanError(f"plan key '{key}': expected a string, got {show(value)}")
        return value
    raise PlanError(f"plan key '{key}': unsupported type {hint!r}")  # pragma: no cover


def _describe(hint: Any) -> str:
    return " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(hint))
