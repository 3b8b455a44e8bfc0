"""BrainLM masked autoencoder for parcellated fMRI, compatible with the official checkpoint.

A compact re-implementation of ``BrainLMForPretraining`` from BrainLM (Ortega Caro et al.,
"BrainLM: A foundation model for brain activity recordings", ICLR 2024), checkpoint
``2023-06-06-22_15_00-checkpoint-1400`` (Hugging Face ``vandijklab/brainlm``, folder ``old_13M``),
written from the conformance specification ``shared/brainlm/SPEC.md``. Section numbers (§) below
refer to that document. Module names follow the Hugging Face state-dict keys, so the official
``pytorch_model.bin`` loads with ``strict=True``.

The "Nystromformer" blocks of this checkpoint take the exact softmax path (§5.2), computed here with
:func:`torch.nn.functional.scaled_dot_product_attention`, which never materialises the L x L
probability matrix, plus a per-head 65-tap convolution of the values along the token axis (§5.3).

Token order. Because of that convolution the encoder is not permutation-equivariant (§4, §8). The
checkpoint only ever saw tokens in a random order during pretraining, and the authors' pipeline
draws a fresh shuffle on every call (``noise=None``), which moves the CLS embedding by up to 1.17
max-abs (38% relative L2) between two calls on the fixture weights. :meth:`BrainLM.encode` is
deterministic instead: ``token_order="identity"`` keeps the ROI-major order (token
``t = roi * n_patches + patch``), and ``"shuffle-mean"`` averages the CLS over ``n_shuffles``
shuffles drawn from a seeded :class:`torch.Generator`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Rows of the sinusoidal tables in the checkpoint; bounds the patches per ROI (§3.3).
PE_ROWS = 5000
#: Dropout after the positional encodings, hard-coded in the original (active in training only).
PE_DROPOUT = 0.1
#: Token rows per chunk of the per-token half of a block (see ``_Block.forward``).
TOKEN_CHUNK = 2048
#: Samples per sub-batch of the encoder (see ``_Encoder.forward``).
SAMPLE_CHUNK = 2
#: Typical magnitude of MNI coordinates in mm; a fresh model's xyz projections start with
#: ``initializer_range / XYZ_SCALE_MM`` (see ``BrainLM.__init__``).
XYZ_SCALE_MM = 50.0

_ARCHITECTURES = ["BrainLMForPretraining"]

TokenOrder = Literal["identity", "shuffle-mean"]


@dataclass
class BrainLMConfig:
    """Hyper-parameters of BrainLM, as stored in a Hugging Face ``config.json``.

    Fields the forward pass does not use (``image_size``, ``initializer_range``, ...) are kept in
    ``extra`` so that :meth:`to_dict` writes the file back unchanged. ``patch_size`` and
    ``num_channels`` only size the unused ``decoder.decoder_pred`` (§6).
    """

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    decoder_hidden_size: int = 256
    decoder_num_hidden_layers: int = 2
    decoder_num_attention_heads: int = 4
    decoder_intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-12
    conv_kernel_size: int = 65
    num_landmarks: int = 64
    segment_means_seq_len: int = 64
    qkv_bias: bool = True
    timepoint_patching_size: int = 20
    num_brain_voxels: int = 424
    num_timepoints_per_voxel: int = 200
    mask_ratio: float = 0.2
    loss_fn: str = "mse"
    use_tanh_decoder: bool = False
    patch_size: int = 16
    num_channels: int = 3
    model_type: str = "brainlm_mae"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_config(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BrainLMConfig:
        """Build a config from a parsed ``config.json``; unknown fields go to ``extra``."""
        if values.get("model_type") != "brainlm_mae":
            raise ValueError(
                f"model_type is {values.get('model_type')!r}, expected 'brainlm_mae': this is not "
                "a BrainLM config"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names}
        hints = typing.get_type_hints(cls)
        for key, value in known.items():
            expected = hints[key]
            if expected is bool:
                ok = isinstance(value, bool)
            elif expected is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif expected is float:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            elif expected is str:
                ok = isinstance(value, str)
            else:
                ok = True
            if not ok:
                raise ValueError(f"'{key}' must be {getattr(expected, '__name__', expected)}, "
                                 f"got {value!r}")
        extra = {k: v for k, v in values.items() if k not in names}
        if extra.get("architectures") == _ARCHITECTURES:
            del extra["architectures"]  # written back by to_dict
        return cls(**known, extra=extra)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> BrainLMConfig:
        """Read a ``config.json`` file (a damaged one raises ``ValueError`` naming it)."""
        try:
            values = json.loads(Path(path).read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text; is it a config.json?") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: must hold a JSON object, found a "
                             f"{type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """Return the ``config.json`` content, extra fields included, keys sorted."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.pop("extra")
        return dict(sorted({"architectures": _ARCHITECTURES, **self.extra, **values}.items()))

    def to_json(self) -> str:
        """Return the ``config.json`` text (indented, sorted, final newline)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def _check_config(cfg: BrainLMConfig) -> None:
    if cfg.model_type != "brainlm_mae":
        raise ValueError(f"model_type must be 'brainlm_mae', got {cfg.model_type!r}.")
    for width, heads, where in (
        (cfg.hidden_size, cfg.num_attention_heads, "hidden_size"),
        (cfg.decoder_hidden_size, cfg.decoder_num_attention_heads, "decoder_hidden_size"),
    ):
        if heads < 1 or width % heads:
            raise ValueError(f"{where}={width} is not divisible by its {heads} attention heads.")
    if cfg.hidden_size % 2:
        raise ValueError(
            f"hidden_size must be even for the sinusoidal table, got {cfg.hidden_size}."
        )
    if cfg.decoder_hidden_size != cfg.hidden_size:
        # The original adds a hidden_size-wide xyz projection to decoder tokens (§6, step 4).
        raise ValueError(
            f"decoder_hidden_size={cfg.decoder_hidden_size} must equal hidden_size="
            f"{cfg.hidden_size}, as the original decoder requires."
        )
    if cfg.conv_kernel_size < 1 or cfg.conv_kernel_size % 2 == 0:
        raise ValueError(f"conv_kernel_size must be odd and positive, got {cfg.conv_kernel_size}.")
    if cfg.num_landmarks != cfg.segment_means_seq_len:
        raise ValueError(
            "num_landmarks != segment_means_seq_len selects the Nystrom approximation, which is "
            f"not implemented (got {cfg.num_landmarks} and {cfg.segment_means_seq_len})."
        )
    if cfg.hidden_act != "gelu":
        raise ValueError(f"hidden_act={cfg.hidden_act!r} is not supported; only 'gelu' (erf).")
    if cfg.loss_fn not in ("mse", "mae"):
        raise ValueError(f"loss_fn must be 'mse' or 'mae', got {cfg.loss_fn!r}.")
    if cfg.use_tanh_decoder:
        raise ValueError("use_tanh_decoder=True is not supported by this implementation.")
    if not 0.0 <= cfg.mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {cfg.mask_ratio}.")


@dataclass
class BrainLMOutput:
    """Result of the pretraining forward pass (§2).

    Attributes
    ----------
    loss : Tensor
        Scalar masked-patch reconstruction loss; NaN when nothing is masked.
    pred : Tensor, shape (B, R, T / P, P)
        Decoder prediction of every patch, in ROI-major order.
    mask : Tensor, shape (B, R * T / P)
        1.0 where the token was masked (dropped), in the original token order.
    ids_restore : Tensor of int64, shape (B, R * T / P)
        Position of each original token in the shuffled sequence.
    latent : Tensor, shape (B, 1 + K, hidden_size)
        Encoder output: CLS, then the K kept tokens in shuffled order.
    """

    loss: Tensor
    pred: Tensor
    mask: Tensor
    ids_restore: Tensor
    latent: Tensor


# --------------------------------------------------------------------------------------------
# Blocks (§5): HF NystromformerLayer, exact softmax branch, post-LN.


class _TokenConv(nn.Module):
    """Per-head depthwise convolution of the values along the token axis (§5.3)."""

    def __init__(self, heads: int, kernel_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(heads, 1, kernel_size, 1))

    def forward(self, value: Tensor) -> Tensor:
        # Depthwise over all H*d channels (channel h*d + c uses head h's filter), fed as a
        # channels-last [B, H*d, n, 1] view of V [B, n, H*d]: no copies, and on CPU about twice
        # as fast as the original Conv2d over [B, H, n, d] or a conv1d on transposed V.
        heads, _, k, _ = self.weight.shape
        width = value.shape[-1]
        taps = self.weight.repeat_interleave(width // heads, dim=0)
        out = F.conv2d(value.transpose(1, 2).unsqueeze(-1), taps, padding=(k // 2, 0), groups=width)
        return out.squeeze(-1).transpose(1, 2)


class _SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, kernel_size: int) -> None:
        super().__init__()
        # Q, K and V have biases whatever config.qkv_bias says, as in HF's Nystromformer (§1).
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.conv = _TokenConv(heads, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        batch, n, width = x.shape
        head_width = width // self.heads

        def split(t: Tensor) -> Tensor:  # contiguous heads: the CPU flash kernel runs ~10% faster
            return t.view(batch, n, self.heads, head_width).transpose(1, 2).contiguous()

        value = self.value(x)
        # The original scales Q and K each by d^(-1/4); one 1/sqrt(d) agrees to ~5e-7 (§12).
        context = F.scaled_dot_product_attention(
            split(self.query(x)), split(self.key(x)), split(value), scale=head_width**-0.5
        )
        return context.transpose(1, 2).reshape(batch, n, width) + self.conv(value)


class _AddNorm(nn.Module):
    """Dense, dropout, residual add, LayerNorm: HF's ``*Output`` modules."""

    def __init__(self, width_in: int, width: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, width)
        self.dropout = nn.Dropout(dropout)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)  # noqa: N815 - HF key name

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    """Holds ``attention.self`` and ``attention.output`` (HF key names); ``_Block`` calls them."""

    def __init__(self, width: int, heads: int, cfg: BrainLMConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(width, heads, cfg.conv_kernel_size)
        self.output = _AddNorm(width, width, cfg.layer_norm_eps, cfg.hidden_dropout_prob)


class _Intermediate(nn.Module):
    def __init__(self, width: int, ffn: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, ffn)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))  # exact erf GELU, not the tanh approximation


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, ffn: int, cfg: BrainLMConfig) -> None:
        super().__init__()
        self.attention = _Attention(width, heads, cfg)
        self.intermediate = _Intermediate(width, ffn)
        self.output = _AddNorm(ffn, width, cfg.layer_norm_eps, cfg.hidden_dropout_prob)

    def forward(self, x: Tensor) -> Tensor:
        # Attention needs every token at once; the rest is per token, so it runs on chunks of
        # TOKEN_CHUNK rows whose 4x-wide feed-forward activations stay in cache: faster on
        # CPU than one pass over all B * n rows, and bit-identical to it.
        shape = x.shape
        attended = self.attention.self(x).reshape(-1, shape[-1])
        x = x.reshape(-1, shape[-1])
        chunks = []
        for start in range(0, len(x), TOKEN_CHUNK):
            h = self.attention.output(attended[start:start + TOKEN_CHUNK],
                                      x[start:start + TOKEN_CHUNK])
            chunks.append(self.output(self.intermediate(h), h))
        return torch.cat(chunks).view(shape)


