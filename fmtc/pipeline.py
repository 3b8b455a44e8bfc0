"""The pipeline layer: the one place that reads the plan and calls the stages.

acquire -> preprocess -> cohort -> represent -> predict -> evaluate -> interpret -> report. The
command line and the notebooks call the functions here with a :class:`~fmtc.plan.Plan`; they
resolve the plan into each stage's own settings (a :class:`~fmtc.lifecycle.Store`, an
:class:`~fmtc.represent.encoder.EncoderSpec`, :class:`~fmtc.represent.features.FeatureSettings`,
arms, an evaluation section, an executor) and compose the results of :mod:`fmtc.lifecycle`:
cohorts, encoders, features, fits, runs, generalisations and interpretations are each read back
when published and computed otherwise.

:func:`run_experiments` runs any number of experiments with one executor pool: the fits none of
them has published are computed together, so no worker waits for another experiment's last fit
(simulation sweeps, replicates, a page's experiments). :func:`run_experiment` and
:func:`evaluate` run one; :func:`run_generalisation` the drug / study / cross-cohort transfer;
:func:`interpret_run` attributes a finished run's fold models (``fmtc interpret``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmtc.cohort.folder import Cohort, load_cohort
from fmtc.cohort.participants import participant_groups
from fmtc.evaluate.fits import Arm, run_fits
from fmtc.evaluate.runs import ExperimentRun, ExperimentRunResult, GeneralisationRun
from fmtc.evaluate.splits import check_class_counts
from fmtc.execution import Executor
from fmtc.lifecycle import check_writable, find, materialise
from fmtc.plan import ArmPlan, ExperimentPlan, Plan, PlanError
from fmtc.predict.data import gather_datasets
from fmtc.predict.registry import check_models
from fmtc.resolve import (  # noqa: F401 - the plan's settings, resolved (public here too)
    _arm_plan,
    calibration_settings,
    cohort_path,
    cohort_record,
    encoder_spec,
    encoders_of,
    executor_for,
    feature_settings,
    knowledge_control,
    model_params,
    plan_cohort,
    resolve_arms,
    resolve_device_of,
    store_for,
)

logger = logging.getLogger(__name__)

__all__ = ["ExperimentRequest", "ExperimentRun", "GeneralisationRun", "Sweep", "cohort_path",
           "encoder_spec", "evaluate", "executor_for", "experiment_plan", "feature_settings",
           "gather_datasets", "interpret_run", "knowledge_control", "plan_cohort",
           "recalibration_requests", "resolve_arms", "run_calibration", "run_experiment",
           "run_experiments", "run_generalisation", "simulation_sweep", "store_for", "sweep"]


# --------------------------------------------------------------------------- experiments


@dataclass
class ExperimentRequest:
    """One experiment to run (see :func:`run_experiments`).

    Attributes
    ----------
    plan : Plan
    name : str
        The experiment (a key of the plan's ``experiments``) or ``evaluate_<models>``.
    arms : dict of str to ArmPlan
    selections : list of str
    contrasts : list of (str, str)
    cohort : Cohort, optional
        Default: the plan's cohort.
    out : path, optional
        Run folder. Default: ``<runs>/<name>_<profile>_<key>``.
    features : FeatureSet, optional
        Precomputed BrainLM features for every arm that reads them.
    permute_labels : bool
        Shuffle the labels once (seed ``plan.seed``) before anything: a null run.
    keep_logits : bool
        Store each prediction's two logits.
    keep_weights : list of str
        Arms whose fits keep their weights (for interpretation).
    overwrite : bool
        Replace ``out`` when it holds another run (and recompute an identical one).
    """

    plan: Plan
    name: str
    arms: dict[str, ArmPlan]
    selections: list[str]
    contrasts: list[tuple[str, str]] = field(default_factory=list)
    cohort: Cohort | None = None
    out: str | Path | None = None
    features: Any = None
    permute_labels: bool = False
    keep_logits: bool = False
    keep_weights: list[str] = field(default_factory=list)
    overwrite: bool = False
    where: str = "experiment"


def experiment_plan(plan: Plan, name: str) -> ExperimentPlan:
    """The experiment ``name`` of the plan; an unknown name lists the declared ones."""
    if name not in plan.experiments:
        raise PlanError(f"unknown experiment {name!r}; the plan's profile {plan.profile!r} "
                        f"declares: {', '.join(sorted(plan.experiments)) or 'none'}")
    return plan.experiments[name]


def experiment_request(plan: Plan, name: str, **options: Any) -> ExperimentRequest:
    """The request of the plan's experiment ``name`` (``options``: :class:`ExperimentRequest`)."""
    spec = experiment_plan(plan, name)
    keep = list(spec.keep_weights) + (list(spec.arms) if plan.evaluation.keep_weights else [])
    return ExperimentRequest(plan, name, spec.arms, list(spec.selections),
                             [tuple(c) for c in spec.contrasts], keep_logits=spec.logits,
                             keep_weights=keep, where=f"experiments.{name}", **options)


def evaluate_request(plan: Plan, models: Sequence[str], selections: Sequence[str] | None = None,
                     source: str | None = None, keep_weights: bool = False,
                     **options: Any) -> ExperimentRequest:
    """An ad-hoc experiment whose arms are ``models`` (``fmtc evaluate``)."""
    models = check_models(dict.fromkeys(models), "--model")
    if source is not None:
        plan = plan.replace(brainlm={"source": source})
    keep = models if keep_weights or plan.evaluation.keep_weights else []
    return ExperimentRequest(plan, "evaluate_" + "+".join(models),
                             {m: ArmPlan(model=m) for m in models},
                             list(selections or [plan.evaluation.selection]),
                             keep_weights=list(keep), where="evaluate", **options)


def _prepare(request: ExperimentRequest, device: Any, executor: Executor,
             progress: bool) -> ExperimentRunResult:
    """Resolve a request into its run result: arms, cohort, datasets, splits and fits."""
    from fmtc.evaluate.protocol import CrossValidation

    plan = request.plan
    start = time.perf_counter()
    store = store_for(plan)
    arms, requests = resolve_arms(plan, request.arms, device, request.where)
    cohort = request.cohort if request.cohort is not None else plan_cohort(plan, progress)
    check_class_counts(cohort.labels, plan.evaluation.folds, f"cohort {cohort.root}")
    datasets = gather_datasets(cohort, requests, device=device, features=request.features,
                               progress=progress)
    if request.permute_labels:
        shuffled = np.random.default_rng(plan.seed).permutation(np.asarray(cohort.labels))
        datasets = {k: dataclasses.replace(d, labels=shuffled) for k, d in datasets.items()}
    unknown = sorted(set(request.keep_weights) - set(request.arms))
    if unknown:
        raise PlanError(f"{request.where}.keep_weights: unknown arm(s) {unknown}")
    cv = CrossValidation(datasets, arms, plan.evaluation, plan.seed, request.selections,
                         plan.protocol.cv, request.keep_logits, frozenset(request.keep_weights))
    fits = cv.fits(store.fits, device=device.type, threads=executor.threads_per_worker)
    first = datasets[arms[0].data]
    fields = {"plan": plan.to_dict(), "encoder": next(iter(encoders_of(arms, datasets).values()),
                                                      None),
              "encoders": encoders_of(arms, datasets), "feature_cache": first.feature_cache,
              "connectivity": {"kind": plan.connectivity.kind,
                               "pool_size": plan.connectivity.pool_size},
              "device": _describe(device), "execution": executor.describe(),
              "timings": {"features_s": time.perf_counter() - start}}
    name = request.name + ("_permuted-labels" if request.permute_labels else "")
    return ExperimentRunResult(request.name, cv, fits, list(request.contrasts),
                               list(cohort.subject_ids), cohort_record(cohort), store.runs,
                               name, plan.profile, request.permute_labels, fields, executor,
                               progress or None)


def _describe(device: Any) -> dict[str, str]:
    from fmtc.device import describe_device

    return describe_device(device)


def run_experiments(requests: Sequence[ExperimentRequest], *, device: Any = None,
                    executor: Executor | None = None,
                    progress: bool = False) -> list[ExperimentRun]:
    """Run (or read back) every requested experiment, their fits in one executor pool.

    Every fit that no published run or fit already holds is computed in one batch on
    ``executor`` (default: the first request's plan's ``execution``); then each run's tables
    are written (:class:`~fmtc.evaluate.runs.ExperimentRunResult`). A run of ``N`` fits says so,
    with how many are read back, before any fit starts.
    """
    if not requests:
        return []
    plan = requests[0].plan
    device = resolve_device_of(plan, device)
    executor = executor or executor_for(plan)
    for request in requests:  # every output folder is checked before any work
        if request.out is not None:
            check_writable(Path(request.out).parent, "the run (--out)")
        else:
            check_writable(store_for(request.plan).runs,
                           "run folders (plan key outputs.runs_dir)")
    results = [_prepare(r, device, executor, progress) for r in requests]
    fits, needs, datasets, owners = [], [], {}, []
    for i, (request, result) in enumerate(zip(requests, results, strict=True)):
        if not request.overwrite and find(result, request.out) is not None:
            continue
        for fit, need in zip(result.fits, result.cv.needs(), strict=True):
            fits.append(dataclasses.replace(fit, dataset=f"{i}/{fit.dataset}"))
            needs.append(need)
            owners.append(i)
        datasets.update({f"{i}/{k}": d for k, d in result.cv.datasets.items()})
    if fits:
        if len(results) > 1:
            logger.info("%d experiments: %d fit(s) in one pool", len(results), len(fits))
        batch = run_fits(fits, datasets, need=needs, executor=executor,
                         progress=progress or None)
        for i, result in enumerate(results):  # what each run's own fits cost
            fresh = [f for f, o in zip(batch.computed_at, owners, strict=True) if o == i]
            result.provenance_fields["fits"] = {"total": len(result.fits),
                                                "computed": sum(fresh),
                                                "read_back": len(fresh) - sum(fresh)}
    out = []
    for request, result in zip(requests, results, strict=True):
        found = materialise(result, request.out, overwrite=request.overwrite)
        run = dataclasses.replace(found.value, reused=found.reused)
        logger.info("%s run folder %s", "reused" if run.reused else "wrote", run.run_dir)
        out.append(run)
    return out


def run_experiment(plan: Plan, name: str, *, device: Any = None,
                   executor: Executor | None = None, progress: bool = False,
                   **options: Any) -> ExperimentRun:
    """Run the plan's experiment ``name`` (or read it back); see :class:`ExperimentRequest`.

    ``options``: ``cohort``, ``out``, ``features``, ``permute_labels``, ``overwrite``.
    """
    request = experiment_request(plan, name, **options)
    return run_experiments([request], device=device, executor=executor, progress=progress)[0]


def evaluate(plan: Plan, models: Sequence[str], selections: Sequence[str] | None = None, *,
             source: str | None = None, keep_weights: bool = False, device: Any = None,
             executor: Executor | None = None, progress: bool = False,
             **options: Any) -> ExperimentRun:
    """An ad-hoc experiment whose arms are ``models`` (the engine of ``fmtc evaluate``).

    ``source`` overrides ``brainlm.source`` for every arm (the CLI's ``--brainlm``);
    ``selections`` default to ``[evaluation.selection]``; ``keep_weights`` keeps every torch
    fit's weights (``--keep-weights``). ``options`` as in :func:`run_experiment`.
    """
    request = evaluate_request(plan, models, selections, source, keep_weights, **options)
    return run_experiments([request], device=device, executor=executor, progress=progress)[0]


def recalibration_requests(plan: Plan, cohort: Cohort, run: ExperimentRun,
                           models: Sequence[str], folds: int = 3
                           ) -> dict[tuple[int, int], ExperimentRequest]:
    """Per outer ``(repeat, fold)`` of ``run``, an inner CV of ``models`` on its training subjects.

    What :func:`fmtc.evaluate.clinical.nested_recalibration` fits its maps on: ``folds``-fold
    CV, one repeat, within each outer fold's training subjects only (seeded by the outer
    fold), so no model behind a calibrator saw the fold it recalibrates.
    """
    inner = plan.replace(evaluation={"folds": folds, "repeats": 1}, experiments={
        "recalibration-inner": {"description": "inner CV of an outer fold's training subjects",
                                "arms": {m: {"model": m} for m in models}}})
    requests = {}
    for split in run.tables["splits"]["splits"]:
        key = (int(split["repeat"]), int(split["fold"]))
        train = [p for p in cohort.subject_ids if p not in set(split["test"])]
        subset = cohort.subset(train, f"training subjects of repeat {key[0]}, fold {key[1]}")
        requests[key] = experiment_request(inner.replace(seed=plan.seed + 1 + 100 * key[0]
                                                         + key[1]),
                                           "recalibration-inner", cohort=subset)
    return requests


@dataclass
class Sweep:
    """The experiment ``name`` on one simulated cohort per entry of ``settings``.

    ``settings`` are the ``simulation`` changes of ``plan``, one per cohort, and ``requests``
    one request per setting, in the same order: they can be run with a page's other
    experiments in one pool (:func:`run_experiments`); :meth:`table` reads the runs back into
    one table.
    """

    plan: Plan
    name: str
    settings: list[dict[str, Any]]
    requests: list[ExperimentRequest]

    def table(self, runs: Sequence[ExperimentRun], selection: str = "honest",
              metric: str = "mcc") -> Any:
        """One row per setting and arm: the setting's keys, ``arm``, ``model``, ``value`` (the
        mean over repeats of the pooled ``metric``), ``low``/``high`` (its 95% subject-bootstrap
        interval), ``run`` (the run folder's name)."""
        import pandas as pd

        spec = experiment_plan(self.plan, self.name)
        rows = []
        for changes, run in zip(self.settings, runs, strict=True):
            summary = run.summary
            for arm, arm_plan in spec.arms.items():
                row = summary[(summary["arm"] == arm) & (summary["selection"] == selection)
                              & (summary["metric"] == metric)]
                if row.empty:
                    raise PlanError(f"experiment {self.name!r} reports no {selection} {metric} "
                                    f"for arm {arm!r}")
                row = row.iloc[0]
                rows.append({**changes, "arm": arm, "model": arm_plan.model,
                             "value": float(row["mean"]), "low": float(row["bootstrap_low"]),
                             "high": float(row["bootstrap_high"]), "run": run.run_dir.name})
        return pd.DataFrame(rows)


def sweep(plan: Plan, name: str, settings: Sequence[dict[str, Any]],
          progress: bool = False) -> Sweep:
    """A :class:`Sweep`: each entry of ``settings`` changes the plan's ``simulation`` section
    (e.g. ``{"seed": 41, "effect_size": 3.0}`` or ``{"fc_effect": 0.0}``); every cohort is
    generated (or read back) like the embedded default. Every setting is checked first."""
    if plan.data.cohort != "simulated":
        raise PlanError(f"a simulation sweep needs data.cohort: simulated, not "
                        f"{plan.data.cohort!r}")
    experiment_plan(plan, name)
    plans = []
    for changes in settings:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(plan.simulation)})
        if unknown:
            raise PlanError(f"simulation sweep: unknown simulation key(s) {unknown}")
        plans.append(plan.replace(simulation=dict(changes)))
    requests = [experiment_request(p, name, cohort=plan_cohort(p, progress)) for p in plans]
    return Sweep(plan, name, [dict(c) for c in settings], requests)


