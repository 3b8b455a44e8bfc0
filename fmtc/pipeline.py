"""The pipeline layer: the one place that reads the plan and calls the stages.

acquire -> preprocess -> cohort -> represent -> predict -> evaluate -> report. The
command line and the notebooks call the functions here with a :class:`~fmtc.plan.Plan`;
they resolve the plan into explicit arguments (a cohort, datasets, arms, an evaluation
section, an executor, a run folder) and hand those to the stages, which never see the
plan as a whole for the experiment path.

:func:`run_experiment` runs a named experiment of the plan (``experiments:``);
:func:`evaluate` runs an ad-hoc one whose arms are models (``fmtc evaluate``). Both
write a run folder named by the run's identity (:mod:`fmtc.runs`) and read it back when
it already exists. :func:`interpret_run` attributes a finished run's fold models with
integrated gradients, from the plan recorded in its provenance (``fmtc interpret``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmtc import __version__
from fmtc.cohort.folder import Cohort, load_cohort
from fmtc.errors import InvalidDataError
from fmtc.evaluate.splits import check_class_counts
from fmtc.execution import Executor
from fmtc.plan import ArmPlan, ExperimentPlan, Plan, PlanError, build_section
from fmtc.predict.data import ExperimentData
from fmtc.predict.registry import ModelContext, check_models, get_model, model_names

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- cohort


def cohort_path(plan: Plan, progress: bool = False) -> Path:
    """The cohort folder of ``plan``: the embedded simulated cohort, or ``data.cohort``."""
    if plan.data.cohort == "simulated":
        from fmtc.simulate.embedded import embedded_cohort

        return embedded_cohort(plan, progress=progress)
    path = plan.path(plan.data.cohort)
    if not path.is_dir():
        raise InvalidDataError(
            f"cohort folder {path} (plan key data.cohort) does not exist; build it with "
            "`fmtc fetch ds000208 --out DIR` or `fmtc cohort from-fmriprep`, or use "
            "data.cohort: simulated")
    return path


def plan_cohort(plan: Plan, progress: bool = False) -> Cohort:
    """Load and validate the cohort of ``plan`` (``data.label`` picks the label column)."""
    return load_cohort(cohort_path(plan, progress=progress), label=plan.data.label)


# --------------------------------------------------------------------------- execution


def executor_for(plan: Plan) -> Executor:
    """The plan's ``execution`` section as an :class:`Executor`."""
    ex = plan.execution
    return Executor(n_jobs=ex.n_jobs, threads_per_worker=ex.threads_per_worker,
                    dask_scheduler=ex.dask_scheduler)


# --------------------------------------------------------------------------- arms and data


@dataclass(frozen=True)
class DataRequest:
    """The inputs one or more arms read: which connectivity and which BrainLM features."""

    fc_kind: str | None
    features: dict[str, Any] | None  # brainlm, windows, pretrain settings (None: no CLS)
    temporal: bool = False  # handcrafted temporal features
    # Protocol switches of the FC input: {"input_scaling": "none"}, {"fc_windows": <windows>}
    # (per-window FC, for eval_crops random or gram_raw_window); empty at the defaults.
    fc_options: dict[str, Any] = field(default_factory=dict)
    covariates: bool = False  # participants covariates

    @property
    def key(self) -> str:
        """A short stable name of this request."""
        payload = {"fc": self.fc_kind, "cls": self.features}
        if self.temporal:  # absent otherwise: keys of earlier requests are unchanged
            payload["temporal"] = True
        if self.fc_options:  # likewise
            payload["fc_options"] = self.fc_options
        if self.covariates:
            payload["covariates"] = True
        payload = json.dumps(payload, sort_keys=True)
        return "data-" + hashlib.sha256(payload.encode()).hexdigest()[:8]


def _arm_plan(plan: Plan, arm: ArmPlan, where: str) -> Plan:
    try:
        if arm.overrides:
            plan = plan.replace(**arm.overrides)
        if arm.encoder is not None:
            plan = plan.replace(brainlm={"source": arm.encoder})
    except PlanError as error:
        raise PlanError(f"{where}: {error}") from None
    return plan


def model_params(plan: Plan, model: str) -> Any:
    """The hyper-parameters of ``model`` from its plan section (validated)."""
    spec = get_model(model)
    section = spec.params_section
    if section.startswith("model_params."):
        return build_section(spec.params_type(), plan.model_params.get(model), section)
    value = getattr(plan, section, None)
    if value is None:
        raise PlanError(f"model {model!r} reads plan section {section!r}, which does not exist")
    return value


Requests = dict[str, tuple[Plan, DataRequest]]


def resolve_arms(plan: Plan, arms: dict[str, ArmPlan], device: Any,
                 where: str = "experiment") -> tuple[list[Any], Requests]:
    """Resolve each arm's model, hyper-parameters, model context and data request.

    Returns
    -------
    arms : list of Arm
    requests : dict of str to (Plan, DataRequest)
        Per data key, the arm plan that defines it and what it holds.
    """
    from fmtc.evaluate.protocol import Arm

    check_models([a.model for a in arms.values()], f"{where}.arms")
    unknown_params = sorted(set(plan.model_params) - set(model_names()))
    if unknown_params:
        raise PlanError(f"model_params: unknown model(s) {unknown_params}")
    resolved, requests = [], {}
    for name, arm in arms.items():
        arm_plan = _arm_plan(plan, arm, f"{where}.arms.{name}")
        spec = get_model(arm.model)
        request = DataRequest(
            fc_kind=arm_plan.connectivity.kind if "fc" in spec.inputs else None,
            features=_feature_settings(arm_plan) if "cls" in spec.inputs else None,
            temporal="temporal" in spec.inputs, covariates="covariates" in spec.inputs,
            fc_options=_fc_options(arm_plan, spec) if "fc" in spec.inputs else {})
        requests.setdefault(request.key, (arm_plan, request))
        context = ModelContext(device=device, pool_size=arm_plan.connectivity.pool_size,
                               fc_kind=arm_plan.connectivity.kind,
                               zero_grad=arm_plan.protocol.zero_grad,
                               eval_crops=arm_plan.protocol.eval_crops)
        resolved.append(Arm(name, arm.model, model_params(arm_plan, arm.model), context,
                            request.key, spec))
    return resolved, requests


