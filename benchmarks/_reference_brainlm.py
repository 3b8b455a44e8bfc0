"""Reference BrainLM encoder that materialises the softmax matrix, as the original code does.

The exact path of HF's ``NystromformerSelfAttention`` used by BrainLM (Ortega Caro et al., ICLR
2024; ``shared/brainlm/SPEC.md`` §5): Q and K each scaled by d^(-1/4), the full [B, H, n, n]
score and probability tensors, then the per-head (65, 1) ``Conv2d`` over V added to the context.
It reads a state dict directly and shares no code with :mod:`fmtc.represent.brainlm`, so the
benchmark doubles as an independent cross-check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _linear(state: dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    return F.linear(x, state[f"{prefix}.weight"], state[f"{prefix}.bias"])


def _layer_norm(state: dict[str, Tensor], prefix: str, x: Tensor, eps: float) -> Tensor:
    weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    return F.layer_norm(x, weight.shape, weight, bias, eps)


def _block(state: dict[str, Tensor], prefix: str, x: Tensor, heads: int, eps: float) -> Tensor:
    batch, n, width = x.shape
    d = width // heads

    def split(t: Tensor) -> Tensor:
        return t.view(batch, n, heads, d).transpose(1, 2)

    q = split(_linear(state, f"{prefix}.attention.self.query", x))
    k = split(_linear(state, f"{prefix}.attention.self.key", x))
    v = split(_linear(state, f"{prefix}.attention.self.value", x))
    scores = (q / d**0.25) @ (k / d**0.25).transpose(-1, -2)
    context = scores.softmax(dim=-1) @ v
    conv = state[f"{prefix}.attention.self.conv.weight"]
    context = context + F.conv2d(v, conv, padding=(conv.shape[2] // 2, 0), groups=heads)
    context = context.transpose(1, 2).reshape(batch, n, width)
    x = _layer_norm(
        state,
        f"{prefix}.attention.output.LayerNorm",
        _linear(state, f"{prefix}.attention.output.dense", context) + x,
        eps,
    )
    hidden = F.gelu(_linear(state, f"{prefix}.intermediate.dense", x))
    return _layer_norm(
        state,
        f"{prefix}.output.LayerNorm",
        _linear(state, f"{prefix}.output.dense", hidden) + x,
        eps,
    )


def reference_encoder(
    state: dict[str, Tensor],
    signal: Tensor,
    xyz: Tensor,
    *,
    heads: int = 4,
    patch: int = 20,
    eps: float = 1e-12,
) -> Tensor:
    """Encoder ``last_hidden_state`` [B, 1 + R*T/P, D] in ROI-major token order, nothing masked.

    Parameters
    ----------
    state : dict of str to Tensor
        A BrainLM state dict (``vit.*`` keys are used).
    signal : Tensor, shape (B, R, T)
        Region time series, T a multiple of ``patch``.
    xyz : Tensor, shape (B, R, 3)
        Region centroids in MNI mm.
    heads, patch, eps
        Attention heads, timepoints per patch and LayerNorm epsilon of the checkpoint.

    Returns
    -------
    Tensor
        CLS at row 0, then the tokens, after the final LayerNorm.
    """
    batch, regions, timepoints = signal.shape
    patches = signal.reshape(batch, regions, timepoints // patch, patch)
    tokens = (
        _linear(state, "vit.embeddings.signal_embedding_projection", patches)
        + _linear(state, "vit.embeddings.xyz_embedding_projection", xyz).unsqueeze(2)
        + state["vit.embeddings.pos_embedding.pe"][: patches.shape[2]]
    ).flatten(1, 2)
    cls = state["vit.embeddings.cls_token"].expand(batch, -1, -1)
    x = torch.cat([cls, tokens], dim=1)
    n_layers = len({k.split(".")[3] for k in state if k.startswith("vit.encoder.layer.")})
    for layer in range(n_layers):
        x = _block(state, f"vit.encoder.layer.{layer}", x, heads, eps)
    return _layer_norm(state, "vit.layernorm", x, eps)
