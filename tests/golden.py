"""Golden values: each kind of result computed on a tiny, fully specified input.

``tests/test_golden.py`` compares what fmtc computes now with the values stored in
``tests/golden/<kind>.json`` for the version :mod:`fmtc.versions` declares. A change of code that
leaves results identical (to the stated tolerance) passes untouched and changes no identity; a
change that alters a kind's results fails until its version is bumped and its golden values are
regenerated::

    python tests/golden.py --regenerate fit        # one kind
    python tests/golden.py --regenerate all

Every input is explicit here (no profile of the plan is read), so that editing a profile never
moves a golden value. Each kind depends on as little else as possible: fits are computed on
synthetic arrays, a run's tables from fixed fit records, so that a change of the simulator does
not ask for new fit or run values.

Tolerances: bytes are not portable for floating-point results (other CPUs' kernels, BLAS and
thread counts change the last bits), so floats are compared with the tolerance of their kind
(:data:`TOLERANCE`), small enough that a change of algorithm (a learning rate, an epoch, a
constant, an initialisation) shows; integers, strings and labels are exact.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
KINDS = ("cohort", "encoder", "features", "fit", "run", "generalisation", "interpretation",
         "calibration")

TOLERANCE: dict[str, tuple[float, float]] = {
    # (rtol, atol)
    "cohort": (1e-6, 1e-9),           # numpy draws and a few float64 operations
    "encoder": (1e-3, 1e-5),          # a few AdamW steps of a tiny BrainLM in float32
    "features": (1e-4, 1e-6),         # one float32 forward pass
    # Torch training amplifies rounding, the more so when it is ill-conditioned. At a learning
    # rate of 5e-3 (losses of 3 to 9: diverging) an AVX2-only CPU moved the values stored on
    # another CPU by 77x the old tolerance (1e-3, 1e-3), training losses by up to 0.16: AdamW's
    # first steps are lr * sign(gradient), and other kernels flip the sign of tiny gradients;
    # torch's native convolution instead of oneDNN's moved them by 84x, as much. At the learning
    # rate used here (FIT_LR, the paper's 5e-4) that swap (another algorithm and summation
    # order) moves probabilities by up to 0.006 and losses by 2e-4, 0.43x and
    # 0.02x this tolerance, while a learning rate 10% higher or lower moves them by 11x or 3x it,
    # and a change of architecture or initialisation by more (`--spread` measures the first).
    "fit": (1e-2, 1e-2),
    "run": (1e-9, 1e-12),             # float64 arithmetic on fixed predictions
    "generalisation": (1e-6, 1e-9),   # L-BFGS logistic fits
    # Integrated gradients through a given (untrained) model: the native convolution instead of
    # oneDNN's moves the FC region scores (mean |score| 0.011) by up to 1.2e-4, as the AVX2 CPU
    # did; one more integration step (9 instead of 8) moves them by up to 0.01.
    "interpretation": (1e-3, 1e-3),
    # Kernels are float32 products over 89,676 edges; Newton logistic fits in float64; the
    # coverage counts and quantiles are then exact unless a probability crosses 0.5.
    "calibration": (1e-4, 1e-6),
}


def golden_dir() -> Path:
    """Where the golden files are (``FMTC_GOLDEN_DIR`` overrides ``tests/golden``)."""
    return Path(os.environ.get("FMTC_GOLDEN_DIR", HERE / "golden"))


def threads() -> int:
    """Torch / BLAS threads of the computations (``FMTC_GOLDEN_THREADS``, default 1).

    Computing every kind with 2 threads instead of 1 changes the order of floating-point
    reductions the way another CPU's kernels do: ``python tests/golden.py --spread`` measures
    that difference against each tolerance.
    """
    return int(os.environ.get("FMTC_GOLDEN_THREADS", "1"))


def _executor() -> Any:
    from fmtc.execution import Executor

    return Executor(threads_per_worker=threads())


# --------------------------------------------------------------------------- explicit settings


def _plan(root: Path) -> Any:
    """A plan with every setting a golden value depends on given explicitly."""
    from fmtc.plan import Plan

    tiny_brainlm = {"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                    "intermediate_size": 16, "decoder_hidden_size": 8,
                    "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
                    "decoder_intermediate_size": 16}
    return Plan(profile="golden", root=str(root)).replace(
        seed=0, device="cpu",
        windows={"length": 40, "stride": 20, "max_windows": 2},
        connectivity={"kind": "pearson", "pool_size": None},
        brainlm={"source": "random-init", "readout": "cls", "token_order": "identity",
                 "batch_size": 4, "n_shuffles": 2},
        pretrain={"architecture": tiny_brainlm, "n_subjects": 6, "n_volumes": 60, "epochs": 2,
                  "batch_size": 4, "lr": 3e-3, "warmup_fraction": 0.1, "weight_decay": 0.05,
                  "mask_ratio": 0.5, "masking": "random", "regions_per_window": None,
                  "probe_points": 0, "seed": 0},
        train={"epochs": 2, "batch_size": 8, "lr": 5e-3, "weight_decay": 0.01,
               "class_weights": False, "aux_weight": 1.0},
        logistic={"c_grid": [0.1, 1.0], "inner_folds": 2},
        evaluation={"folds": 3, "repeats": 1, "selection": "honest", "honest_epoch": "last",
                    "inner_validation_fraction": 0.2, "permutations": 20, "bootstrap": 50},
        protocol={"zero_grad": "per_batch", "eval_crops": "all_windows",
                  "input_scaling": "robust", "cv": "stratified_repeated"},
        execution={"n_jobs": 1, "threads_per_worker": threads()},
        outputs={name: str(root / name) for name in (
            "data_dir", "cohorts_dir", "features_dir", "models_dir", "fits_dir", "runs_dir")})


def _synthetic(n: int = 18, regions: int = 16, hidden: int = 8, windows: int = 3,
               seed: int = 0) -> Any:
    from fmtc.predict.data import ExperimentData

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    noise = rng.standard_normal((n, regions, regions))
    fc = (noise + noise.transpose(0, 2, 1)) / 2
    fc[:, :4, :4] += 1.5 * labels[:, None, None]
    fc[:, np.arange(regions), np.arange(regions)] = 1.0
    n_windows = rng.integers(2, windows + 1, n)
    cls = rng.standard_normal((n, windows, hidden))
    cls[:, :, :2] += 1.5 * labels[:, None, None]
    cls[np.arange(windows)[None, :] >= n_windows[:, None]] = np.nan
    return ExperimentData([f"sub-{i + 1:02d}" for i in range(n)], labels, fc.astype(np.float32),
                          cls.astype(np.float32), n_windows)


def _arms(plan: Any, models: list[str]) -> list[Any]:
    import torch

    from fmtc.pipeline import resolve_arms
    from fmtc.plan import ArmPlan

    arms, _ = resolve_arms(plan, {m: ArmPlan(model=m) for m in models}, torch.device("cpu"))
    return [dataclasses.replace(a, data="default") for a in arms]


def _tiny_cohort(root: Path) -> Path:
    sys.path.insert(0, str(HERE))
    from tiny_cohorts import write_tiny_cohort

    folder = root / "tiny-cohort"
    if not folder.is_dir():  # 64 regions: 64 x 64 connectivity images (see TOLERANCE)
        write_tiny_cohort(folder, [220] * 12, regions=64, seed=4)
    return folder


def _load(folder: Path) -> Any:
    from fmtc.cohort.folder import load_cohort

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_cohort(folder)


def _round(values: Any) -> Any:
    return np.asarray(values, dtype=np.float64).round(12).tolist()


# --------------------------------------------------------------------------- one kind each


def cohort_values(root: Path) -> dict[str, Any]:
    """A simulated cohort: labels, drug arms, planted regions, a corner of one recording."""
    from fmtc.lifecycle import Store
    from fmtc.plan import SimulationPlan
    from fmtc.simulate.embedded import simulated_cohort

    settings = SimulationPlan(n_subjects=8, n_volumes=40, tr=2.5, effect_size=1.0,
                              fc_effect=1.0, ts_effect=1.0, seed=3, n_studies=2,
                              study_shift=0.5, covariate_effect=0.5)
    cohort = _load(simulated_cohort(settings, Store.under(root / "cohort")))
    first = cohort.timeseries[cohort.subject_ids[0]]
    return {"labels": [int(v) for v in cohort.labels],
            "drug": cohort.participants["Drug"].astype(str).tolist(),
            "mean_fd": _round(cohort.participants["mean_fd"]),
            "fc_regions": sorted(int(r) for r in cohort.ground_truth["fc_regions"])[:8],
            "ts_regions": sorted(int(r) for r in cohort.ground_truth["ts_regions"])[:8],
            "series": _round(first[:3, :5])}


def encoder_values(root: Path) -> dict[str, Any]:
    """A tiny BrainLM pretrained on a tiny cohort: its losses and a few of its weights."""
    import torch

    from fmtc.lifecycle import Store, materialise
    from fmtc.represent.encoder import PretrainedEncoder
    from fmtc.represent.loading import load_brainlm

    plan = _plan(root)
    encoder = PretrainedEncoder(plan.pretrain, plan.windows, Store.under(root / "encoder"),
                                _tiny_cohort(root), device=torch.device("cpu"))
    folder = materialise(encoder).folder
    log = json.loads((folder / "training_log.json").read_text())
    state = load_brainlm(folder).state_dict()
    picks = {name: _round(state[name].flatten()[:6]) for name in sorted(state)[:: max(
        1, len(state) // 4)][:4]}
    return {"train_loss": _round([e["train_loss"] for e in log["epochs"]]),
            "held_out": _round([log["held_out"]["loss"][k] for k in sorted(
                log["held_out"]["loss"])]),
            "weights": picks}


def features_values(root: Path) -> dict[str, Any]:
    """TS features of a tiny cohort from the random-init encoder: cls and network-mean."""
    from fmtc.pipeline import encoder_spec, feature_settings
    from fmtc.represent.features import cohort_features

    plan = _plan(root / "features")
    cohort = _load(_tiny_cohort(root))
    out = {}
    for readout, order in (("cls", "identity"), ("network-mean", "shuffle-mean")):
        p = plan.replace(brainlm={"readout": readout, "token_order": order})
        found = cohort_features(cohort, feature_settings(p), encoder_spec(p))
        out[f"{readout}/{order}"] = {"shape": list(found.cls.shape),
                                     "n_windows": [int(v) for v in found.n_windows],
                                     "first": _round(found.cls[0, 0, :8]),
                                     "last": _round(found.cls[-1, 1, -8:])}
    return out


FIT_LR = 5e-4
"""The fits' learning rate: well-conditioned training, so that other kernels move it little."""