def _fc_options(plan: Plan, spec: Any) -> dict[str, Any]:
    """The protocol switches that change an arm's FC input (empty at the defaults)."""
    options: dict[str, Any] = {}
    if plan.protocol.input_scaling != "robust":
        options["input_scaling"] = plan.protocol.input_scaling
    if plan.connectivity.kind == "gram_raw_window" or (
            spec.epochs and plan.protocol.eval_crops == "random"):
        options["fc_windows"] = dataclasses.asdict(plan.windows)
    return options


def _feature_settings(plan: Plan) -> dict[str, Any]:
    settings = {"brainlm": dataclasses.asdict(plan.brainlm),
                "windows": dataclasses.asdict(plan.windows)}
    if plan.protocol.input_scaling != "robust":  # absent at the default: keys unchanged
        settings["input_scaling"] = plan.protocol.input_scaling
    if plan.brainlm.source == "simulated-pretrained":
        settings["pretrain"] = dataclasses.asdict(plan.pretrain)
    elif plan.brainlm.source == "random-init":  # its weights follow from these two
        settings["pretrain"] = {"architecture": dataclasses.asdict(plan.pretrain.architecture),
                                "seed": plan.pretrain.seed}
    return settings


def cohort_connectivity(cohort: Cohort, kind: str, input_scaling: str = "robust",
                        windows: dict[str, int] | None = None) -> np.ndarray:
    """``[N, R, R]`` connectivity of every participant (scaled series, then ``kind``).

    ``input_scaling`` is ``protocol.input_scaling`` (``none``: the raw recording). ``kind:
    gram_raw_window`` is defined per window (:func:`cohort_window_connectivity`); its
    subject-level matrix, read only by models without per-window inputs (the FC logistic
    baseline), is the mean of the raw-crop Grams over the window set ``windows``.
    """
    from fmtc.preprocess.transforms import functional_connectivity, scale_input

    if kind == "gram_raw_window":
        return np.nanmean(cohort_window_connectivity(cohort, kind, windows or {}), axis=1)
    return np.stack([functional_connectivity(scale_input(cohort.timeseries[s], input_scaling),
                                             kind)
                     for s in cohort.subject_ids])


def cohort_window_connectivity(cohort: Cohort, kind: str, windows: dict[str, int],
                               input_scaling: str = "robust") -> np.ndarray:
    """``[N, W, R, R]`` connectivity of each window's crop (NaN beyond a subject's windows).

    See :func:`fmtc.preprocess.transforms.window_connectivity`; ``windows`` holds ``length``,
    ``stride`` and ``max_windows`` (default: the plan's defaults).
    """
    from fmtc.plan import WindowPlan
    from fmtc.preprocess.transforms import window_connectivity

    spec = dataclasses.replace(WindowPlan(), **windows)
    per_subject = [window_connectivity(cohort.timeseries[s], kind, spec.length, spec.stride,
                                       spec.max_windows, input_scaling)
                   for s in cohort.subject_ids]
    width = max(len(m) for m in per_subject)
    out = np.full((len(per_subject), width, *per_subject[0].shape[1:]), np.nan, dtype=np.float32)
    for i, matrices in enumerate(per_subject):
        out[i, :len(matrices)] = matrices
    return out


def _aligned_draws(features: Any, subject_ids: list[str]) -> np.ndarray | None:
    draws = getattr(features, "cls_draws", None)
    if draws is None:
        return None
    position = {s: i for i, s in enumerate(features.subject_ids)}
    return np.asarray(draws)[np.array([position[s] for s in subject_ids])]


def _aligned_features(features: Any, subject_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    position = {s: i for i, s in enumerate(features.subject_ids)}
    missing = [s for s in subject_ids if s not in position]
    if missing:
        raise ValueError(f"the feature cache {features.cache_path} lacks {len(missing)} subject(s) "
                         f"of the cohort (first: {missing[:3]}); delete it to rebuild it")
    order = np.array([position[s] for s in subject_ids])
    cls = np.asarray(features.cls)
    if cls.ndim != 3 or len(cls) != len(features.subject_ids):
        raise ValueError(f"feature cache {features.cache_path}: expected CLS [N, W, H], got "
                         f"{cls.shape}")
    return cls[order], np.asarray(features.n_windows)[order]


def gather_datasets(cohort: Cohort, requests: Requests, *,
                    device: Any = None, features: Any = None,
                    progress: bool = False) -> dict[str, ExperimentData]:
    """Compute (or read from the caches) the inputs of every data request.

    ``features`` (a precomputed :class:`~fmtc.represent.features.FeatureSet`) replaces the
    BrainLM features of every request that reads them (tests, notebooks).
    """
    settings = {json.dumps(r.features, sort_keys=True) for _, r in requests.values()
                if r.features is not None}
    if features is not None and len(settings) > 1:
        raise ValueError(f"precomputed features were given, but the arms read {len(settings)} "
                         "different BrainLM feature settings (encoders, windows or token "
                         "orders); pass features=None to compute each")
    connectivity: dict[Any, np.ndarray] = {}
    cls_cache: dict[str, Any] = {}
    temporal = covariates = None
    out = {}
    for key, (arm_plan, request) in requests.items():
        fc = fc_windows = None
        scaling = request.fc_options.get("input_scaling", "robust")
        spec = request.fc_options.get("fc_windows")
        if request.fc_kind is not None:
            tag = (request.fc_kind, scaling, json.dumps(spec, sort_keys=True)
                   if request.fc_kind == "gram_raw_window" else None)
            if tag not in connectivity:
                connectivity[tag] = cohort_connectivity(cohort, request.fc_kind, scaling, spec)
            fc = connectivity[tag]
            if spec is not None:
                tag = ("windows", request.fc_kind, scaling, json.dumps(spec, sort_keys=True))
                if tag not in connectivity:
                    connectivity[tag] = cohort_window_connectivity(cohort, request.fc_kind, spec,
                                                                   scaling)
                fc_windows = connectivity[tag]
        cls = n_windows = encoder = cache = draws = None
        if request.features is not None:
            tag = json.dumps(request.features, sort_keys=True)
            if tag not in cls_cache:
                found = features
                if found is None:
                    from fmtc.represent.features import cohort_features

                    found = cohort_features(cohort, arm_plan, device=device, progress=progress)
                cls_cache[tag] = found
            found = cls_cache[tag]
            cls, n_windows = _aligned_features(found, cohort.subject_ids)
            draws = _aligned_draws(found, cohort.subject_ids)
            encoder, cache = dict(found.encoder), Path(found.cache_path).name
        if fc_windows is not None and n_windows is None:
            n_windows = np.sum(np.isfinite(fc_windows[:, :, 0, 0]), axis=1).astype(np.int64)
        if request.temporal and temporal is None:
            from fmtc.represent.temporal import cohort_temporal_features

            temporal = cohort_temporal_features(cohort)
        if request.covariates and covariates is None:
            from fmtc.cohort.participants import covariate_design

            covariates = covariate_design(cohort.participants, f"cohort {cohort.root}")
        values, names = covariates if request.covariates else (None, None)
        out[key] = ExperimentData(list(cohort.subject_ids), np.asarray(cohort.labels), fc, cls,
                                  n_windows, encoder, cache,
                                  temporal if request.temporal else None, fc_windows, draws,
                                  request.fc_kind == "gram_raw_window", values, names)
    return out


_RESULT_PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "torchvision")
"""Packages whose version can change a run's numbers (part of its identity)."""

