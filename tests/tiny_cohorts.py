"""A tiny labelled cohort folder over a few regions: fast to encode, connect and validate."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fmtc.cohort.folder import (
    Cohort,
    load_cohort,
    write_description,
    write_participants,
    write_regions,
    write_timeseries,
)


def write_tiny_cohort(root: Path, lengths: Sequence[int], regions: int = 12, seed: int = 0,
                      random_walk: bool = True) -> Path:
    """Write ``len(lengths)`` subjects (alternating labels) with random series of those lengths.

    Parameters
    ----------
    root : Path
        Cohort folder to write.
    lengths : sequence of int
        Volumes of each subject's series.
    regions : int
        Regions of the made-up ``TINY`` atlas (two alternating networks).
    seed : int
        Seed of coordinates and series.
    random_walk : bool
        Cumulative sums (smooth, BrainLM-friendly) instead of white noise.
    """
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"index": np.arange(1, regions + 1),
                          "name": [f"R{i}" for i in range(regions)],
                          "x": rng.uniform(-60, 60, regions),
                          "y": rng.uniform(-90, 60, regions),
                          "z": rng.uniform(-30, 70, regions),
                          "network": ["A", "B"] * (regions // 2)})
    ids = [f"sub-{i + 1:02d}" for i in range(len(lengths))]
    write_description(root, "tiny", "TINY", label_column="label")
    write_regions(root, "TINY", table)
    write_participants(root, pd.DataFrame({"participant_id": ids,
                                           "label": np.arange(len(ids)) % 2}))
    for pid, length in zip(ids, lengths, strict=True):
        series = rng.standard_normal((length, regions))
        write_timeseries(root, pid, "TINY", series.cumsum(0) if random_walk else series,
                         table["index"], 2.5)
    return root


def load_quietly(root: Path) -> Cohort:
    """Load a cohort without the short-series warnings that some tests provoke on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_cohort(root)
