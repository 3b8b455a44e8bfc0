"""The compute device, chosen once at the top (CLI or notebook) and passed down.

CUDA runs matrix products in bf16 autocast; the CPU runs in float32. TF32 is
switched off so GPU results stay close to the CPU's.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Return ``cuda`` when asked for or available (``auto``), else ``cpu``.

    Parameters
    ----------
    name : {"auto", "cpu", "cuda"}
        The plan's ``device``.
    """
    import torch

    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; "
                         "use 'auto' or 'cpu'")
    use_cuda = name == "cuda" or (name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device("cuda" if use_cuda else "cpu")


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA; nothing on the CPU (float32 keeps CPU runs exact)."""
    import torch

    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- libraries may still draw from the legacy global RNG
    torch.manual_seed(seed)


def describe_device(device: torch.device) -> dict[str, str]:
    """Device facts for a run's provenance."""
    import torch

    facts = {"device": str(device), "torch": torch.__version__,
             "threads": str(torch.get_num_threads())}
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["cuda"] = str(torch.version.cuda)
    return facts