_PRESENTATION = ("cli", "interpret", "report")
"""fmtc sub-packages that compute no run result: printing, drawing, and the attributions read
from a finished run (not part of a run's identity)."""


def code_identity() -> dict[str, str]:
    """What the code behind a result is: a hash of fmtc's source and the numeric packages.

    A run computed by other code (an edited model, another torch) is a different run; the
    command line and the report (figures, tables, notebooks runner) are left out.
    """
    from importlib import metadata

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in _PRESENTATION:
            continue
        digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes())
    versions = {}
    for name in _RESULT_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"fmtc": __version__, "source_sha256": digest.hexdigest()[:16], **versions}


def _data_identity(data: ExperimentData, request: DataRequest) -> dict[str, Any]:
    encoder = data.encoder or {}
    identity = {"fc_kind": request.fc_kind, "features": request.features,
                "feature_cache": data.feature_cache,
                "encoder_weights_sha256": encoder.get("weights_sha256")}
    if request.fc_options:  # absent at the defaults: identities of earlier runs unchanged
        identity["fc_options"] = request.fc_options
    if request.temporal:
        from fmtc.represent.temporal import BAND, FEATURES_VERSION, LAGS

        identity["temporal"] = {"lags": list(LAGS), "band": list(BAND),
                                "version": FEATURES_VERSION}
    if request.covariates:
        identity["covariates"] = data.covariate_names
    return identity


# --------------------------------------------------------------------------- runs


def _arm_identity(arm: Any, data: ExperimentData, request: DataRequest) -> dict[str, Any]:
    fc = "fc" in get_model(arm.model).inputs
    identity = {"name": arm.name, "model": arm.model,
                "params": dataclasses.asdict(arm.params) if dataclasses.is_dataclass(arm.params)
                else arm.params,
                "pool_size": arm.context.pool_size if fc else None,
                "fc_kind": arm.context.fc_kind if fc else None,
                "data": _data_identity(data, request)}
    protocol = {k: v for k, v in (("zero_grad", arm.context.zero_grad),
                                  ("eval_crops", arm.context.eval_crops))
                if v != getattr(ModelContext(), k)}
    if protocol and get_model(arm.model).epochs:  # absent at the defaults
        identity["protocol"] = protocol
    return identity


@dataclass
class ExperimentRun:
    """A finished (or re-read) experiment: its tables and where they are.

    Attributes
    ----------
    name : str
    run_dir : Path
    key : str
        Hash of the run's identity (the end of the folder's name).
    reused : bool
        True when an existing complete run with this identity was read back.
    tables : dict
        :func:`fmtc.runs.load_run` of the folder (``metrics``, ``predictions``, ``summary``,
        ``contrasts``, ``provenance``, ...).
    """

    name: str
    run_dir: Path
    key: str
    reused: bool
    tables: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> pd.DataFrame:
        """Per arm, selection and metric: mean pooled value, intervals, p-value."""
        return self.tables["summary"]

    @property
    def contrasts(self) -> pd.DataFrame | None:
        """Paired differences of the experiment's contrasts (None when it declares none)."""
        return self.tables.get("contrasts")

    @property
    def metrics(self) -> pd.DataFrame:
        """The long-form metrics table."""
        return self.tables["metrics"]

    @property
    def predictions(self) -> dict[str, pd.DataFrame]:
        """Out-of-fold predictions by selection (``honest``, ``paper``), in the run's order."""
        selections = self.tables["provenance"]["selections"]
        return {name: self.tables["predictions" if i == 0 else f"predictions_{name}"]
                for i, name in enumerate(selections)}


def experiment_plan(plan: Plan, name: str) -> ExperimentPlan:
    """The experiment ``name`` of the plan; an unknown name lists the declared ones."""
    if name not in plan.experiments:
        raise PlanError(f"unknown experiment {name!r}; the plan's profile {plan.profile!r} "
                        f"declares: {', '.join(sorted(plan.experiments)) or 'none'}")
    return plan.experiments[name]


def run_experiment(plan: Plan, name: str, *, cohort: Cohort | None = None,
                   out: str | Path | None = None, device: Any = None, features: Any = None,
                   executor: Executor | None = None, permute_labels: bool = False,
                   overwrite: bool = False, progress: bool = False) -> ExperimentRun:
    """Run the plan's experiment ``name`` (or read it back) and return its tables.

    Parameters
    ----------
    plan : Plan
    name : str
        A key of the plan's ``experiments``.
    cohort : Cohort, optional
        Default: the plan's cohort.
    out : path, optional
        Run folder. Default: ``<runs_dir>/<name>_<profile>_<key>``.
    device : torch.device, optional
        Default: ``plan.device`` resolved.
    features : FeatureSet, optional
        Precomputed BrainLM features for every arm that reads them.
    executor : Executor, optional
        Default: the plan's ``execution`` section.
    permute_labels : bool
        Shuffle the labels once (seed ``plan.seed``) before anything: a null run.
    overwrite : bool
        Replace ``out`` when it holds another run.
    progress : bool
        Progress bars while generating the cohort and encoding.
    """
    spec = experiment_plan(plan, name)
    return _run(plan, name, spec.arms, list(spec.selections),
                [tuple(c) for c in spec.contrasts], cohort=cohort, out=out, device=device,
                features=features, executor=executor, permute_labels=permute_labels,
                overwrite=overwrite, progress=progress, where=f"experiments.{name}",
                keep_logits=spec.logits)


