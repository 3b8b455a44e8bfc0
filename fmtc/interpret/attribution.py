"""Integrated gradients of a fold model's responder evidence (captum ``IntegratedGradients``).

The attributed output is the **responder evidence** ``logit_1 - logit_0`` of a subject: the
quantity whose sign is the prediction, invariant to a shift of both logits. With several
windows per subject it is the mean over the subject's valid windows, as
:func:`fmtc.predict.training.predict_logits` predicts. Completeness (Sundararajan et al.,
2017) says the attributions of a subject add up to ``f(x) - f(x')``; captum's convergence
delta is the gap, reported per subject as a check of ``n_steps``.

All three functions attribute a whole batch of subjects in one captum call (chunked by
``internal_batch_size``) on the models' device; every input needs a leading batch dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Attribution:
    """IG attributions of a batch of subjects.

    Attributes
    ----------
    values : tuple of Tensor
        One attribution tensor per attributed input, each shaped like that input (CPU).
    delta : Tensor of shape (B,)
        Convergence delta: sum of the attributions minus ``f(x) - f(x')``.
    evidence : Tensor of shape (B,)
        ``f(x)``: the responder evidence of each subject.
    baseline_evidence : Tensor of shape (B,)
        ``f(x')``: the evidence of its baseline.
    """

    values: tuple[Tensor, ...]
    delta: Tensor
    evidence: Tensor
    baseline_evidence: Tensor

    @property
    def relative_delta(self) -> Tensor:
        """``|delta| / |f(x) - f(x')|`` (NaN where the two evidences are equal)."""
        gap = (self.evidence - self.baseline_evidence).abs()
        return torch.where(gap > 0, self.delta.abs() / gap, torch.full_like(gap, float("nan")))


def evidence(logits: Tensor, valid: Tensor | None = None) -> Tensor:
    """``logit_1 - logit_0`` per subject; ``[B, W, 2]`` logits are averaged over valid windows."""
    if logits.ndim == 3:
        weights = (torch.ones(logits.shape[:2], device=logits.device) if valid is None
                   else valid.to(logits.dtype))
        logits = (logits * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
    return logits[:, 1] - logits[:, 0]


def _integrated_gradients(forward: Callable[..., Tensor], inputs: tuple[Tensor, ...],
                          baselines: tuple[Tensor, ...], extra: tuple, n_steps: int,
                          internal_batch_size: int | None) -> Attribution:
    from captum.attr import IntegratedGradients

    if n_steps < 2:
        raise ValueError(f"n_steps must be at least 2, got {n_steps}")
    ig = IntegratedGradients(forward)
    values, delta = ig.attribute(inputs, baselines=baselines, additional_forward_args=extra,
                                 n_steps=n_steps, internal_batch_size=internal_batch_size,
                                 return_convergence_delta=True)
    with torch.no_grad():
        here = forward(*inputs, *extra)
        there = forward(*baselines, *extra)
    return Attribution(tuple(v.detach().cpu() for v in values), delta.detach().cpu().float(),
                       here.detach().cpu().float(), there.detach().cpu().float())


def _frozen(module: nn.Module) -> nn.Module:
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def modality_attributions(model: nn.Module, cls: Tensor, fc: Tensor, valid: Tensor,
                          baseline_cls: Tensor, baseline_fc: Tensor, *, n_steps: int = 50,
                          internal_batch_size: int | None = None) -> Attribution:
    """IG on the fused representation of FMM_TC: its TS half and its FC half.

    The baseline representation is the model's representation of the baseline inputs. The
    head is linear, so the path integral is exact here (the delta is rounding only).

    Parameters
    ----------
    model : FMMTC
        A fold model (any module with ``representation(cls=, fc=)`` and a linear ``head``).
    cls : Tensor, shape (B, W, H)
        BrainLM features of each subject's windows (zeros beyond ``valid``).
    fc : Tensor, shape (B, R, R)
    valid : Tensor, shape (B, W), bool
    baseline_cls, baseline_fc : Tensor
        Baseline inputs, shaped like ``cls`` and ``fc``.

    Returns
    -------
    Attribution
        ``values = (ts [B, W, H], fc [B, W, 256])``.
    """
    model = _frozen(model)
    if not hasattr(model, "representation"):
        raise TypeError(f"{type(model).__name__} has no fused representation (only FMM_TC has)")
    with torch.no_grad():
        ts, embedding = model.representation(cls=cls, fc=fc)
        base_ts, base_embedding = model.representation(cls=baseline_cls, fc=baseline_fc)

    def forward(ts: Tensor, embedding: Tensor, valid: Tensor) -> Tensor:
        return evidence(model.head(torch.cat([ts, embedding], dim=-1)), valid)

    return _integrated_gradients(forward, (ts, embedding), (base_ts, base_embedding), (valid,),
                                 n_steps, internal_batch_size)


def fc_attributions(model: nn.Module, fc: Tensor, baseline_fc: Tensor,
                    cls: Tensor | None = None, valid: Tensor | None = None, *,
                    n_steps: int = 50, internal_batch_size: int | None = None) -> Attribution:
    """IG with respect to every edge of the R x R connectivity input.

    For FMM_TC the subject's BrainLM features ``cls`` (``[B, W, H]``, with ``valid``) are held
    fixed; a model that reads no ``cls`` (FC-only) is called with ``fc`` alone (leave ``cls``
    None).

    Returns
    -------
    Attribution
        ``values = (fc [B, R, R],)``; an edge's total attribution is ``A_ij + A_ji``.
    """
    model = _frozen(model)

    def forward(fc: Tensor, cls: Tensor | None, valid: Tensor | None) -> Tensor:
        named = {"fc": fc} if cls is None else {"cls": cls, "fc": fc}
        return evidence(model(**named), valid)

    return _integrated_gradients(forward, (fc,), (baseline_fc,), (cls, valid), n_steps,
                                 internal_batch_size)


def ts_attributions(model: nn.Module, features: Callable[[Tensor], Tensor], windows: Tensor,
                    baseline_windows: Tensor, fc: Tensor | None = None, *, n_steps: int = 16,
                    internal_batch_size: int | None = 8) -> Attribution:
    """IG with respect to the input time-series window, through the frozen BrainLM encoder.

    Parameters
    ----------
    model : nn.Module
        A fold model reading ``cls`` (FMM_TC or TS-only).
    features : callable
        ``windows [B, R, T] -> features [B, F]``: the encoder and the plan's read-out
        (:func:`fmtc.represent.features.window_features`), with frozen parameters.
    windows, baseline_windows : Tensor, shape (B, R, T)
        One window per subject and its baseline.
    fc : Tensor, shape (B, R, R), optional
        The subject's connectivity, held fixed (FMM_TC); None for a model that reads no
        ``fc`` (TS-only).

    Returns
    -------
    Attribution
        ``values = (windows [B, R, T],)``.
    """
    model = _frozen(model)

    def forward(windows: Tensor, fc: Tensor | None) -> Tensor:
        cls = features(windows)
        return evidence(model(cls=cls) if fc is None else model(cls=cls, fc=fc))

    return _integrated_gradients(forward, (windows,), (baseline_windows,), (fc,), n_steps,
                                 internal_batch_size)
