"""The model registry: one declaration per model, one interface for every model.

A declaration (:class:`ModelSpec`) names the model, the inputs it reads
(``cls``: BrainLM CLS features; ``fc``: connectivity matrices), where its
hyper-parameters live in the plan, and how to build it. Every model is built as an
*estimator* with ``fit`` and ``predict_proba`` (:class:`Estimator`); torch models
(declared with ``module``) are trained by :class:`fmtc.predict.training.TorchClassifier`,
which also logs per-epoch probabilities for the selection rules
(:mod:`fmtc.evaluate.selection`).

Adding a model is one file plus one registry line::

    # my_model.py
    class MyNet(torch.nn.Module):              # built from a ModelConfig
        def __init__(self, config): ...
        def forward(self, *, cls): ...         # -> logits [B, 2] or [B, W, 2]

    register(ModelSpec("mynet", "MyNet", inputs=("cls",), module=MyNet))

A torch module is called with exactly the inputs it declares, by name:
``model(**{name: tensor for name in spec.inputs})`` (``cls`` and/or ``fc``), in training,
evaluation and :mod:`fmtc.interpret`. ``cls`` is ``[B, H]`` (one window per subject, in
training) or ``[B, W, H]`` (every window of a subject, in evaluation: return ``[B, W, 2]``);
``fc`` is ``[B, R, R]``. A module that reads no ``cls`` is evaluated once per subject and
its ``[B, 2]`` logits stand for every window.

A module that defines ``set_standardisation(cls=(mean, std), fc=(mean, std))`` receives
the training subjects' input statistics before training (the built-in models keep them
as buffers, so a saved ``state_dict`` standardises by itself). A module with an
``fc_encoder`` (:class:`fmtc.predict.models.FCEncoder`) and ``accepts_fc_image = True``
also takes ``fc_image=`` (``fc_encoder.image(fc)``) in place of ``fc``: training computes
those images once per fold instead of at every step (the built-in FMM_TC and FC-only do).

A model that is not a torch module gives a ``factory(params, context) -> estimator``,
a dataclass of hyper-parameters (read from ``model_params.<name>`` of the plan unless
``section`` names another plan section) and ``has_epochs=False``.

This module imports neither torch nor scikit-learn: built-in models are declared by
import path and loaded on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fmtc.errors import UsageError

INPUTS = ("cls", "fc", "temporal", "covariates")
"""Inputs a model may read: BrainLM CLS features per window, connectivity matrices,
handcrafted temporal features (:mod:`fmtc.represent.temporal`), participants covariates
(:func:`fmtc.cohort.participants.covariate_design`)."""


class UnknownModelError(UsageError):
    """A model name that is not registered (the message lists the known ones)."""


@dataclass(frozen=True)
class ModelContext:
    """What a model needs besides its hyper-parameters: device and input definitions.

    Attributes
    ----------
    device : torch.device or None
        Where torch models train (None: CPU).
    pool_size : int or None
        Side of the pooled connectivity image inside FC branches (None: full R x R).
    fc_kind : str
        Connectivity definition of the ``fc`` input (recorded with the weights).
    zero_grad : {"per_batch", "per_epoch"}
        ``protocol.zero_grad`` of torch models (:func:`fmtc.predict.training.train_fold`).
    eval_crops : {"all_windows", "random"}
        ``protocol.eval_crops`` of torch models.
    """

    device: Any = None
    pool_size: int | None = None
    fc_kind: str = "pearson"
    zero_grad: str = "per_batch"
    eval_crops: str = "all_windows"


@runtime_checkable
class Estimator(Protocol):
    """The interface of every model: fit on training subjects, predict P(class 1)."""

    def fit(self, data: Any, train: np.ndarray, *, seed: int) -> Any:
        """Fit on rows ``train`` of ``data`` (an :class:`~fmtc.predict.data.ExperimentData`)."""

    def predict_proba(self, data: Any, subjects: np.ndarray) -> np.ndarray:
        """P(class 1) of rows ``subjects``, shape ``(len(subjects),)``."""


@dataclass(frozen=True)
class ModelSpec:
    """Declaration of one model.

    Attributes
    ----------
    name : str
        Registry key, used in plans, on the command line and in every table.
    display_name : str
        Name in figures and text tables.
    inputs : tuple of str
        Inputs it reads, from :data:`INPUTS`; only these are computed and passed (to a
        torch ``module`` as keyword arguments of the same names).
    module : type or str, optional
        A torch ``nn.Module`` class built from a :class:`~fmtc.predict.models.ModelConfig`
        (or its ``"package.module:Class"`` path): the model is trained by
        ``TorchClassifier`` with the plan's ``train`` section and has epochs.
    factory : callable or str, optional
        ``factory(params, context) -> Estimator`` for models without ``module``.
    params : type or str, optional
        Dataclass of the hyper-parameters. Default for torch models: ``TrainPlan`` from the
        plan's ``train`` section (a torch model's own dataclass needs its fields).
    section : str, optional
        Plan section holding them (``train``, ``logistic``); None: ``train`` for a torch model
        without its own ``params``, else ``model_params.<name>``.
    has_epochs : bool, optional
        Whether the estimator logs per-epoch probabilities (default: ``module`` is set).
    description : str
    default : bool
        Among the models ``fmtc evaluate`` runs without ``--model`` (:func:`default_models`).
    """

    name: str
    display_name: str
    inputs: tuple[str, ...]
    module: type | str | None = None
    factory: Callable[..., Any] | str | None = None
    params: type | str | None = None
    section: str | None = None
    has_epochs: bool | None = None
    description: str = ""
    default: bool = False

    def __post_init__(self) -> None:
        unknown = [i for i in self.inputs if i not in INPUTS]
        if not self.inputs or unknown:
            raise ValueError(f"model {self.name!r}: inputs must be a non-empty subset of "
                             f"{list(INPUTS)}, got {list(self.inputs)}")
        if (self.module is None) == (self.factory is None):
            raise ValueError(f"model {self.name!r}: declare exactly one of module (a torch "
                             "model) or factory (any other estimator)")
        if self.module is None and self.params is None:
            raise ValueError(f"model {self.name!r}: a factory model needs its params dataclass")

    @property
    def epochs(self) -> bool:
        """True when the model logs per-epoch probabilities (selection rules apply)."""
        return self.module is not None if self.has_epochs is None else self.has_epochs

    @property
    def interpretable(self) -> bool:
        """Whether ``fmtc interpret`` can attribute its fold models (torch models)."""
        return self.module is not None

    @property
    def fused(self) -> bool:
        """Whether the model exposes a fused representation (``representation`` and ``head``),
        whose TS and FC halves interpretation attributes (FMM_TC)."""
        return self.module is not None and hasattr(self.module_class(), "representation")

    @property
    def params_section(self) -> str:
        """Plan key of the hyper-parameters (``train``, ``logistic``, ``model_params.<name>``)."""
        if self.section is not None:
            return self.section
        if self.module is not None and self.params is None:
            return "train"
        return f"model_params.{self.name}"

    def params_type(self) -> type:
        """The hyper-parameters' dataclass."""
        if self.params is None:
            from fmtc.plan import TrainPlan

            return TrainPlan
        return _resolve(self.params)

    def module_class(self) -> type:
        """The torch module class (models declared with ``module`` only)."""
        if self.module is None:
            raise TypeError(f"model {self.name!r} is not a torch module")
        return _resolve(self.module)

    def create(self, params: Any, context: ModelContext) -> Estimator:
        """A new, unfitted estimator of this model."""
        if self.module is not None:
            from fmtc.predict.training import TorchClassifier

            return TorchClassifier(self.name, self.module_class(), self.inputs, params, context)
        return _resolve(self.factory)(params, context)