def knowledge_control(plan: Plan, ts_effect: float = 0.0) -> Plan:
    """The plan of the external-knowledge control: TS models only, temporal effect switched off.

    The simulated cohort keeps every setting of ``plan`` but ``simulation.ts_effect``; the
    experiment ``external-knowledge-control`` holds the arms and contrasts of
    ``external-knowledge`` without FMM_TC (whose connectivity branch would add its training
    noise to both arms).
    """
    source = experiment_plan(plan, "external-knowledge")
    return plan.replace(
        simulation={"ts_effect": ts_effect},
        experiments={"external-knowledge-control": {
            "description": "external-knowledge, TS models only, on the control cohort",
            "arms": {name: dataclasses.asdict(arm) for name, arm in source.arms.items()
                     if arm.model != "fmmtc"},
            "contrasts": [[a, b] for a, b in source.contrasts
                          if source.arms[a].model != "fmmtc"]}})


def simulation_sweep(plan: Plan, name: str, settings: Sequence[dict[str, Any]], *,
                     selection: str = "honest", metric: str = "mcc",
                     progress: bool = False) -> pd.DataFrame:
    """Run the experiment ``name`` on one simulated cohort per entry of ``settings``.

    Each entry changes the plan's ``simulation`` section (e.g. ``{"seed": 41,
    "effect_size": 3.0}`` or ``{"fc_effect": 0.0}``); every cohort is generated (or read from
    the cache), encoded and evaluated like the embedded default, and every run is kept in
    ``outputs.runs_dir``, so a repeated sweep only reads its runs back.

    Parameters
    ----------
    plan : Plan
        Its ``data.cohort`` must be ``simulated``.
    name : str
        A key of the plan's ``experiments``.
    settings : sequence of dict
        Changes of ``simulation``, one cohort each.
    selection, metric : str
        The pooled metric reported per arm.

    Returns
    -------
    DataFrame
        One row per setting and arm: the setting's keys as columns, ``arm``, ``model``,
        ``value`` (the mean over repeats of the pooled metric), ``low``/``high`` (its 95%
        subject-bootstrap interval), ``run`` (the run folder's name).
    """
    if plan.data.cohort != "simulated":
        raise PlanError(f"a simulation sweep needs data.cohort: simulated, not "
                        f"{plan.data.cohort!r}")
    spec = experiment_plan(plan, name)
    plans = []
    for changes in settings:  # every setting is checked before anything runs
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(plan.simulation)})
        if unknown:
            raise PlanError(f"simulation sweep: unknown simulation key(s) {unknown}")
        plans.append(plan.replace(simulation=dict(changes)))
    rows = []
    for changes, swept in zip(settings, plans, strict=True):
        run = run_experiment(swept, name, cohort=plan_cohort(swept, progress=progress),
                             progress=progress)
        summary = run.summary
        for arm, arm_plan in spec.arms.items():
            row = summary[(summary["arm"] == arm) & (summary["selection"] == selection)
                          & (summary["metric"] == metric)]
            if row.empty:
                raise PlanError(f"experiment {name!r} reports no {selection} {metric} for arm "
                                f"{arm!r}")
            row = row.iloc[0]
            rows.append({**changes, "arm": arm, "model": arm_plan.model,
                         "value": float(row["mean"]), "low": float(row["bootstrap_low"]),
                         "high": float(row["bootstrap_high"]), "run": run.run_dir.name})
    return pd.DataFrame(rows)


def evaluate(plan: Plan, models: Sequence[str], selections: Sequence[str] | None = None, *,
             cohort: Cohort | None = None, out: str | Path | None = None, device: Any = None,
             features: Any = None, source: str | None = None, executor: Executor | None = None,
             permute_labels: bool = False, overwrite: bool = False,
             progress: bool = False) -> ExperimentRun:
    """An ad-hoc experiment whose arms are ``models`` (the engine of ``fmtc evaluate``).

    ``source`` overrides ``brainlm.source`` for every arm (the CLI's ``--brainlm``);
    ``selections`` default to ``[evaluation.selection]``. See :func:`run_experiment`.
    """
    models = check_models(dict.fromkeys(models), "--model")
    if source is not None:
        plan = plan.replace(brainlm={"source": source})
    arms = {m: ArmPlan(model=m) for m in models}
    prefix = "evaluate_" + "+".join(models)
    return _run(plan, prefix, arms, list(selections or [plan.evaluation.selection]), [],
                cohort=cohort, out=out, device=device, features=features, executor=executor,
                permute_labels=permute_labels, overwrite=overwrite, progress=progress,
                where="evaluate")