def fit_values(root: Path) -> dict[str, Any]:
    """Every built-in model fitted on synthetic arrays: test probabilities, training losses."""
    from fmtc.evaluate.protocol import cross_validate

    plan = _plan(root).replace(train={"lr": FIT_LR})
    data = _synthetic(n=24, regions=64)
    models = ["fmmtc", "ts", "fc", "fc-logreg", "cls-logreg"]
    result = cross_validate(data, _arms(plan, models), plan.evaluation, plan.seed,
                            ("honest", "paper"), fits=root / "fits", executor=_executor())
    out: dict[str, Any] = {}
    for selection, table in result.predictions.items():
        for model in models:
            part = table[table["arm"] == model].sort_values("participant_id")
            out[f"{model}/{selection}"] = _round(part["probability"])
    trajectories = result.trajectories.sort_values(["arm", "fold", "epoch"])
    for arm, part in trajectories.groupby("arm"):
        out[f"{arm}/train_loss"] = _round(part["train_loss"])
    epochs = result.models["fmmtc"]["selected_epochs"]
    out["fmmtc/epochs"] = [[e["honest"], e["paper"]] for e in epochs]
    return out


def run_values(root: Path) -> dict[str, Any]:
    """A run's tables from fixed fit records: metrics, summary intervals, paired contrasts."""
    from fmtc.evaluate.fits import FitRecord
    from fmtc.evaluate.paired import paired_differences
    from fmtc.evaluate.protocol import CrossValidation, summarise

    plan = _plan(root).replace(evaluation={"repeats": 2})
    data = _synthetic(n=24, seed=1)
    cv = CrossValidation(data, _arms(plan, ["fc-logreg", "cls-logreg"]), plan.evaluation,
                         plan.seed)
    rng = np.random.default_rng(7)
    labels = np.asarray(data.labels)
    records = []
    for task in cv.tasks:
        test = np.asarray(task.split.test)
        signal = 0.35 if task.arm.name == "fc-logreg" else 0.1
        probs = np.clip(0.5 + signal * (labels[test] - 0.5) * 2
                        + 0.2 * rng.standard_normal(len(test)), 0.01, 0.99)
        records.append(FitRecord(test, probs))
    result = cv.assemble(records)
    summary = summarise(result, plan.evaluation, plan.seed, data.subject_ids)
    contrasts = paired_differences(result.predictions["honest"], [("fc-logreg", "cls-logreg")],
                                   data.subject_ids, metric="mcc",
                                   n_bootstrap=plan.evaluation.bootstrap,
                                   n_permutations=plan.evaluation.permutations, seed=plan.seed)
    pooled = result.metrics[result.metrics["fold"] == "pooled"]
    columns = ["mean", "repeat_low", "repeat_high", "bootstrap_low", "bootstrap_high", "p_value"]
    return {"pooled": {f"{r.arm}/{r.metric}/{r.repeat}": r.value
                       for r in pooled.itertuples()},
            "summary": {f"{r['arm']}/{r['metric']}": _round([r[c] for c in columns])
                        for _, r in summary.iterrows() if r["metric"] in ("mcc", "auc")},
            "contrast": _round(contrasts.iloc[0][["difference", "low", "high", "p_value"]]
                               .astype(float))}