class _SinusoidalTable(nn.Module):
    """Holds the persistent ``pe`` buffer; row j is added to patch j of every ROI (§3.3)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        position = torch.arange(PE_ROWS, dtype=torch.float32).unsqueeze(1)
        freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(1e4) / width))
        pe = torch.zeros(PE_ROWS, width)
        pe[:, 0::2] = torch.sin(position * freq)
        pe[:, 1::2] = torch.cos(position * freq)
        self.register_buffer("pe", pe)

    def forward(self, n_patches: int) -> Tensor:
        return self.pe[:n_patches]


# --------------------------------------------------------------------------------------------
# Encoder (§3-§5) and decoder (§6).


class _Embeddings(nn.Module):
    def __init__(self, cfg: BrainLMConfig) -> None:
        super().__init__()
        width = cfg.hidden_size
        self.patch = cfg.timepoint_patching_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.signal_embedding_projection = nn.Linear(self.patch, width)
        self.xyz_embedding_projection = nn.Linear(3, width)
        self.pos_embedding = _SinusoidalTable(width)
        self.dropout = nn.Dropout(PE_DROPOUT)

    def forward(self, signal: Tensor, xyz: Tensor) -> Tensor:
        """Embed [B, R, T] into ROI-major tokens [B, R * T / P, D] (no CLS, no shuffle)."""
        batch, regions, timepoints = signal.shape
        patches = signal.reshape(batch, regions, timepoints // self.patch, self.patch)
        tokens = (
            self.signal_embedding_projection(patches)
            + self.xyz_embedding_projection(xyz).unsqueeze(2)
            + self.pos_embedding(patches.shape[2])
        )
        return self.dropout(tokens).flatten(1, 2)


class _Layers(nn.Module):
    def __init__(self, cfg: BrainLMConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            _Block(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg)
            for _ in range(cfg.num_hidden_layers)
        )


class _Encoder(nn.Module):
    """``vit.*``: embedding, shuffle and masking, blocks, final LayerNorm."""

    def __init__(self, cfg: BrainLMConfig) -> None:
        super().__init__()
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Layers(cfg)
        self.layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(
        self, signal: Tensor, xyz: Tensor, noise: Tensor | None, mask_ratio: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(latent, mask, ids_restore)``; ``noise=None`` keeps the ROI-major order.

        Samples never interact, so a batch runs in sub-batches of ``SAMPLE_CHUNK``: each
        activation then stays below glibc's 32 MB mmap threshold and its memory is reused
        from one layer to the next instead of being page-faulted afresh (batch 8 of 4241
        tokens: ~15% faster on CPU, a quarter of the activation memory, same outputs).
        """
        if len(signal) <= SAMPLE_CHUNK:
            return self._forward(signal, xyz, noise, mask_ratio)
        parts = [self._forward(signal[i:i + SAMPLE_CHUNK], xyz[i:i + SAMPLE_CHUNK],
                               None if noise is None else noise[i:i + SAMPLE_CHUNK], mask_ratio)
                 for i in range(0, len(signal), SAMPLE_CHUNK)]
        latent, mask, ids_restore = (torch.cat(items) for items in zip(*parts, strict=True))
        return latent, mask, ids_restore

    def _forward(
        self, signal: Tensor, xyz: Tensor, noise: Tensor | None, mask_ratio: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        tokens = self.embeddings(signal, xyz)
        batch, n_tokens, width = tokens.shape
        if noise is None:
            ids_restore = torch.arange(n_tokens, device=tokens.device).expand(batch, -1)
            mask = tokens.new_zeros(batch, n_tokens)
        else:
            tokens, mask, ids_restore = _shuffle_and_mask(tokens, noise, mask_ratio)
        x = torch.cat([self.embeddings.cls_token.expand(batch, -1, -1), tokens], dim=1)
        for block in self.encoder.layer:
            x = block(x)
        return self.layernorm(x), mask, ids_restore


def _shuffle_and_mask(tokens: Tensor, noise: Tensor, mask_ratio: float) -> tuple[Tensor, ...]:
    """Keep the ``floor(L (1 - r))`` tokens of smallest noise, in that shuffled order (§4)."""
    batch, n_tokens, width = tokens.shape
    n_keep = int(n_tokens * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    keep = ids_shuffle[:, :n_keep].unsqueeze(-1).expand(-1, -1, width)
    mask = (ids_restore >= n_keep).to(tokens.dtype)
    return torch.gather(tokens, 1, keep), mask, ids_restore


class _Decoder(nn.Module):
    """``decoder.*``: unshuffle with mask tokens, add xyz and PE, blocks, 2-layer head (§6)."""

    def __init__(self, cfg: BrainLMConfig) -> None:
        super().__init__()
        width = cfg.decoder_hidden_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.decoder_embed = nn.Linear(cfg.hidden_size, width)
        self.decoder_layers = nn.ModuleList(
            _Block(width, cfg.decoder_num_attention_heads, cfg.decoder_intermediate_size, cfg)
            for _ in range(cfg.decoder_num_hidden_layers)
        )
        self.decoder_norm = nn.LayerNorm(width, eps=cfg.layer_norm_eps)
        # ViT-MAE leftover: stored in the checkpoint, never used (§6).
        self.decoder_pred = nn.Linear(width, cfg.patch_size**2 * cfg.num_channels)
        self.decoder_xyz_projection = nn.Linear(3, cfg.hidden_size)
        self.pos_embedding = _SinusoidalTable(cfg.hidden_size)
        self.dropout = nn.Dropout(PE_DROPOUT)
        self.decoder_pred1 = nn.Linear(width, width // 2)
        self.decoder_pred2 = nn.Linear(width // 2, cfg.timepoint_patching_size)

    def forward(self, latent: Tensor, xyz: Tensor, ids_restore: Tensor) -> Tensor:
        y = self.decoder_embed(latent)
        batch, n_tokens = ids_restore.shape
        regions, width = xyz.shape[1], y.shape[-1]
        fill = self.mask_token.expand(batch, n_tokens + 1 - y.shape[1], -1)
        shuffled = torch.cat([y[:, 1:], fill], dim=1)
        index = ids_restore.unsqueeze(-1).expand(-1, -1, width)
        tokens = torch.gather(shuffled, 1, index).view(batch, regions, -1, width)
        tokens = tokens + self.decoder_xyz_projection(xyz).unsqueeze(2)
        tokens = self.dropout(tokens + self.pos_embedding(tokens.shape[2]))
        x = torch.cat([y[:, :1], tokens.flatten(1, 2)], dim=1)
        for block in self.decoder_layers:
            x = block(x)
        x = self.decoder_norm(x)
        patches = self.decoder_pred2(F.leaky_relu(self.decoder_pred1(x), 0.1))
        return patches[:, 1:].reshape(batch, regions, tokens.shape[2], -1)


# --------------------------------------------------------------------------------------------


class BrainLM(nn.Module):
    """BrainLM masked autoencoder (``BrainLMForPretraining``), checkpoint-compatible.

    Pretrained weights expect A424 regions in A424 order with raw MNI coordinates in mm (§11), but
    any number of regions R works: the model makes ``R * T / P`` tokens from its input. The
    checkpoint saw tokens only in random order during pretraining; see the module docstring for
    what :meth:`encode`'s ``token_order`` does about it.

    Parameters
    ----------
    config : BrainLMConfig
        Architecture; ``BrainLMConfig()`` is the official ``old_13M`` checkpoint.
    """

    def __init__(self, config: BrainLMConfig) -> None:
        super().__init__()
        self.config = config
        self.vit = _Encoder(config)
        self.decoder = _Decoder(config)
        self.source_info: dict[str, Any] = {}
        self._initialise(float(config.extra.get("initializer_range", 0.02)))

    def _initialise(self, std: float) -> None:
        """Random weights as the original's (Hugging Face ViT-MAE), token terms on one scale.

        Linear and convolution weights ~ N(0, std), biases 0, LayerNorms identity, CLS and
        mask tokens ~ N(0, std); then every term summed into an encoder or decoder token
        starts on the sinusoid's scale (~1 per channel): the signal projection with std
        ``P ** -0.5`` for unit-scale patches, ``decoder_embed`` with ``D ** -0.5`` for the
        layer-normalised latent, the xyz projections with ``std / XYZ_SCALE_MM`` for raw-mm
        coordinates. With the plain ``std`` the content terms start 10-30x below the
        positional one and the xyz term 30x above it, and masked-patch pretraining from
        scratch sits at the predict-zero loss (measured: 400 steps on the simulator without
        leaving it). Loading a checkpoint replaces all of this.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, _TokenConv):
                nn.init.normal_(module.weight, std=std)
        nn.init.normal_(self.vit.embeddings.cls_token, std=std)
        nn.init.normal_(self.decoder.mask_token, std=std)
        patch = self.config.timepoint_patching_size
        nn.init.normal_(self.vit.embeddings.signal_embedding_projection.weight, std=patch**-0.5)
        nn.init.normal_(self.decoder.decoder_embed.weight, std=self.config.hidden_size**-0.5)
        for projection in (self.vit.embeddings.xyz_embedding_projection,
                           self.decoder.decoder_xyz_projection):
            nn.init.normal_(projection.weight, std=std / XYZ_SCALE_MM)

    def forward(
        self,
        signal: Tensor,
        xyz: Tensor,
        noise: Tensor | None = None,
        mask_ratio: float | None = None,
    ) -> BrainLMOutput:
        """Pretraining pass: shuffle, mask, encode, decode, and score the masked patches.

        Parameters
        ----------
        signal : Tensor, shape (B, R, T)
            One time series per region; T must be a multiple of ``timepoint_patching_size``.
        xyz : Tensor, shape (B, R, 3)
            Region centroids in MNI millimetres.
        noise : Tensor, shape (B, R * T / P), optional
            Only its per-row argsort matters: small noise is kept and comes first. ``None`` draws
            ``torch.rand`` from the global generator, as the original does, so the token order is
            random even at ``mask_ratio=0``.
        mask_ratio : float, optional
            Fraction of tokens to mask; ``None`` uses ``config.mask_ratio``.

        Returns
        -------
        BrainLMOutput
            ``loss``, ``pred``, ``mask``, ``ids_restore`` and ``latent``.
        """
        signal, xyz = self._as_inputs(signal, xyz)
        ratio = self.config.mask_ratio if mask_ratio is None else float(mask_ratio)
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1), got {ratio}.")
        n_tokens = signal.shape[1] * (signal.shape[2] // self.config.timepoint_patching_size)
        if noise is None:
            noise = torch.rand(signal.shape[0], n_tokens, device=signal.device)
        _check_noise(noise, (signal.shape[0], n_tokens))
        latent, mask, ids_restore = self.vit(signal, xyz, noise.to(signal.device), ratio)
        pred = self.decoder(latent, xyz, ids_restore)
        loss = _masked_patch_loss(pred, signal, mask, self.config.loss_fn)
        return BrainLMOutput(loss, pred, mask, ids_restore, latent)

    def encode(
        self,
        signal: Tensor,
        xyz: Tensor,
        *,
        token_order: TokenOrder = "identity",
        n_shuffles: int = 8,
        seed: int = 0,
    ) -> Tensor:
        """CLS embedding after the final LayerNorm, without masking.

        Parameters
        ----------
        signal : Tensor, shape (B, R, T)
            One time series per region; T must be a multiple of ``timepoint_patching_size``.
        xyz : Tensor, shape (B, R, 3)
            Region centroids in MNI millimetres.
        token_order : {"identity", "shuffle-mean"}, default="identity"
            ``"identity"`` feeds tokens in ROI-major order; ``"shuffle-mean"`` averages the CLS
            over ``n_shuffles`` token orders drawn from a generator seeded with ``seed``.
        n_shuffles : int, default=8
            Number of shuffles for ``"shuffle-mean"`` (each costs one encoder pass).
        seed : int, default=0
            Seed of the shuffles for ``"shuffle-mean"``.

        Returns
        -------
        Tensor, shape (B, hidden_size)
            Deterministic for given inputs, order and seed. Gradients flow unless the caller
            wraps the call in :func:`torch.no_grad`.
        """
        signal, xyz = self._as_inputs(signal, xyz)
        if token_order == "identity":
            return self.vit(signal, xyz, None, 0.0)[0][:, 0]
        if token_order != "shuffle-mean":
            raise ValueError(
                f"token_order must be 'identity' or 'shuffle-mean', got {token_order!r}."
            )
        if n_shuffles < 1:
            raise ValueError(f"n_shuffles must be at least 1, got {n_shuffles}.")
        generator = torch.Generator().manual_seed(seed)
        n_tokens = signal.shape[1] * (signal.shape[2] // self.config.timepoint_patching_size)
        total = 0
        for _ in range(n_shuffles):
            noise = torch.rand(signal.shape[0], n_tokens, generator=generator)
            total = total + self.vit(signal, xyz, noise.to(signal.device), 0.0)[0][:, 0]
        return total / n_shuffles

    def encode_tokens(self, signal: Tensor, xyz: Tensor) -> Tensor:
        """Every token after the final LayerNorm, without masking: ``[B, 1 + R * P, H]``.

        Index 0 is the CLS (what :meth:`encode` returns); then the ``P`` patch tokens of each
        region in ROI-major order. Shapes as in :meth:`encode`.
        """
        signal, xyz = self._as_inputs(signal, xyz)
        return self.vit(signal, xyz, None, 0.0)[0]

    def _as_inputs(self, signal: Tensor, xyz: Tensor) -> tuple[Tensor, Tensor]:
        reference = self.vit.embeddings.cls_token
        signal = torch.as_tensor(signal, dtype=reference.dtype, device=reference.device)
        xyz = torch.as_tensor(xyz, dtype=reference.dtype, device=reference.device)
        _check_signal_xyz(signal, xyz, self.config.timepoint_patching_size)
        return signal, xyz


def _check_signal_xyz(signal: Tensor, xyz: Tensor, patch: int) -> None:
    if signal.ndim != 3:
        raise ValueError(
            f"signal must have shape (batch, regions, timepoints); got {tuple(signal.shape)}."
        )
    batch, regions, timepoints = signal.shape
    if xyz.shape != (batch, regions, 3):
        raise ValueError(
            f"xyz must have shape (batch, regions, 3) = {(batch, regions, 3)} to match signal "
            f"{tuple(signal.shape)}; got {tuple(xyz.shape)}."
        )
    if timepoints == 0 or timepoints % patch or timepoints // patch > PE_ROWS:
        raise ValueError(
            f"signal has {timepoints} timepoints (shape {tuple(signal.shape)}); BrainLM needs a "
            f"positive multiple of {patch}, at most {patch * PE_ROWS}. Crop or window the series."
        )


def _check_noise(noise: Tensor, expected: tuple[int, int]) -> None:
    if tuple(noise.shape) != expected:
        raise ValueError(
            f"noise must have shape (batch, regions * timepoints / patch) = {expected}; "
            f"got {tuple(noise.shape)}."
        )


def _masked_patch_loss(pred: Tensor, signal: Tensor, mask: Tensor, loss_fn: str) -> Tensor:
    """Mean error over every masked sample in the batch; NaN when nothing is masked (§7)."""
    target = signal.reshape(pred.shape)
    error = (pred - target).abs() if loss_fn == "mae" else (pred - target) ** 2
    weight = mask.view(pred.shape[:3]).unsqueeze(-1)
    return (error * weight).sum() / (weight.sum() * pred.shape[-1])