def _run(plan: Plan, name: str, arm_plans: dict[str, ArmPlan], selections: list[str],
         contrasts: list[tuple[str, str]], *, cohort: Cohort | None, out: str | Path | None,
         device: Any, features: Any, executor: Executor | None, permute_labels: bool,
         overwrite: bool, progress: bool, where: str,
         keep_logits: bool = False) -> ExperimentRun:
    from fmtc import runs
    from fmtc.device import describe_device, resolve_device
    from fmtc.evaluate.paired import paired_differences
    from fmtc.evaluate.protocol import cross_validate, summarise
    from fmtc.provenance import provenance_record

    start = time.perf_counter()
    device = device if device is not None else resolve_device(plan.device)
    executor = executor or executor_for(plan)
    runs_dir = Path(out).parent if out is not None else plan.path(plan.outputs.runs_dir)
    runs.check_writable(runs_dir)  # before any computation
    arms, requests = resolve_arms(plan, arm_plans, device, where)
    if cohort is None:
        cohort = plan_cohort(plan, progress=progress)
    check_class_counts(cohort.labels, plan.evaluation.folds, f"cohort {cohort.root}")
    cv = plan.protocol.cv
    datasets = gather_datasets(cohort, requests, device=device, features=features,
                               progress=progress)
    if permute_labels:
        shuffled = np.random.default_rng(plan.seed).permutation(np.asarray(cohort.labels))
        datasets = {k: dataclasses.replace(d, labels=shuffled) for k, d in datasets.items()}
    feature_seconds = time.perf_counter() - start

    evaluation = dataclasses.asdict(plan.evaluation)
    for unused in ("models", "selection"):  # read by `fmtc evaluate`'s defaults only
        evaluation.pop(unused)
    identity = {
        "experiment": name, "code": code_identity(), "cohort": cohort.content_hash,
        "label_column": cohort.label_column, "seed": plan.seed, "evaluation": evaluation,
        "selections": selections, "contrasts": [list(c) for c in contrasts],
        "permute_labels": permute_labels, "threads_per_worker": executor.threads_per_worker,
        "device": str(device.type) if any(get_model(a.model).epochs for a in arms) else None,
        "arms": [_arm_identity(a, datasets[a.data], requests[a.data][1]) for a in arms],
    }
    if cv != "stratified_repeated":  # absent at the defaults: identities unchanged
        identity["cv"] = cv
    if keep_logits:
        identity["logits"] = True
    key = runs.run_key(identity)
    run_dir = Path(out) if out is not None else runs_dir / runs.run_name(
        name + ("_permuted-labels" if permute_labels else ""), plan.profile, key)
    if runs.check_destination(run_dir, key, overwrite):
        logger.info("reusing the complete run %s (same identity, key %s)", run_dir, key)
        return ExperimentRun(name, run_dir, key, True, runs.load_run(run_dir))

    with runs.staged_run(run_dir, overwrite=overwrite, key=key) as staging:
        store = runs.FitStore(staging)  # an interrupted run resumes from its finished fits
        result = cross_validate(datasets, arms, plan.evaluation, plan.seed, selections,
                                executor=executor, store=store, progress=None, cv=cv,
                                keep_logits=keep_logits)
        subject_ids = list(cohort.subject_ids)
        result.summary = summarise(result, plan.evaluation, plan.seed, subject_ids, executor)
        table = None
        if contrasts:  # under the honest selection whenever it was computed
            selection = "honest" if "honest" in selections else selections[0]
            table = paired_differences(result.predictions[selection], contrasts, subject_ids,
                                       metric="mcc", n_bootstrap=plan.evaluation.bootstrap,
                                       n_permutations=plan.evaluation.permutations,
                                       seed=plan.seed)
            table.insert(2, "selection", selection)
        timings = {"features_s": feature_seconds, **result.timings,
                   "total_s": time.perf_counter() - start}
        first = datasets[arms[0].data]
        encoders = {a.name: datasets[a.data].encoder for a in arms if datasets[a.data].encoder}
        record = provenance_record(
            command=name, experiment=name, key=key, plan=plan.to_dict(), profile=plan.profile,
            seed=plan.seed, arms={a.name: a.model for a in arms}, selections=selections,
            permute_labels=permute_labels,
            cohort={"name": cohort.name, "content_hash": cohort.content_hash,
                    "simulated": cohort.is_simulated, "label_column": cohort.label_column,
                    "n_subjects": len(first.subject_ids), "folder": Path(cohort.root).name,
                    "path": str(Path(cohort.root).resolve())},
            encoder=next(iter(encoders.values()), None), encoders=encoders,
            feature_cache=first.feature_cache,
            connectivity={"kind": plan.connectivity.kind,
                          "pool_size": plan.connectivity.pool_size},
            device=describe_device(device), execution=executor.describe(), timings=timings,
            resumed_fits=result.resumed_fits)
        for arm in arms:  # each arm's own input definitions (arms may override them)
            if "fc" in get_model(arm.model).inputs:
                result.models[arm.name]["connectivity"] = {
                    "kind": arm.context.fc_kind, "pool_size": arm.context.pool_size}
        result.models = {"arms": result.models, "connectivity": record["connectivity"],
                         "cohort": record["cohort"], "encoders": encoders,
                         "label_permuted": permute_labels,
                         "standardisation": "buffers of each state_dict (training-subject "
                                            "statistics)"}
        store.discard()
        runs.write_run(staging, result, record, identity, key, contrasts=table)
    logger.info("run folder %s (%.0f s)", run_dir, time.perf_counter() - start)
    return ExperimentRun(name, run_dir, key, False, runs.load_run(run_dir))


# --------------------------------------------------------------------------- generalisation


@dataclass
class GeneralisationRun:
    """A finished (or re-read) generalisation run.

    Attributes
    ----------
    run_dir : Path
    key : str
    reused : bool
    table : DataFrame
        :data:`fmtc.evaluate.generalisation.COLUMNS`, one row per arm, scheme and fit set.
    confounds : DataFrame
        Per feature view (``fc``, ``cls``, ...): how well it predicts the study.
    predictions : DataFrame
        Every cross fit's test predictions
        (:data:`fmtc.evaluate.generalisation.PREDICTION_COLUMNS`), for paired comparisons of
        models on the same test subjects (:func:`cross_differences`).
    """

    run_dir: Path
    key: str
    reused: bool
    table: pd.DataFrame
    confounds: pd.DataFrame
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)


def participant_groups(cohort: Cohort, scheme: str) -> list[Any]:
    """Per subject of ``cohort``, its group under ``scheme`` (``drug`` or ``study``).

    Raises :class:`~fmtc.errors.InvalidDataError` naming the cohort when its participants
    table has no such column.
    """
    from fmtc.cohort.participants import COVARIATE_ALIASES, find_covariate

    column = find_covariate(cohort.participants, scheme)
    if column is None:
        raise InvalidDataError(
            f"cohort {cohort.root}: participants.tsv has no {scheme} column (looked for "
            f"{', '.join(COVARIATE_ALIASES[scheme])}, any case); the {scheme!r} "
            "generalisation scheme needs it")
    return [None if pd.isna(v) else v for v in cohort.participants[column]]