def generalisation_values(root: Path) -> dict[str, Any]:
    """Drug-arm transfer of a logistic baseline on synthetic arrays."""
    from fmtc.evaluate.generalisation import generalise

    plan = _plan(root)
    data = _synthetic(n=40, seed=2)
    groups = {"drug": ["a" if i % 2 else "b" for i in range(40)]}
    table = generalise(data, _arms(plan, ["fc-logreg"]), groups, plan.evaluation, plan.seed,
                       fits=root / "fits", executor=_executor())
    columns = ["mcc", "auc", "mcc_low", "mcc_high", "within_mcc", "drop_mcc"]
    return {f"{r['kind']}/{r['train_on']}->{r['test_on']}":
            _round(np.nan_to_num([r[c] for c in columns], nan=-9.0))
            for _, r in table.iterrows()}


def interpretation_values(root: Path) -> dict[str, Any]:
    """Integrated gradients of a tiny FMM_TC run: region scores and the TS share."""
    import torch

    from fmtc.interpret.settings import IGSettings
    from fmtc.pipeline import evaluate, interpret_run

    # The models are all but untrained (one step of a tiny learning rate): what is pinned is the
    # attribution of a given model, not the training (the fit's golden values pin that).
    plan = _plan(root / "interpretation").replace(train={"epochs": 1, "lr": 1e-7})
    cohort = _load(_tiny_cohort(root))
    run = evaluate(plan, ["fmmtc"], cohort=cohort, device=torch.device("cpu"),
                   keep_weights=True)
    found = interpret_run(run.run_dir, settings=IGSettings(n_steps=8, ts_steps=4,
                                                           ts_subjects=1,
                                                           internal_batch_size=8),
                          device=torch.device("cpu"))
    regions = found.tables["regions"]
    subjects = found.tables["subjects"]
    out = {}
    for modality in ("fc", "ts"):
        part = regions[regions["modality"] == modality].sort_values("index")
        out[modality] = _round(part["score"])
    out["ts_share"] = _round(subjects.sort_values("participant_id")["ts_share"])
    return out


