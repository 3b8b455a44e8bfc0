"""FMM_TC and its unimodal variants (Fan et al., MICCAI 2025, Fig. 1).

FMM_TC concatenates the frozen BrainLM CLS embedding of an fMRI window (the
temporal branch, read from the feature cache) with a ResNet-18 embedding of the
subject's R x R functional connectivity matrix (the connectivity branch,
trained from scratch) and classifies the concatenation with one linear layer.
TS-only keeps the temporal branch, FC-only the connectivity branch.

Two departures from the authors' code, both inside the models so that a saved
``state_dict`` is everything an attribution method needs:

- inputs are standardised with statistics of the training subjects, held as
  buffers (:meth:`set_standardisation`); the authors fed unscaled inputs;
- when ``pool_size`` is set, the R x R matrix is reduced by a differentiable
  average pooling as the first layer, so gradients and attributions stay
  defined with respect to every edge of the R x R input.

Every model takes the inputs it declares in the registry
(:mod:`fmtc.predict.registry`) as keyword arguments, and nothing else:
``FMMTC(cls=..., fc=...)``, ``TSOnly(cls=...)``, ``FCOnly(fc=...)``. ``cls`` is
``[B, H]`` (one window per subject) or ``[B, W, H]`` (all windows; logits
``[B, W, 2]``), ``fc`` is ``[B, R, R]``.

The models with a connectivity branch also accept ``fc_image`` in place of ``fc``:
the output of :meth:`FCEncoder.image` (the standardised, pooled matrix). Nothing in
that transform is trained, so training computes it once per fold for every subject
(:func:`fmtc.predict.training.train_fold`) instead of once per sample and step;
``fc`` always runs the whole path from the R x R matrix, so gradients and
attributions with respect to every edge stay defined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FC_EMBEDDING = 256
"""Width of the connectivity embedding: the ResNet-18 classifier layer is replaced by 512 -> 256."""

STD_FLOOR = 1e-6
"""Standard deviations below this divide by 1 instead (constant inputs, e.g. the FC diagonal)."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model before loading its ``state_dict``.

    Attributes
    ----------
    kind : str
        Registered model name (:mod:`fmtc.predict.registry`): ``fmmtc``, ``ts``, ``fc``, ...
    cls_dim : int
        Width H of the BrainLM CLS embedding (unused by ``fc``).
    n_regions : int
        R of the R x R connectivity input (unused by ``ts``).
    pool_size : int or None
        Side of the pooled FC image; None feeds the full R x R matrix.
    fc_kind : str
        Connectivity definition (``pearson`` or ``gram``), recorded for readers.
    """

    kind: str
    cls_dim: int
    n_regions: int
    pool_size: int | None = None
    fc_kind: str = "pearson"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``models.json`` of a run."""
        return asdict(self)


def _check_fc(fc: Tensor, n_regions: int) -> None:
    if fc.ndim != 3 or fc.shape[1:] != (n_regions, n_regions):
        raise ValueError(f"expected connectivity of shape [B, {n_regions}, {n_regions}], "
                         f"got {tuple(fc.shape)}")


def _check_cls(cls: Tensor, cls_dim: int) -> None:
    if cls.ndim not in (2, 3) or cls.shape[-1] != cls_dim:
        raise ValueError(f"expected CLS features of shape [B, {cls_dim}] or [B, W, {cls_dim}], "
                         f"got {tuple(cls.shape)}")


