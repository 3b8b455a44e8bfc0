"""How integrated gradients are computed: the settings of an interpretation (no torch).

Kept apart from :mod:`fmtc.interpret.analysis` so that reading or validating them (the
command line reads its defaults while it builds its parser) does not import torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fmtc.interpret.baselines import DEFAULT_BASELINE, check_baseline

CPU_TS_SUBJECTS = 4
"""TS-path subjects per fold on a CPU (one window each); all test subjects on a GPU."""


@dataclass(frozen=True)
class IGSettings:
    """How the attributions are computed (part of an interpretation's identity).

    Attributes
    ----------
    baseline : str
        :data:`fmtc.interpret.baselines.BASELINES`.
    n_steps : int
        Integration steps of the FC path and the fused representation.
    ts_steps : int
        Integration steps of the TS path (each is a BrainLM forward and backward pass).
    ts_subjects : int or None
        TS-path subjects per fold (None: every test subject; 0: no TS path).
    internal_batch_size : int
        Interpolated inputs per forward pass (FC path and fused representation); the TS path
        uses a quarter of it (at least 1).
    seed : int
        Seed of the ``time-shuffled`` baseline.
    """

    baseline: str = DEFAULT_BASELINE
    n_steps: int = 50
    ts_steps: int = 16
    ts_subjects: int | None = CPU_TS_SUBJECTS
    internal_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_baseline(self.baseline)
        if self.n_steps < 2 or self.ts_steps < 2:
            raise ValueError(f"n_steps and ts_steps must be at least 2, got {self.n_steps} "
                             f"and {self.ts_steps}")
        if self.ts_subjects is not None and self.ts_subjects < 0:
            raise ValueError(f"ts_subjects must be >= 0 or None, got {self.ts_subjects}")
        if self.internal_batch_size < 1:
            raise ValueError(f"internal_batch_size must be >= 1, got {self.internal_batch_size}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``interpretation.json``."""
        return asdict(self)
