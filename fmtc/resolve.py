"""The plan resolved into each stage's own settings: where results live, encoders, features, arms.

Part of the pipeline layer (:mod:`fmtc.pipeline` composes what this module resolves): the only
other module that reads a :class:`~fmtc.plan.Plan`. Every stage below receives the settings made
here — a :class:`~fmtc.lifecycle.Store`, an :class:`~fmtc.represent.encoder.EncoderSpec`,
:class:`~fmtc.represent.features.FeatureSettings`, resolved arms and their data requests, an
:class:`~fmtc.execution.Executor` — never the plan itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fmtc.cohort.folder import Cohort, load_cohort
from fmtc.errors import InvalidDataError
from fmtc.evaluate.fits import Arm
from fmtc.execution import Executor
from fmtc.lifecycle import Store
from fmtc.plan import ArmPlan, Plan, PlanError, build_section
from fmtc.predict.data import DataRequest, ExperimentData
from fmtc.predict.registry import ModelContext, check_models, get_model, model_names

# --------------------------------------------------------------------------- plan -> settings


def store_for(plan: Plan) -> Store:
    """Where the plan's results are published (``outputs``, resolved)."""
    out = plan.outputs
    return Store(plan.path(out.data_dir), plan.path(out.cohorts_dir),
                 plan.path(out.features_dir), plan.path(out.models_dir),
                 plan.path(out.fits_dir), plan.path(out.runs_dir))


def encoder_spec(plan: Plan, source: str | None = None) -> Any:
    """The :class:`~fmtc.represent.encoder.EncoderSpec` of the plan (``source`` overrides)."""
    from fmtc.represent.encoder import EncoderSpec, probe_cohort_settings

    brainlm = plan.brainlm
    return EncoderSpec(source or brainlm.source, plan.pretrain, plan.windows, store_for(plan),
                       tr=plan.simulation.tr,
                       probe=probe_cohort_settings(plan.simulation, plan.pretrain),
                       revision=brainlm.revision, sha256=brainlm.sha256)


def feature_settings(plan: Plan) -> Any:
    """The :class:`~fmtc.represent.features.FeatureSettings` of the plan."""
    from fmtc.represent.features import FeatureSettings

    brainlm = plan.brainlm
    return FeatureSettings(plan.windows, brainlm.readout, brainlm.token_order, brainlm.n_shuffles,
                           plan.seed, plan.protocol.input_scaling, brainlm.batch_size)


def executor_for(plan: Plan) -> Executor:
    """The plan's ``execution`` section as an :class:`Executor`."""
    ex = plan.execution
    return Executor(n_jobs=ex.n_jobs, threads_per_worker=ex.threads_per_worker,
                    dask_scheduler=ex.dask_scheduler)


def resolve_device_of(plan: Plan, device: Any) -> Any:
    """``device``, else the plan's ``device`` setting resolved."""
    from fmtc.device import resolve_device

    return device if device is not None else resolve_device(plan.device)


# --------------------------------------------------------------------------- cohort


def cohort_path(plan: Plan, progress: bool = False) -> Path:
    """The cohort folder of ``plan``: the embedded simulated cohort, or ``data.cohort``."""
    if plan.data.cohort == "simulated":
        from fmtc.simulate.embedded import simulated_cohort

        return simulated_cohort(plan.simulation, store_for(plan), progress=progress)
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


def cohort_record(cohort: Cohort) -> dict[str, Any]:
    """What a run records of its cohort (name, content hash, label column, folder)."""
    return {"name": cohort.name, "content_hash": cohort.content_hash,
            "simulated": cohort.is_simulated, "label_column": cohort.label_column,
            "n_subjects": len(cohort.subject_ids), "folder": Path(cohort.root).name,
            "path": str(Path(cohort.root).resolve())}


# --------------------------------------------------------------------------- arms


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


def _data_request(plan: Plan, spec: Any) -> DataRequest:
    """What an arm of model ``spec`` reads under ``plan`` (its own overrides applied)."""
    fc_options: dict[str, Any] = {}
    if "fc" in spec.inputs:
        if plan.protocol.input_scaling != "robust":
            fc_options["input_scaling"] = plan.protocol.input_scaling
        if plan.connectivity.kind == "gram_raw_window" or (
                spec.epochs and plan.protocol.eval_crops == "random"):
            fc_options["fc_windows"] = plan.windows
        if spec.epochs and plan.protocol.eval_crops == "random":
            # The authors crop a random 200-TR window for training and evaluation alike and
            # compute its FC: training pairs each drawn window with its crop's FC too.
            fc_options["window_fc"] = True
    reads_cls = "cls" in spec.inputs
    return DataRequest(
        fc_kind=plan.connectivity.kind if "fc" in spec.inputs else None,
        features=feature_settings(plan) if reads_cls else None,
        encoder=encoder_spec(plan) if reads_cls else None,
        temporal="temporal" in spec.inputs, covariates="covariates" in spec.inputs,
        fc_options=tuple(sorted(fc_options.items())))


