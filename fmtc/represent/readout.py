"""TS read-outs of a BrainLM encoder's output: the CLS, the token mean, or token means per network.

The paper reads the CLS vector; BrainLM gives it no training objective of its own (nothing asks
it to summarise the recording), so the mean of the region tokens, or their mean within each atlas
network, are offered as alternatives (plan key ``brainlm.readout``).
"""

from __future__ import annotations

import numpy as np
import torch

from fmtc.cohort.folder import Cohort
from fmtc.errors import InvalidDataError


def readout_groups(cohort: Cohort, readout: str) -> np.ndarray | None:
    """Network number (sorted network order) of each region for ``network-mean``, else None."""
    if readout != "network-mean":
        return None
    if "network" not in cohort.regions.columns:
        raise InvalidDataError(
            f"{cohort.root}: the regions table has no 'network' column, which the "
            "'network-mean' read-out needs; add one (e.g. the A424 networks from fmtc's atlas) "
            "or set brainlm.readout to 'cls' or 'mean'")
    names = cohort.regions["network"].astype(str)
    return np.array(names.map({n: k for k, n in enumerate(sorted(names.unique()))}),
                    dtype=np.int64)


def token_readout(latent: torch.Tensor, readout: str,
                  groups: np.ndarray | None = None) -> torch.Tensor:
    """The TS feature of each window from the encoder's output in ROI-major token order.

    Parameters
    ----------
    latent : Tensor, shape (B, 1 + R * P, H)
        CLS followed by the ``P`` patch tokens of each of ``R`` regions, after the final
        LayerNorm (``BrainLM.vit`` without masking, tokens unshuffled).
    readout : {"cls", "mean", "network-mean"}
    groups : ndarray of shape (R,), optional
        Network number of each region, required for ``network-mean``.

    Returns
    -------
    Tensor, shape (B, H) or (B, H * n_networks)
    """
    if readout == "cls":
        return latent[:, 0]
    tokens = latent[:, 1:]
    if readout == "mean":
        return tokens.mean(1)
    if readout != "network-mean" or groups is None:
        raise ValueError(f"unknown read-out {readout!r} (or network-mean without groups)")
    regions = len(groups)
    per_region = tokens.reshape(len(tokens), regions, -1, tokens.shape[-1]).mean(2)
    index = torch.as_tensor(groups, device=latent.device)
    return torch.cat([per_region[:, index == g].mean(1) for g in range(int(groups.max()) + 1)],
                     dim=1)