def simulation_sweep(plan: Plan, name: str, settings: Sequence[dict[str, Any]], *,
                     selection: str = "honest", metric: str = "mcc",
                     progress: bool = False) -> Any:
    """Run the experiment ``name`` on one simulated cohort per entry of ``settings`` (all fits
    in one executor pool) and return :meth:`Sweep.table`."""
    found = sweep(plan, name, settings, progress)
    return found.table(run_experiments(found.requests, progress=progress), selection, metric)


# --------------------------------------------------------------------------- generalisation


def run_generalisation(plan: Plan, models: Sequence[str],
                       schemes: Sequence[str] = ("drug", "study"), *,
                       cohort: Cohort | None = None, test_cohort: Cohort | None = None,
                       test_simulation: dict[str, Any] | None = None,
                       out: str | Path | None = None, device: Any = None,
                       features: Any = None, test_features: Any = None,
                       executor: Executor | None = None, overwrite: bool = False,
                       progress: bool = False) -> GeneralisationRun:
    """Drug-, study- and cohort-level generalisation of ``models`` (``fmtc generalise``).

    ``cross-cohort`` trains on the plan's cohort and tests on ``test_cohort``, or on the
    simulated cohort of ``simulation`` changed by ``test_simulation`` (e.g. ``{"seed": 1,
    "study_shift": 1.0}``). The run folder (``<runs>/generalise_<models>_<profile>_<key>``)
    holds ``generalisation.csv``, ``confounds.csv`` and ``predictions.csv``.
    """
    from fmtc.evaluate.generalisation import SCHEMES
    from fmtc.evaluate.runs import GeneralisationResult

    schemes = list(dict.fromkeys(schemes))
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown or not schemes:
        raise PlanError(f"unknown generalisation scheme(s) {unknown or '(none given)'}; "
                        f"choose from {', '.join(SCHEMES)}")
    if "cross-cohort" in schemes and test_cohort is None and test_simulation is None:
        raise PlanError("scheme 'cross-cohort' needs a test cohort (test_cohort, or "
                        "test_simulation: simulation settings of a second simulated cohort)")
    models = check_models(dict.fromkeys(models), "--model")
    device = resolve_device_of(plan, device)
    executor = executor or executor_for(plan)
    arms, requests = resolve_arms(plan, {m: ArmPlan(model=m) for m in models}, device,
                                  "generalise")
    cohort = cohort if cohort is not None else plan_cohort(plan, progress)
    groups = {s: participant_groups(cohort, s) for s in schemes if s != "cross-cohort"}
    if "cross-cohort" in schemes and test_cohort is None:
        # Another cohort of the same population (its own subjects, the effects planted in the
        # same regions) unless the changes name another population.
        changes = {"population_seed": plan.simulation.population, **test_simulation}
        test_plan = plan.replace(simulation=changes)
        if test_plan.simulation.seed == plan.simulation.seed:
            raise PlanError(f"cross-cohort: the test cohort has the training cohort's seed "
                            f"{plan.simulation.seed}, so it would hold the same subjects; give it "
                            "another seed (test_simulation 'seed', fmtc generalise --test-seed)")
        test_cohort = load_cohort(cohort_path(test_plan.replace(data={"cohort": "simulated"}),
                                              progress=progress))
    if test_cohort is not None and test_cohort.content_hash == cohort.content_hash:
        raise PlanError(f"cross-cohort: the test cohort {test_cohort.root} is the training "
                        "cohort itself; give another cohort")
    datasets = gather_datasets(cohort, requests, device=device, features=features,
                               progress=progress)
    crossing = "cross-cohort" in schemes
    test_datasets = (gather_datasets(test_cohort, requests, device=device,
                                     features=test_features, progress=progress)
                     if crossing else None)
    store = store_for(plan)
    result = GeneralisationResult(
        arms, schemes, datasets, groups, test_datasets,
        (cohort.root.name, test_cohort.root.name) if crossing else ("A", "B"),
        plan.evaluation, plan.seed, cohort_record(cohort),
        cohort_record(test_cohort) | {"simulation_changes": test_simulation}
        if crossing else None, store.fits, store.runs, "generalise_" + "+".join(models),
        plan.profile, device.type,
        {"plan": plan.to_dict(), "device": _describe(device), "execution": executor.describe()},
        executor)
    found = materialise(result, out, overwrite=overwrite)
    logger.info("generalisation run folder %s", found.folder)
    return dataclasses.replace(found.value, reused=found.reused)