def run_generalisation(plan: Plan, models: Sequence[str],
                       schemes: Sequence[str] = ("drug", "study"), *,
                       cohort: Cohort | None = None, test_cohort: Cohort | None = None,
                       test_simulation: dict[str, Any] | None = None,
                       out: str | Path | None = None, device: Any = None,
                       features: Any = None, test_features: Any = None,
                       executor: Executor | None = None, overwrite: bool = False,
                       progress: bool = False) -> GeneralisationRun:
    """Drug-, study- and cohort-level generalisation of ``models`` (``fmtc generalise``).

    Parameters
    ----------
    plan : Plan
        Cohort, features, model hyper-parameters, ``evaluation`` (folds and repeats of the
        within references, bootstrap resamples), ``seed``, ``outputs.runs_dir``.
    models : sequence of str
        Registered models; each is an arm named after it.
    schemes : sequence of {"drug", "study", "cross-cohort"}
        ``cross-cohort`` trains on the plan's cohort and tests on ``test_cohort``, or on the
        simulated cohort of ``simulation`` changed by ``test_simulation`` (e.g.
        ``{"seed": 1, "study_shift": 1.0}``).
    cohort, test_cohort : Cohort, optional
    features, test_features : FeatureSet, optional
        Precomputed BrainLM features of the two cohorts.
    out : path, optional
        Run folder. Default ``<runs_dir>/generalise_<models>_<profile>_<key>``; an existing
        complete run of the same identity is read back.

    Returns
    -------
    GeneralisationRun
        Its folder holds ``generalisation.csv``, ``confounds.csv``, ``provenance.json`` and
        ``run.json``.
    """
    from fmtc import runs
    from fmtc.device import describe_device, resolve_device
    from fmtc.evaluate.generalisation import (
        PREDICTION_COLUMNS,
        SCHEMES,
        cross_cohort,
        feature_views,
        generalise,
        study_predictability,
    )
    from fmtc.provenance import provenance_record

    schemes = list(dict.fromkeys(schemes))
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown or not schemes:
        raise PlanError(f"unknown generalisation scheme(s) {unknown or '(none given)'}; "
                        f"choose from {', '.join(SCHEMES)}")
    if "cross-cohort" in schemes and test_cohort is None and test_simulation is None:
        raise PlanError("scheme 'cross-cohort' needs a test cohort (test_cohort, or "
                        "test_simulation: simulation settings of a second simulated cohort)")
    models = check_models(dict.fromkeys(models), "--model")
    start = time.perf_counter()
    device = device if device is not None else resolve_device(plan.device)
    executor = executor or executor_for(plan)
    runs_dir = Path(out).parent if out is not None else plan.path(plan.outputs.runs_dir)
    runs.check_writable(runs_dir)
    arms, requests = resolve_arms(plan, {m: ArmPlan(model=m) for m in models}, device,
                                  "generalise")
    if cohort is None:
        cohort = plan_cohort(plan, progress=progress)
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
    test_datasets = (gather_datasets(test_cohort, requests, device=device,
                                     features=test_features, progress=progress)
                     if "cross-cohort" in schemes else None)

    identity = {
        "generalisation": schemes, "code": code_identity(), "cohort": cohort.content_hash,
        "test_cohort": test_cohort.content_hash if test_datasets is not None else None,
        "label_column": cohort.label_column, "seed": plan.seed,
        "evaluation": {k: getattr(plan.evaluation, k) for k in ("folds", "repeats",
                                                                  "bootstrap")},
        "threads_per_worker": executor.threads_per_worker,
        "device": str(device.type) if any(get_model(a.model).epochs for a in arms) else None,
        "arms": [_arm_identity(a, datasets[a.data], requests[a.data][1]) for a in arms],
    }
    key = runs.run_key(identity)
    run_dir = Path(out) if out is not None else runs_dir / runs.run_name(
        "generalise_" + "+".join(models), plan.profile, key)
    if runs.check_destination(run_dir, key, overwrite):
        logger.info("reusing the complete generalisation run %s (key %s)", run_dir, key)
        return GeneralisationRun(run_dir, key, True,
                                 pd.read_csv(run_dir / "generalisation.csv", dtype={"note": str},
                                             keep_default_na=False, na_values=["nan"]),
                                 pd.read_csv(run_dir / "confounds.csv"),
                                 pd.read_csv(run_dir / "predictions.csv",
                                             dtype={"participant_id": str, "train_on": str,
                                                    "test_on": str}))

    parts, rows = [], []
    if groups:
        parts.append(generalise(datasets, arms, groups, plan.evaluation, plan.seed,
                                executor=executor, predictions=rows))
    if test_datasets is not None:
        parts.append(cross_cohort(datasets, test_datasets, arms, plan.evaluation, plan.seed,
                                  names=(cohort.root.name, test_cohort.root.name),
                                  executor=executor, predictions=rows))
    table = pd.concat(parts, ignore_index=True)
    predictions = pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
    confounds = []
    if "study" in groups and len({g for g in groups["study"] if g is not None}) > 1:
        views: dict[str, np.ndarray] = {}
        for data in datasets.values():
            views.update({k: v for k, v in feature_views(data).items() if k != "covariates"})
        known = np.array([g is not None for g in groups["study"]])
        for view, values in views.items():
            found = study_predictability(values[known],
                                         [g for g in groups["study"] if g is not None],
                                         plan.seed, folds=plan.evaluation.folds)
            confounds.append({"features": view, **found})
    confounds = pd.DataFrame(confounds, columns=["features", "balanced_accuracy", "mcc",
                                                 "chance", "n_studies", "n_subjects",
                                                 "n_features", "folds"])
    record = provenance_record(
        command="generalise", key=key, plan=plan.to_dict(), profile=plan.profile,
        seed=plan.seed, arms={a.name: a.model for a in arms}, schemes=schemes,
        cohort={"name": cohort.name, "content_hash": cohort.content_hash,
                "simulated": cohort.is_simulated, "folder": Path(cohort.root).name},
        test_cohort=(None if test_datasets is None else
                     {"name": test_cohort.name, "content_hash": test_cohort.content_hash,
                      "simulated": test_cohort.is_simulated,
                      "folder": Path(test_cohort.root).name,
                      "simulation_changes": test_simulation}),
        device=describe_device(device), execution=executor.describe(),
        timings={"total_s": time.perf_counter() - start})
    with runs.staged_run(run_dir, overwrite=overwrite) as staging:
        runs.write_csv(staging / "generalisation.csv", table)
        runs.write_csv(staging / "confounds.csv", confounds)
        runs.write_csv(staging / "predictions.csv", predictions)
        from fmtc.storage import write_json

        write_json(staging / "provenance.json", record)
        write_json(staging / runs.RUN_RECORD, {"key": key, "identity": identity})
    logger.info("generalisation run folder %s (%.0f s)", run_dir, time.perf_counter() - start)
    return GeneralisationRun(run_dir, key, False, table, confounds, predictions)


# --------------------------------------------------------------------------- interpretation