def calibration_values(root: Path) -> dict[str, Any]:
    """The inference calibration on three tiny pools (two to choose on): truths, the choice,
    coverage and error."""
    from fmtc.evaluate.calibration import CalibrationSettings, CalibrationStudy
    from fmtc.lifecycle import Store, materialise
    from fmtc.plan import SimulationPlan

    pools = [SimulationPlan(n_subjects=40, n_volumes=120, tr=2.5, effect_size=3.0, seed=seed)
             for seed in (1, 2, 3)]
    settings = CalibrationSettings(n_subjects=10, folds=2, repeats=1, bootstrap=(50,),
                                   nominal=(0.95, 0.99), permutations=20, replicates=3,
                                   null_replicates=3, choice_replicates=3, truth_draws=2)
    found = materialise(CalibrationStudy(settings, tuple(pools[:2]), pools[2],
                                         Store.under(root / "calibration")))
    value = found.value
    return {"truth": _round(value.truth["truth"]), "choice": value.choice,
            **{f"{name}/{column}": _round(getattr(value, name)[column])
               for name in ("choice_summary", "fresh_summary")
               for column in ("coverage", "fwe", "width")}}


COMPUTE: dict[str, Callable[[Path], dict[str, Any]]] = {
    "cohort": cohort_values, "encoder": encoder_values, "features": features_values,
    "fit": fit_values, "run": run_values, "generalisation": generalisation_values,
    "interpretation": interpretation_values, "calibration": calibration_values}