def _resolve(target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry (``replace=True`` to redefine a name); return it."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a model (tests that register toy models clean up with this)."""
    _REGISTRY.pop(name, None)


def model_names() -> tuple[str, ...]:
    """Registered model names, in registration order."""
    return tuple(_REGISTRY)


def get_model(name: str) -> ModelSpec:
    """The declaration of ``name``; :class:`UnknownModelError` lists the known models."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: "
                                f"{', '.join(model_names())}") from None


def check_models(names: Any, where: str = "model") -> list[str]:
    """Return ``names`` as a list after checking each is registered (error names ``where``)."""
    names = list(names)
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown or not names:
        raise UnknownModelError(f"{where}: unknown model(s) {unknown or '(none given)'}; "
                                f"known models: {', '.join(model_names())}")
    return names


def default_models() -> list[str]:
    """The models ``fmtc evaluate`` runs when neither ``--model`` nor ``evaluation.models`` says."""
    return [name for name, spec in _REGISTRY.items() if spec.default]


def display_names() -> dict[str, str]:
    """Model name -> display name, for figures and tables."""
    return {name: spec.display_name for name, spec in _REGISTRY.items()}


# --------------------------------------------------------------------------- built-in models
register(ModelSpec("fmmtc", "FMM_TC", ("cls", "fc"), module="fmtc.predict.models:FMMTC",
                   description="BrainLM read-out ⊕ ResNet-18(FC) -> linear head (the paper's "
                               "model reads the CLS vector)",
                   default=True))
register(ModelSpec("ts", "TS-only", ("cls",), module="fmtc.predict.models:TSOnly",
                   description="BrainLM read-out (brainlm.readout) -> linear head",
                   default=True))
register(ModelSpec("fc", "FC-only", ("fc",), module="fmtc.predict.models:FCOnly",
                   description="ResNet-18(FC) from scratch -> linear head", default=True))
register(ModelSpec("fc-logreg", "FC logistic", ("fc",),
                   factory="fmtc.predict.baselines:fc_logistic",
                   params="fmtc.plan:LogisticPlan", section="logistic",
                   description="FC upper triangle -> standardise -> L2 logistic (C by inner CV)",
                   default=True))
register(ModelSpec("cls-logreg", "TS read-out logistic", ("cls",),
                   factory="fmtc.predict.baselines:cls_logistic",
                   params="fmtc.plan:LogisticPlan", section="logistic",
                   description="window-mean BrainLM read-out (brainlm.readout: the CLS vector, "
                               "the token mean or network means) -> standardise -> L2 logistic",
                   default=True))
register(ModelSpec("ts-handcrafted", "TS handcrafted", ("temporal",),
                   factory="fmtc.predict.baselines:temporal_logistic",
                   params="fmtc.plan:LogisticPlan", section="logistic",
                   description="lag-k autocorrelation, ALFF, fALFF per region -> standardise -> "
                               "L2 logistic (a ceiling for the TS branch)"))
register(ModelSpec("covariates-logreg", "Covariates logistic", ("covariates",),
                   factory="fmtc.predict.baselines:covariates_logistic",
                   params="fmtc.plan:LogisticPlan", section="logistic",
                   description="study, drug, sex (one-hot), age, mean FD -> standardise -> "
                               "L2 logistic (what the confounds alone predict)"))