@dataclass
class InterpretationRun:
    """A finished (or re-read) interpretation of a run (:func:`interpret_run`).

    Attributes
    ----------
    folder : Path
    key : str
    reused : bool
    tables : dict
        :func:`fmtc.interpret.results.read_interpretation` of ``folder``.
    """

    folder: Path
    key: str
    reused: bool
    tables: dict[str, Any]


INTERPRETABLE = ("fmmtc", "ts", "fc")
"""Models whose fold weights ``fmtc interpret`` attributes."""


def run_cohort(record: dict[str, Any], plan: Plan, cohort: str | Path | None = None) -> Cohort:
    """The cohort a run was computed on, checked against the run's content hash.

    Looks at ``cohort`` when given, else the folder the run recorded, the plan's cohorts
    folder and the plan's own cohort (the embedded simulated cohort included).
    """
    expected = record["content_hash"]
    candidates: list[Path] = []
    if cohort is not None:
        candidates.append(Path(cohort))
    else:
        if record.get("path"):
            candidates.append(Path(record["path"]))
        candidates.append(plan.path(plan.outputs.cohorts_dir) / record.get("folder", ""))
        if plan.data.cohort != "simulated":
            candidates.append(plan.path(plan.data.cohort))
        elif str(record.get("folder", "")).startswith("simulated-"):
            candidates.append(cohort_path(plan))
    seen = []
    for path in dict.fromkeys(candidates):
        if not (path / "dataset_description.json").is_file():
            continue
        found = load_cohort(path, label=record.get("label_column") or plan.data.label)
        if found.content_hash == expected:
            return found
        seen.append(f"{path} (content hash {found.content_hash[:12]})")
    where = "; found " + ", ".join(seen) if seen else ""
    raise InvalidDataError(
        f"the run was computed on cohort {record.get('folder')!r} (content hash "
        f"{expected[:12]}), which was not found{where}; pass the cohort folder it was "
        "computed on (fmtc interpret --cohort DIR)")


def interpret_run(run_dir: str | Path, *, arms: Sequence[str] | None = None,
                  settings: Any = None, cohort: str | Path | None = None,
                  out: str | Path | None = None, device: Any = None, overwrite: bool = False,
                  progress: bool = False) -> InterpretationRun:
    """Integrated gradients of every fold model of a run's FMM_TC / TS / FC arms.

    Rebuilds each arm's inputs from the run's plan (``provenance.json``) and cohort, checks
    them against the run's records (data keys, encoder weights), attributes each fold's test
    subjects with the fold's own weights (:func:`fmtc.interpret.analysis.interpret_arm`), and
    writes an interpretation folder (:mod:`fmtc.interpret.results`) with its figures.

    Parameters
    ----------
    run_dir : path-like
        A run folder of ``fmtc evaluate`` / ``fmtc experiment``.
    arms : sequence of str, optional
        Arms to attribute (default: every arm of model fmmtc, ts or fc).
    settings : IGSettings, optional
        Baseline, steps and subjects (default: :class:`~fmtc.interpret.analysis.IGSettings`;
        ``ts_subjects`` is every test subject on a GPU unless set).
    cohort : path-like, optional
        The cohort folder, when it is not where the run recorded it.
    out : path-like, optional
        Interpretation folder (default: ``interpret_<run folder name>_<key>`` beside the
        run folder).
    device : torch.device, optional
        Default: the run plan's device setting.
    overwrite : bool
        Replace ``out`` when it holds another interpretation.
    """
    from fmtc import runs
    from fmtc.device import describe_device, resolve_device
    from fmtc.interpret.analysis import CPU_TS_SUBJECTS, IGSettings, interpret_arm
    from fmtc.plan import plan_from_dict

    start = time.perf_counter()
    run_dir = Path(run_dir)
    if not (run_dir / runs.RUN_RECORD).is_file():
        raise InvalidDataError(f"{run_dir} is not a complete run folder (no {runs.RUN_RECORD}); "
                               "run `fmtc evaluate` or `fmtc experiment` first")
    tables = runs.load_run(run_dir)
    provenance, models = tables["provenance"], tables["models"]
    try:
        plan = plan_from_dict(provenance["plan"])
    except PlanError as error:
        raise InvalidDataError(f"{run_dir}/provenance.json: its plan is not valid for this fmtc "
                               f"({error})") from None
    device = device if device is not None else resolve_device(plan.device)
    if settings is None:
        settings = IGSettings(ts_subjects=None if device.type == "cuda" else CPU_TS_SUBJECTS)
    arm_models = {name: entry["model"] for name, entry in models["arms"].items()}
    chosen = list(arms) if arms else [a for a, m in arm_models.items() if m in INTERPRETABLE]
    for name in chosen:
        if name not in arm_models:
            raise InvalidDataError(f"{run_dir} has no arm {name!r}; its arms are "
                                   f"{sorted(arm_models)}")
        if arm_models[name] not in INTERPRETABLE or "weights" not in models["arms"][name]:
            raise InvalidDataError(f"arm {name!r} of {run_dir} (model {arm_models[name]}) has no "
                                   f"fold weights to attribute; interpret arms of models "
                                   f"{', '.join(INTERPRETABLE)}")
    if not chosen:
        raise InvalidDataError(f"{run_dir} has no arm of models {', '.join(INTERPRETABLE)} to "
                               "attribute")
    identity = {"run": tables["run"]["key"], "arms": chosen, "settings": settings.to_dict(),
                "device": device.type}
    key = runs.run_key(identity)
    # Beside the run, never inside it: a run folder is never modified once published.
    folder = (Path(out) if out is not None
              else run_dir.parent / f"interpret_{run_dir.name}_{key}")
    if runs.check_destination(folder, key, overwrite):
        from fmtc.interpret.results import read_interpretation

        logger.info("reusing the interpretation %s (key %s)", folder, key)
        return InterpretationRun(folder, key, True, read_interpretation(folder))

    cohort_obj = run_cohort(models["cohort"] | provenance.get("cohort", {}), plan, cohort)
    experiment = provenance.get("experiment")
    arm_plans = (plan.experiments[experiment].arms if experiment in plan.experiments
                 else {a: ArmPlan(model=m) for a, m in provenance["arms"].items()})
    arm_plans = {a: arm_plans[a] for a in chosen}
    resolved, requests = resolve_arms(plan, arm_plans, device, "interpret")
    datasets = gather_datasets(cohort_obj, requests, device=device, progress=progress)
    predictions = tables["predictions"]
    labels_of = dict(zip(predictions["participant_id"], predictions["label"], strict=False))
    labels = np.array([labels_of.get(p, v) for p, v in zip(cohort_obj.subject_ids,
                                                             cohort_obj.labels, strict=True)])
    results, encoders = {}, {}
    for arm in resolved:
        entry = models["arms"][arm.name]
        if entry.get("data") != arm.data:
            raise InvalidDataError(
                f"arm {arm.name!r}: the inputs rebuilt from the run's plan (data key {arm.data}) "
                f"are not the ones the run read ({entry.get('data')}); the run was computed by "
                "another fmtc version")
        if datasets[arm.data].window_fc:
            raise InvalidDataError(f"arm {arm.name!r} reads one FC matrix per window "
                                   "(gram_raw_window); fmtc interpret attributes subject-level "
                                   "FC only")
        arm_plan = requests[arm.data][0]
        inputs, encoder_info = _interpretation_inputs(cohort_obj, datasets[arm.data], arm_plan,
                                                      arm.spec.inputs, settings, device,
                                                      models.get("encoders", {}).get(arm.name),
                                                      progress)
        encoders[arm.name] = encoder_info
        build = _fold_model_builder(run_dir, entry, device)
        logger.info("attributing %s (%s)", arm.name, arm.model)
        results[arm.name] = interpret_arm(build, tables["splits"]["splits"], inputs, labels,
                                          settings, device, arm.spec.inputs,
                                          fused=arm.model == "fmmtc", progress=progress)

    from fmtc.interpret.results import read_interpretation, summarise, write_tables
    from fmtc.provenance import provenance_record
    from fmtc.report.interpretation import write_figures

    summary = summarise(results, cohort_obj, {a.name: datasets[a.data].fc for a in resolved},
                        labels, tables["splits"]["splits"], plan.logistic, predictions, plan.seed)
    record = provenance_record(
        command="interpret", key=key, run={"folder": run_dir.name, "key": tables["run"]["key"],
                                           "experiment": experiment},
        settings=settings.to_dict(), arms={a: arm_models[a] for a in chosen},
        cohort={"name": cohort_obj.name, "content_hash": cohort_obj.content_hash,
                "simulated": cohort_obj.is_simulated, "folder": Path(cohort_obj.root).name},
        encoders=encoders, device=describe_device(device),
        label_permuted=bool(models.get("label_permuted")),
        seconds={a: r.seconds for a, r in results.items()},
        timings={"total_s": time.perf_counter() - start})
    with runs.staged_run(folder, overwrite=overwrite, key=key) as staging:
        write_tables(staging, summary, record)
        write_figures(staging / "figures", summary, cohort_obj)
        from fmtc.storage import write_json

        write_json(staging / runs.RUN_RECORD, {"key": key, "identity": identity})
    logger.info("interpretation folder %s (%.0f s)", folder, time.perf_counter() - start)
    return InterpretationRun(folder, key, False, read_interpretation(folder))