def compute(kind: str, root: Path) -> dict[str, Any]:
    """The golden values of ``kind`` computed now, with :func:`threads` torch threads."""
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(threads())
    try:
        with threadpool_limits(threads()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return COMPUTE[kind](root)
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- files


def stored(kind: str) -> dict[str, Any] | None:
    """The golden file of ``kind`` (None when there is none)."""
    path = golden_dir() / f"{kind}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def regenerate(kinds: list[str], root: Path | None = None) -> None:
    """Compute ``kinds`` and write their golden files for the versions now declared."""
    from fmtc.versions import VERSIONS

    golden_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(root or scratch)
        for kind in kinds:
            values = compute(kind, base / kind)
            document = {"kind": kind, "version": VERSIONS[kind],
                        "tolerance": {"rtol": TOLERANCE[kind][0], "atol": TOLERANCE[kind][1]},
                        "values": values}
            path = golden_dir() / f"{kind}.json"
            path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
            print(f"wrote {path} (version {VERSIONS[kind]})")


def compare(expected: Any, found: Any, rtol: float, atol: float, where: str = "") -> list[str]:
    """Where ``found`` differs from ``expected`` (floats within the tolerance are equal)."""
    if isinstance(expected, dict):
        if not isinstance(found, dict) or set(expected) != set(found):
            return [f"{where}: keys {sorted(expected)} != "
                    f"{sorted(found) if isinstance(found, dict) else found!r}"]
        return [d for k in sorted(expected) for d in compare(expected[k], found[k], rtol, atol,
                                                            f"{where}/{k}")]
    if isinstance(expected, list) and expected and all(
            isinstance(v, float) or isinstance(v, int) and not isinstance(v, bool)
            for v in np.ravel(np.asarray(expected, dtype=object))):
        a = np.asarray(expected, dtype=np.float64)
        b = np.asarray(found, dtype=np.float64)
        if a.shape != b.shape:
            return [f"{where}: shape {a.shape} != {b.shape}"]
        if not np.allclose(b, a, rtol=rtol, atol=atol, equal_nan=True):
            worst = float(np.nanmax(np.abs(b - a)))
            return [f"{where}: max |difference| {worst:.3g} over rtol {rtol:g} / atol {atol:g}"]
        return []
    if isinstance(expected, float) and isinstance(found, float | int):
        return ([] if np.isclose(found, expected, rtol=rtol, atol=atol, equal_nan=True)
                else [f"{where}: {found!r} != {expected!r}"])
    return [] if expected == found else [f"{where}: {found!r} != {expected!r}"]


def spread(kinds: list[str]) -> None:
    """Print, per kind, how far values computed with other kernels lie from the usual ones,
    against the tolerance: 2 threads instead of 1 (another order of the reductions), and
    torch's native convolution instead of oneDNN's (another algorithm, as another CPU's kernels
    or harsher). Below 1: portable."""
    import torch

    with tempfile.TemporaryDirectory() as scratch:
        for kind in kinds:
            rtol, atol = TOLERANCE[kind]
            usual = compute(kind, Path(scratch) / f"{kind}-usual")
            os.environ["FMTC_GOLDEN_THREADS"] = "2"
            two = compute(kind, Path(scratch) / f"{kind}-2")
            os.environ.pop("FMTC_GOLDEN_THREADS", None)
            previous = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False
            try:
                native = compute(kind, Path(scratch) / f"{kind}-native")
            finally:
                torch.backends.mkldnn.enabled = previous
            print(f"{kind}: worst |difference| / allowed = "
                  f"{_worst(usual, two, rtol, atol):.3g} (2 threads), "
                  f"{_worst(usual, native, rtol, atol):.3g} (native convolution)")


def _worst(a: Any, b: Any, rtol: float, atol: float) -> float:
    """The largest ``|a - b| / (atol + rtol |a|)`` over the numbers of ``a`` and ``b``."""
    if isinstance(a, dict):
        return max((_worst(a[k], b[k], rtol, atol) for k in a), default=0.0)
    if isinstance(a, list | float | int) and not isinstance(a, bool):
        try:
            x = np.asarray(a, dtype=np.float64)
            y = np.asarray(b, dtype=np.float64)
        except (TypeError, ValueError):
            return 0.0
        if x.shape != y.shape or x.size == 0:
            return 0.0
        return float(np.nanmax(np.abs(x - y) / (atol + rtol * np.abs(x))))
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--regenerate", nargs="+", metavar="KIND",
                        help=f"kinds to regenerate ({', '.join(KINDS)}, or all)")
    action.add_argument("--spread", nargs="+", metavar="KIND",
                        help="measure each kind's difference under other kernels (2 threads, "
                             "native convolution) against its tolerance (below 1: portable)")
    args = parser.parse_args(argv)
    chosen = args.regenerate or args.spread
    kinds = list(KINDS) if chosen == ["all"] else chosen
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kind(s) {unknown}; known: {', '.join(KINDS)}")
    if args.regenerate:
        regenerate(kinds)
    else:
        spread(kinds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