class _Standardise(nn.Module):
    """``(x - mean) / std`` with buffers set from training subjects (identity until set)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    def set(self, mean: Tensor, std: Tensor) -> None:
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"standardisation statistics of shape {tuple(mean.shape)} / "
                             f"{tuple(std.shape)} do not match the input shape "
                             f"{tuple(self.mean.shape)}")
        std = torch.where(std < STD_FLOOR, torch.ones_like(std), std)
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class FCEncoder(nn.Module):
    """ResNet-18 from scratch on the standardised R x R matrix repeated to 3 channels.

    Parameters
    ----------
    n_regions : int
        R.
    pool_size : int, optional
        Average-pool the matrix to ``pool_size x pool_size`` first (differentiable).
    out_dim : int
        Width of the embedding (the replaced classifier layer).
    """

    def __init__(self, n_regions: int, pool_size: int | None = None, out_dim: int = FC_EMBEDDING):
        super().__init__()
        from torchvision.models import resnet18

        if pool_size is not None and not 2 <= pool_size <= n_regions:
            raise ValueError(f"pool_size must lie in [2, {n_regions}] or be None, got {pool_size}")
        self.n_regions = n_regions
        self.pool_size = pool_size
        self.standardise = _Standardise((n_regions, n_regions))
        self.resnet = resnet18(weights=None, num_classes=out_dim)

    def image(self, fc: Tensor) -> Tensor:
        """The standardised (and pooled) matrix that enters the ResNet-18.

        Parameters
        ----------
        fc : Tensor of shape (B, R, R)

        Returns
        -------
        Tensor of shape (B, 1, P, P)
            ``P = pool_size`` (or R without pooling). Fixed once the standardisation is
            set, so it may be computed once and fed to :meth:`embed` at every step.
        """
        _check_fc(fc, self.n_regions)
        image = self.standardise(fc).unsqueeze(1)
        if self.pool_size is not None:
            image = F.adaptive_avg_pool2d(image, self.pool_size)
        return image

    def embed(self, image: Tensor) -> Tensor:
        """ResNet-18 embedding ``[B, out_dim]`` of one-channel images ``[B, 1, P, P]``.

        The image is repeated to the 3 input channels (a view, no copy).
        """
        side = self.n_regions if self.pool_size is None else self.pool_size
        if image.ndim != 4 or image.shape[1:] != (1, side, side):
            raise ValueError(f"expected FC images of shape [B, 1, {side}, {side}], "
                             f"got {tuple(image.shape)}")
        return self.resnet(image.expand(-1, 3, -1, -1))

    def forward(self, fc: Tensor) -> Tensor:
        """Embedding ``[B, out_dim]`` of the connectivity ``[B, R, R]``: ``embed(image(fc))``."""
        return self.embed(self.image(fc))

    def encode(self, fc: Tensor | None = None, fc_image: Tensor | None = None) -> Tensor:
        """The embedding of ``fc`` or of its precomputed :meth:`image` (exactly one given)."""
        if (fc is None) == (fc_image is None):
            raise ValueError("give exactly one of fc (the R x R matrices) and fc_image "
                             "(their FCEncoder.image)")
        return self.embed(self.image(fc) if fc_image is None else fc_image)


class _Classifier(nn.Module):
    """Shared ``set_standardisation`` of the three models.

    Attributes
    ----------
    accepts_fc_image : bool
        ``forward`` (and ``representation``, ``branch_logits``) take ``fc_image``, the
        :meth:`FCEncoder.image` of ``fc``, in place of ``fc``: training then computes the
        images once per fold (:func:`fmtc.predict.training.train_fold`).
    """

    config: ModelConfig
    accepts_fc_image: bool = False

    def set_standardisation(self, cls: tuple[Tensor, Tensor] | None = None,
                            fc: tuple[Tensor, Tensor] | None = None) -> None:
        """Set the (mean, std) of the CLS ``[H]`` and FC ``[R, R]`` inputs it uses."""
        if cls is not None and hasattr(self, "cls_standardise"):
            self.cls_standardise.set(*cls)
        if fc is not None and hasattr(self, "fc_encoder"):
            self.fc_encoder.standardise.set(*fc)


class FMMTC(_Classifier):
    """FMM_TC: [standardised CLS ⊕ ResNet-18(FC)] -> linear -> 2 logits.

    Inputs (keyword-only): ``cls`` ``[B, H]`` or ``[B, W, H]``, and ``fc`` ``[B, R, R]``
    (or ``fc_image``, its :meth:`FCEncoder.image`); every window of a subject shares the
    subject's connectivity embedding.
    """

    accepts_fc_image = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.cls_standardise = _Standardise((config.cls_dim,))
        self.fc_encoder = FCEncoder(config.n_regions, config.pool_size)
        self.head = nn.Linear(config.cls_dim + FC_EMBEDDING, 2)
        # Unimodal heads of the auxiliary losses (train.aux_weight > 0); created after every
        # layer above so that those start from the same weights either way, and never used to
        # predict.
        self.ts_aux_head = nn.Linear(config.cls_dim, 2)
        self.fc_aux_head = nn.Linear(FC_EMBEDDING, 2)

    def representation(self, *, cls: Tensor, fc: Tensor | None = None,
                       fc_image: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The two halves of the fused representation the head reads.

        Parameters
        ----------
        cls : Tensor of shape (B, H) or (B, W, H)
        fc : Tensor of shape (B, R, R), optional
        fc_image : Tensor of shape (B, 1, P, P), optional
            ``fc_encoder.image(fc)``, in place of ``fc`` (exactly one of the two).

        Returns
        -------
        ts : Tensor of shape (B, H) or (B, W, H)
            The standardised CLS.
        embedding : Tensor of shape (B, 256) or (B, W, 256)
            The connectivity embedding (repeated over windows when ``cls`` has them). The
            input of :attr:`head` is the concatenation (what :mod:`fmtc.interpret`
            attributes).
        """
        _check_cls(cls, self.config.cls_dim)
        given = fc if fc is not None else fc_image
        if given is not None and cls.shape[0] != given.shape[0]:
            raise ValueError(f"CLS batch {tuple(cls.shape)} and FC batch {tuple(given.shape)} "
                             "differ")
        embedding = self.fc_encoder.encode(fc, fc_image)
        if cls.ndim == 3:  # every window of a subject shares its connectivity embedding
            embedding = embedding.unsqueeze(1).expand(-1, cls.shape[1], -1)
        return self.cls_standardise(cls), embedding

    def forward(self, *, cls: Tensor, fc: Tensor | None = None,
                fc_image: Tensor | None = None) -> Tensor:
        """Logits ``[B, 2]`` (or ``[B, W, 2]`` for ``cls`` of shape ``[B, W, H]``)."""
        ts, embedding = self.representation(cls=cls, fc=fc, fc_image=fc_image)
        return self.head(torch.cat([ts, embedding], dim=-1))

    def branch_logits(self, *, cls: Tensor, fc: Tensor | None = None,
                      fc_image: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Fused logits and, for the auxiliary losses, a linear head on each branch alone.

        Training both branches towards the label as well as the fused head keeps the linear
        head from leaning on whichever branch fits the training fold first (at 48 training
        subjects the TS features do, and the ResNet-18 then learns little: the book's claims
        page). Predictions always come from the fused head (:meth:`forward`).
        """
        ts, embedding = self.representation(cls=cls, fc=fc, fc_image=fc_image)
        fused = self.head(torch.cat([ts, embedding], dim=-1))
        return fused, (self.ts_aux_head(ts), self.fc_aux_head(embedding))


class TSOnly(_Classifier):
    """TS-only: standardised BrainLM CLS -> linear -> 2 logits (input ``cls`` only)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.cls_standardise = _Standardise((config.cls_dim,))
        self.head = nn.Linear(config.cls_dim, 2)

    def forward(self, *, cls: Tensor) -> Tensor:
        """Logits ``[B, 2]`` (or ``[B, W, 2]`` for ``cls`` of shape ``[B, W, H]``)."""
        _check_cls(cls, self.config.cls_dim)
        return self.head(self.cls_standardise(cls))


class FCOnly(_Classifier):
    """FC-only: ResNet-18(FC) -> linear -> 2 logits (input ``fc``, or its ``fc_image``)."""

    accepts_fc_image = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.fc_encoder = FCEncoder(config.n_regions, config.pool_size)
        self.head = nn.Linear(FC_EMBEDDING, 2)

    def forward(self, *, fc: Tensor | None = None, fc_image: Tensor | None = None) -> Tensor:
        """Logits ``[B, 2]``: one prediction per connectivity matrix.

        It reads no per-window input: :func:`~fmtc.predict.training.predict_logits` calls it
        once per subject and uses its logits for every window.
        """
        return self.head(self.fc_encoder.encode(fc, fc_image))


def build_model(config: ModelConfig) -> nn.Module:
    """Return an untrained torch model of the registered kind ``config.kind``.

    Parameters
    ----------
    config : ModelConfig
        ``kind`` names a model registered with a torch ``module``
        (:mod:`fmtc.predict.registry`); the rest sizes it.

    Returns
    -------
    torch.nn.Module
        Takes its declared inputs as keywords (``cls=``, ``fc=``); returns logits ``[B, 2]``
        or ``[B, W, 2]``.
    """
    from fmtc.predict.registry import get_model

    spec = get_model(config.kind)
    if spec.module is None:
        raise ValueError(f"model {config.kind!r} is not a torch model; it has no ModelConfig")
    return spec.module_class()(config)
