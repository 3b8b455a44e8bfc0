"""Small synthetic experiment data and a tiny plan: fast cross-validation in tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from fmtc.evaluate.protocol import ExperimentData, cross_validate
from fmtc.execution import Executor
from fmtc.pipeline import resolve_arms
from fmtc.plan import ArmPlan, load_plan

CPU = torch.device("cpu")


def synthetic_data(n: int = 30, regions: int = 16, hidden: int = 8, windows: int = 3,
                   effect: float = 1.5, seed: int = 0) -> ExperimentData:
    """Balanced labels; FC block and two CLS features shifted by ``effect`` in class 1.

    CLS rows beyond each subject's 2 or 3 valid windows are NaN, as in a feature cache.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    noise = rng.standard_normal((n, regions, regions))
    fc = (noise + noise.transpose(0, 2, 1)) / 2
    fc[:, :4, :4] += effect * labels[:, None, None]
    fc[:, np.arange(regions), np.arange(regions)] = 1.0
    n_windows = rng.integers(2, windows + 1, n)
    cls = rng.standard_normal((n, windows, hidden))
    cls[:, :, :2] += effect * labels[:, None, None]
    cls[np.arange(windows)[None, :] >= n_windows[:, None]] = np.nan
    return ExperimentData([f"sub-{i + 1:02d}" for i in range(n)], labels, fc, cls, n_windows)


TINY_PLAN = load_plan("smoke").replace(
    evaluation={"folds": 3, "repeats": 1, "permutations": 20, "bootstrap": 50,
                "honest_epoch": "validation"},
    train={"epochs": 3, "batch_size": 16, "lr": 5e-3}, connectivity={"pool_size": 8},
    logistic={"c_grid": [0.1, 1.0], "inner_folds": 2})


def run_experiment(data: ExperimentData, plan, models, selections=("honest",), *,
                   fits: Path | None = None, keep_weights=(), executor: Executor | None = None):
    """Cross-validate ``models`` (one arm each, named after the model) on ``data``.

    With ``fits`` the fits are published there (``keep_weights``: arms keeping their weights);
    without, computed in memory.
    """
    arms, _ = resolve_arms(plan, {m: ArmPlan(model=m) for m in models}, CPU)
    arms = [dataclasses.replace(a, data="default") for a in arms]
    return cross_validate(data, arms, plan.evaluation, plan.seed, selections, executor=executor,
                          fits=fits, keep_weights=keep_weights)