def run_calibration(plan: Plan, *, progress: bool = False) -> Any:
    """The inference calibration of the claims table (:mod:`fmtc.evaluate.calibration`)."""
    from fmtc.evaluate.calibration import CalibrationStudy

    settings, pools, fresh = calibration_settings(plan)
    study = CalibrationStudy(settings, pools, fresh, store_for(plan),
                             n_jobs=executor_for(plan).n_jobs, progress=progress)
    found = materialise(study)
    return dataclasses.replace(found.value, reused=found.reused)


# --------------------------------------------------------------------------- interpretation


def interpret_run(run_dir: str | Path, *, arms: Sequence[str] | None = None,
                  settings: Any = None, cohort: str | Path | None = None,
                  out: str | Path | None = None, device: Any = None, overwrite: bool = False,
                  figures: bool = True, progress: bool = False) -> Any:
    """Integrated gradients of every fold model of a run's interpretable arms.

    Rebuilds the run's plan (``provenance.json``), cohort, arms and fits, makes sure each
    fold's fit holds its weights (recomputing, with the same seed, a fit computed without
    them), and attributes each fold's test subjects with the fold's own model
    (:class:`fmtc.interpret.results.Interpretation`). The interpretation is published beside
    the run (``interpret_<run folder>_<key>``); the run itself is never modified.

    Parameters
    ----------
    run_dir : path-like
        A run folder of ``fmtc evaluate`` / ``fmtc experiment``.
    arms : sequence of str, optional
        Arms to attribute (default: every arm of an interpretable model).
    settings : IGSettings, optional
        Baseline, steps and subjects (``ts_subjects`` is every test subject on a GPU unless
        set).
    cohort : path-like, optional
        The cohort folder, when it is not where the run recorded it.
    out : path-like, optional
        Interpretation folder.
    device : torch.device, optional
        Default: the run plan's device setting.
    overwrite : bool
        Replace ``out`` when it holds another interpretation.
    figures : bool
        Also save the figures (PNG and SVG under ``figures/``); a page that draws its own
        passes False. Not part of the identity: an interpretation published without them is
        recomputed when they are asked for.
    """
    from fmtc.interpret.inputs import run_context
    from fmtc.interpret.results import Interpretation

    context = run_context(Path(run_dir), arms, cohort, device)
    plan = context.plan
    experiment = context.provenance.get("experiment")
    arm_plans = (plan.experiments[experiment].arms if experiment in plan.experiments
                 else {a: ArmPlan(model=m) for a, m in context.provenance["arms"].items()})
    request = ExperimentRequest(plan, experiment or "evaluate",
                                {a: arm_plans[a] for a in context.arms},
                                list(context.provenance["selections"]), cohort=context.cohort,
                                permute_labels=bool(context.models.get("label_permuted")),
                                keep_weights=list(context.arms), where="interpret")
    executor = executor_for(plan)
    result = _prepare(request, context.device, executor, progress)
    context.check_fits(result)
    batch = run_fits(result.fits, result.cv.datasets, need=result.cv.needs(),
                     executor=executor, progress=progress or None)
    interpretation = Interpretation(context, result.cv, batch.records,
                                    {a.data: _feature_plan(plan, a, request) for a in
                                     result.cv.arms}, settings, progress)
    found = materialise(interpretation, out, overwrite=overwrite,
                        need=("figures",) if figures else ())
    return dataclasses.replace(found.value, reused=found.reused)


def _feature_plan(plan: Plan, arm: Arm, request: ExperimentRequest) -> Any:
    """``(FeatureSettings, EncoderSpec, connectivity kind, input scaling)`` of an arm."""
    arm_plan = _arm_plan(plan, request.arms[arm.name], "interpret")
    return (feature_settings(arm_plan), encoder_spec(arm_plan), arm_plan.connectivity.kind,
            arm_plan.protocol.input_scaling)
