"""The compute device, chosen once at the top (CLI or notebook) and passed down.

CUDA runs matrix products in bf16 autocast; the CPU runs in float32. TF32 is
switched off inside :func:`autocast` (and restored after) so GPU results stay close to
the CPU's. Nothing here changes global state when called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fmtc.errors import UsageError

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
        raise UsageError(f"plan key 'device': unknown device {name!r}; use auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("plan key 'device': 'cuda' was asked for but torch sees no CUDA GPU; "
                         "use 'auto' or 'cpu'")
    use_cuda = name == "cuda" or (name == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA with TF32 off; nothing on the CPU (float32 keeps CPU runs exact).

    The TF32 flags are global switches of torch: they are set for the block and restored
    afterwards, so the caller's settings are left as they were.
    """
    import torch

    if device.type != "cuda":
        yield
        return
    previous = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


def describe_device(device: torch.device) -> dict[str, str]:
    """Device facts for a run's provenance."""
    import torch

    facts = {"device": str(device), "torch": torch.__version__,
             "threads": str(torch.get_num_threads())}
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["cuda"] = str(torch.version.cuda)
    return facts