def resolve_arms(plan: Plan, arms: dict[str, ArmPlan], device: Any,
                 where: str = "experiment") -> tuple[list[Arm], dict[str, DataRequest]]:
    """Resolve each arm's model, hyper-parameters, model context and data request.

    Returns
    -------
    arms : list of Arm
    requests : dict of str to DataRequest
        What each data key (``Arm.data``) holds.
    """
    check_models([a.model for a in arms.values()], f"{where}.arms")
    unknown_params = sorted(set(plan.model_params) - set(model_names()))
    if unknown_params:
        raise PlanError(f"model_params: unknown model(s) {unknown_params}")
    resolved, requests = [], {}
    for name, arm in arms.items():
        arm_plan = _arm_plan(plan, arm, f"{where}.arms.{name}")
        spec = get_model(arm.model)
        request = _data_request(arm_plan, spec)
        requests.setdefault(request.key, request)
        context = ModelContext(device=device, pool_size=arm_plan.connectivity.pool_size,
                               fc_kind=arm_plan.connectivity.kind,
                               zero_grad=arm_plan.protocol.zero_grad,
                               eval_crops=arm_plan.protocol.eval_crops)
        resolved.append(Arm(name, arm.model, model_params(arm_plan, arm.model), context,
                            request.key, spec))
    return resolved, requests


def encoders_of(arms: Sequence[Arm], datasets: dict[str, ExperimentData]) -> dict[str, Any]:
    """Per arm reading TS features, the provenance of its encoder."""
    return {a.name: datasets[a.data].encoder for a in arms if datasets[a.data].encoder}


def calibration_settings(plan: Plan) -> tuple[Any, tuple, Any]:
    """The inference calibration of the plan: its settings and its pools' simulations.

    Returns
    -------
    (CalibrationSettings, tuple of SimulationPlan, SimulationPlan)
        The study (the plan's cohort size and cross-validation, ``pages.calibration_*``; the
        claims table's permutation count by default), the calibration pools and the fresh pool (the
        plan's simulation, ``calibration_pool`` subjects, each of ``calibration_seeds``: every
        seed but the last is a calibration pool, the last is the fresh one).
    """
    import dataclasses

    from fmtc.evaluate.calibration import CalibrationSettings

    pages, size = plan.pages, plan.simulation.n_subjects
    if pages.calibration_pool < 4 * size:
        raise PlanError(f"plan key pages.calibration_pool: {pages.calibration_pool} subjects "
                        f"cannot hold two disjoint cohorts of {size} and a population to "
                        f"evaluate on; give at least {4 * size}")
    settings = CalibrationSettings(
        n_subjects=size, folds=plan.evaluation.folds, repeats=plan.evaluation.repeats,
        bootstrap=tuple(sorted({plan.evaluation.bootstrap, 2000})),
        replicates=pages.calibration_replicates,
        null_replicates=pages.calibration_null_replicates,
        choice_replicates=pages.calibration_choice_replicates,
        truth_draws=pages.calibration_truth_draws, seed=plan.seed)
    pools = [dataclasses.replace(plan.simulation, n_subjects=pages.calibration_pool, seed=seed,
                                 population_seed=None)
             for seed in pages.calibration_seeds]
    return settings, tuple(pools[:-1]), pools[-1]