def _fold_model_builder(run_dir: Path, entry: dict[str, Any], device: Any) -> Any:
    """``build(repeat, fold)``: the arm's fold model with its saved weights, in eval mode."""
    import torch

    from fmtc.predict.models import ModelConfig

    config = ModelConfig(**entry["config"])
    spec = get_model(entry["model"])

    def build(repeat: int, fold: int) -> Any:
        path = run_dir / entry["weights"].format(repeat=repeat, fold=fold)
        if not path.is_file():
            raise InvalidDataError(f"{path} is missing: the run folder is incomplete; run it "
                                   "again with --overwrite")
        model = spec.module_class()(config)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.to(device).eval()

    return build


def _interpretation_inputs(cohort: Cohort, data: ExperimentData, plan: Plan,
                           reads: Sequence[str], settings: Any, device: Any,
                           encoder_record: dict[str, Any] | None, progress: bool
                           ) -> tuple[Any, dict[str, Any] | None]:
    """The :class:`~fmtc.interpret.analysis.CohortInputs` of one arm, and its encoder record."""
    import torch

    from fmtc.interpret.analysis import CohortInputs
    from fmtc.interpret.baselines import time_shuffled
    from fmtc.preprocess.transforms import functional_connectivity, make_windows, scale_input

    spec, scaling = plan.windows, plan.protocol.input_scaling
    inputs = CohortInputs(list(cohort.subject_ids), fc=data.fc, cls=data.cls,
                          n_windows=data.n_windows)

    def shuffled_series(i: int) -> np.ndarray:
        pid = cohort.subject_ids[i]
        return time_shuffled(cohort.timeseries[pid], settings.seed + i)

    if "fc" in reads:
        kind = plan.connectivity.kind
        inputs.shuffled_fc = lambda i: functional_connectivity(
            scale_input(shuffled_series(i), scaling), kind)
    if "cls" not in reads:
        return inputs, None
    from fmtc.represent.encoder import resolve_encoder
    from fmtc.represent.features import window_features
    from fmtc.represent.readout import readout_groups

    encoder = resolve_encoder(plan, device, progress=progress).float().eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    found = encoder.source_info.get("weights_sha256")
    expected = (encoder_record or {}).get("weights_sha256")
    if expected is not None and found != expected:
        raise InvalidDataError(f"the BrainLM encoder {plan.brainlm.source!r} resolves to weights "
                               f"{str(found)[:12]}, not the {expected[:12]} the run read; "
                               "interpret on the machine and data folder of the run")
    groups = readout_groups(cohort, plan.brainlm.readout)
    xyz = torch.as_tensor(cohort.xyz, dtype=torch.float32, device=device)

    def windows(i: int, shuffled: bool) -> np.ndarray:
        series = shuffled_series(i) if shuffled else cohort.timeseries[cohort.subject_ids[i]]
        return make_windows(scale_input(series, scaling), spec.length, spec.stride,
                            spec.max_windows)

    def features(signal: torch.Tensor) -> torch.Tensor:
        return window_features(encoder, signal, xyz, plan, groups)

    def shuffled_cls(i: int) -> np.ndarray:
        with torch.no_grad():
            signal = torch.as_tensor(windows(i, True), device=device)
            return features(signal).cpu().numpy()

    inputs.first_window = lambda i, shuffled: windows(i, shuffled)[0]
    inputs.features = features
    inputs.shuffled_cls = shuffled_cls
    return inputs, dict(encoder.source_info)