def encoder_draws(plan: Plan) -> tuple[Plan, dict[str, tuple[list[str], list[str]]]]:
    """The plan of the encoder-level experiment ``encoder-draws`` and its arm sets.

    For each of ``pages.encoder_models``, one arm per pretrained encoder
    (``pages.encoder_pretrained_seeds``: the encoder's ``pretrain.seed``) and one per random
    initialisation (``pages.encoder_random_seeds``), on identical splits.

    Returns
    -------
    (plan, sets)
        ``sets[model]`` is ``(pretrained arms, random-init arms)``, for
        :meth:`fmtc.evaluate.runs.ExperimentRun.encoder_contrast`.
    """
    pages = plan.pages
    arms: dict[str, dict[str, Any]] = {}
    sets = {}
    for model in pages.encoder_models:
        pretrained = [f"{model}-pretrained-{s}" for s in pages.encoder_pretrained_seeds]
        random = [f"{model}-random-init-{s}" for s in pages.encoder_random_seeds]
        for name, seed in zip(pretrained, pages.encoder_pretrained_seeds, strict=True):
            arms[name] = {"model": model, "overrides": {"pretrain": {"seed": seed}}}
        for name, seed in zip(random, pages.encoder_random_seeds, strict=True):
            arms[name] = {"model": model, "encoder": "random-init",
                          "overrides": {"pretrain": {"seed": seed}}}
        sets[model] = (pretrained, random)
    out = plan.replace(experiments={"encoder-draws": {
        "description": "every TS model with several pretrained encoders (pretraining seeds) "
                       "and several random initialisations, on identical splits",
        "arms": arms, "selections": ["honest"]}})
    return out, sets


def stages_cohorts(plan: Plan, progress: bool = False) -> tuple[Path, Path | None, Path]:
    """The STAGES cohorts of the real-trial page, fetched once into ``outputs.cohorts_dir``.

    :func:`fmtc.cohort.stages.fetch_stages` with the plan's ``pages.stages_*`` settings (a
    published cohort is read back), then the unlabelled pretraining corpus of every scan
    (:class:`fmtc.cohort.stages.StagesCorpus`).

    Returns
    -------
    (baseline, ses2, corpus)
        The labelled baseline cohort, the 3-month cohort and the corpus folders.
    """
    from fmtc.acquire.stages import STAGES_REPOSITORY
    from fmtc.cohort.stages import fetch_stages, stages_corpus

    pages = plan.pages

    def path(value: str | None) -> Path | None:
        return None if value is None else plan.path(value)

    url = pages.stages_source  # a URL, or a local clone (relative: to the plan's folder)
    if url is not None and "://" not in url and not url.startswith("git@"):
        url = str(path(url))
    # No revision: the pinned commit, whatever the source (a clone at another one is refused).
    source = STAGES_REPOSITORY.override(url, pages.stages_revision
                                        or STAGES_REPOSITORY.revision)

    report = fetch_stages(
        plan.path(plan.outputs.cohorts_dir) / "stages", source=source,
        repetition_time=pages.stages_tr, regions_file=path(pages.stages_regions_file),
        subcortical_file=path(pages.stages_subcortical_file),
        cortex_only=pages.stages_subcortical_file is None, progress=progress)
    return report.out, report.ses2_out, stages_corpus(report.out, report.ses2_out)


def stages_encoder(plan: Plan, corpus: Path, device: Any = None, progress: bool = False) -> Path:
    """A BrainLM pretrained (the plan's ``pretrain`` recipe) on the STAGES corpus, unlabelled.

    Its folder (``outputs.models_dir``) is what ``brainlm.source`` takes; it is trained once
    and read back after.
    """
    from fmtc.lifecycle import materialise
    from fmtc.represent.encoder import PretrainedEncoder

    store = store_for(plan)
    encoder = PretrainedEncoder(plan.pretrain, plan.windows, store, Path(corpus),
                                device=resolve_device_of(plan, device), progress=progress)
    return materialise(encoder, store.models / f"brainlm-stages-{encoder.key[:12]}").folder


def knowledge_control(plan: Plan, ts_effect: float = 0.0) -> Plan:
    """The plan of the external-knowledge control: TS models only, temporal effect switched off.

    The simulated cohort keeps every setting of ``plan`` but ``simulation.ts_effect``; the
    experiment ``external-knowledge-control`` holds the arms and contrasts of
    ``external-knowledge`` without FMM_TC (whose connectivity branch would add its training
    noise to both arms).
    """
    import dataclasses

    source = plan.experiments["external-knowledge"]
    return plan.replace(
        simulation={"ts_effect": ts_effect},
        experiments={"external-knowledge-control": {
            "description": "external-knowledge, TS models only, on the control cohort",
            "arms": {name: dataclasses.asdict(arm) for name, arm in source.arms.items()
                     if arm.model != "fmmtc"},
            "contrasts": [[a, b] for a, b in source.contrasts
                          if source.arms[a].model != "fmmtc"]}})
