"""What an interpretation reads: the run, its plan, cohort and arms, and each fold's model.

:func:`run_context` reads a finished run folder back (tables, the plan recorded in its
provenance, the cohort it was computed on, checked against the run's content hash, the arms to
attribute); :func:`cohort_inputs` rebuilds an arm's model inputs with the functions integrated
gradients needs (the frozen encoder for the TS path, time-shuffled baselines);
:func:`fold_models` loads each fold's model from its fit's weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmtc.cohort.folder import Cohort, load_cohort
from fmtc.errors import InvalidDataError
from fmtc.predict.data import ExperimentData
from fmtc.predict.registry import get_model


@dataclass
class RunContext:
    """A finished run, read back for interpretation.

    Attributes
    ----------
    run_dir : Path
    tables : dict
        :func:`fmtc.evaluate.runs.load_run` of the folder.
    plan : Plan
        The plan recorded in its provenance.
    arms : list of str
        The arms to attribute.
    cohort : Cohort
        The cohort it was computed on.
    device : torch.device
    """

    run_dir: Path
    tables: dict[str, Any]
    plan: Any
    arms: list[str]
    cohort: Cohort
    device: Any

    @property
    def provenance(self) -> dict[str, Any]:
        """The run's ``provenance.json``."""
        return self.tables["provenance"]

    @property
    def models(self) -> dict[str, Any]:
        """The run's ``models.json``."""
        return self.tables["models"]

    @property
    def key(self) -> str:
        """The run's key."""
        return self.tables["run"]["key"]

    def check_fits(self, rebuilt: Any) -> None:
        """Raise unless the fits rebuilt from the run's plan are the ones the run read."""
        for fit in rebuilt.fits:
            arm = fit.task.arm.name
            split = fit.task.split
            recorded = {(int(f["repeat"]), int(f["fold"])): f["key"]
                        for f in self.models["arms"][arm]["fits"]}
            if recorded.get((int(split.repeat), int(split.fold))) != fit.key:
                raise InvalidDataError(
                    f"arm {arm!r}: the fit rebuilt from the run's plan (repeat {split.repeat}, "
                    f"fold {split.fold}, key {fit.key}) is not the one the run read "
                    f"({recorded.get((int(split.repeat), int(split.fold)))}); the run was "
                    "computed by another fmtc version or on other data: compute it again")


def run_context(run_dir: Path, arms: Sequence[str] | None, cohort: str | Path | None,
                device: Any) -> RunContext:
    """Read ``run_dir`` back and choose the arms to attribute (see :class:`RunContext`)."""
    from fmtc.device import resolve_device
    from fmtc.evaluate.runs import load_run
    from fmtc.lifecycle import kind_of
    from fmtc.plan import PlanError, plan_from_dict

    kind = kind_of(run_dir)
    if kind != "run":
        what = f"holds a {kind}" if kind else "is not a complete run folder"
        raise InvalidDataError(f"{run_dir} {what}; interpret a folder of `fmtc evaluate` or "
                               "`fmtc experiment`")
    tables = load_run(run_dir)
    try:
        plan = plan_from_dict(tables["provenance"]["plan"])
    except PlanError as error:
        raise InvalidDataError(f"{run_dir}/provenance.json: its plan is not valid for this fmtc "
                               f"({error})") from None
    device = device if device is not None else resolve_device(plan.device)
    entries = tables["models"]["arms"]
    interpretable = {name for name, entry in entries.items()
                     if get_model(entry["model"]).interpretable}
    chosen = list(arms) if arms else [a for a in entries if a in interpretable]
    for name in chosen:
        if name not in entries:
            raise InvalidDataError(f"{run_dir} has no arm {name!r}; its arms are "
                                   f"{sorted(entries)}")
        if name not in interpretable:
            models = sorted({entries[a]["model"] for a in interpretable}) or ["(none)"]
            raise InvalidDataError(f"arm {name!r} of {run_dir} (model {entries[name]['model']}) "
                                   "has no fold models to attribute; interpret arms of models "
                                   f"{', '.join(models)}")
    if not chosen:
        raise InvalidDataError(f"{run_dir} has no arm of an interpretable (torch) model to "
                               "attribute")
    selections = tables["provenance"].get("selections", ["honest"])
    if selections[0] != "honest":
        import warnings

        warnings.warn(f"{run_dir} reports the {selections[0]!r} selection first (epochs chosen "
                      "on the test fold); its fold models are attributed at the honest epoch "
                      "(the last of the schedule), the only ones fits keep", stacklevel=2)
    record = tables["models"]["cohort"] | tables["provenance"].get("cohort", {})
    return RunContext(run_dir, tables, plan, chosen, run_cohort(record, plan, cohort), device)


def run_cohort(record: dict[str, Any], plan: Any, cohort: str | Path | None = None) -> Cohort:
    """The cohort a run was computed on, checked against the run's content hash.

    Looks at ``cohort`` when given, else the folder the run recorded, the plan's cohorts
    folder and the plan's own cohort (the embedded simulated cohort included).
    """
    from fmtc.pipeline import cohort_path

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


def fold_models(records: Sequence[Any], tasks: Sequence[Any],
                device: Any) -> Callable[[int, int], Any]:
    """``build(repeat, fold)``: an arm's fold model with its fit's weights, in eval mode."""
    import torch

    from fmtc.predict.models import ModelConfig

    by_fold = {(int(t.split.repeat), int(t.split.fold)): (t, r)
               for t, r in zip(tasks, records, strict=True)}

    def build(repeat: int, fold: int) -> Any:
        task, record = by_fold[(repeat, fold)]
        if record.weights is None or not Path(record.weights).is_file():
            raise InvalidDataError(f"the fit of repeat {repeat}, fold {fold} ({record.folder}) "
                                   "holds no weights; interpret the run again")
        try:
            state = torch.load(record.weights, map_location="cpu", weights_only=True)
        except Exception as error:  # an unpickling error, a truncated file
            raise InvalidDataError(f"{record.weights} cannot be read as model weights "
                                   f"({type(error).__name__}); delete {record.folder} and "
                                   "interpret the run again (it is recomputed)") from None
        model = task.arm.model_spec.module_class()(ModelConfig(**record.config))
        model.load_state_dict(state)
        return model.to(device).eval()

    return build


def cohort_inputs(cohort: Cohort, data: ExperimentData, feature_plan: tuple[Any, ...],
                  reads: Sequence[str], settings: Any, device: Any,
                  progress: bool) -> tuple[Any, dict[str, Any] | None]:
    """The :class:`~fmtc.interpret.analysis.CohortInputs` of one arm, and its encoder record.

    ``feature_plan`` is ``(FeatureSettings, EncoderSpec, connectivity kind, input scaling)``.
    """
    import torch

    from fmtc.interpret.analysis import CohortInputs
    from fmtc.interpret.baselines import time_shuffled
    from fmtc.preprocess.transforms import functional_connectivity, make_windows, scale_input

    features_settings, spec, kind, scaling = feature_plan
    windows_spec = features_settings.windows
    inputs = CohortInputs(list(cohort.subject_ids), fc=data.fc, cls=data.cls,
                          n_windows=data.n_windows)

    def shuffled_series(i: int) -> np.ndarray:
        pid = cohort.subject_ids[i]
        return time_shuffled(cohort.timeseries[pid], settings.seed + i)

    if "fc" in reads:
        inputs.shuffled_fc = lambda i: functional_connectivity(
            scale_input(shuffled_series(i), scaling), kind)
    if "cls" not in reads:
        return inputs, None
    from fmtc.represent.encoder import resolve_encoder
    from fmtc.represent.features import window_features
    from fmtc.represent.readout import readout_groups

    encoder = resolve_encoder(spec, device, progress=progress).float().eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    found = encoder.source_info.get("weights_sha256")
    expected = (data.encoder or {}).get("weights_sha256")
    if expected is not None and found != expected:
        raise InvalidDataError(f"the BrainLM encoder {spec.source!r} resolves to weights "
                               f"{str(found)[:12]}, not the {expected[:12]} the run read; "
                               "interpret on the machine and data folder of the run")
    groups = readout_groups(cohort, features_settings.readout)
    xyz = torch.as_tensor(cohort.xyz, dtype=torch.float32, device=device)

    def windows(i: int, shuffled: bool) -> np.ndarray:
        series = shuffled_series(i) if shuffled else cohort.timeseries[cohort.subject_ids[i]]
        return make_windows(scale_input(series, scaling), windows_spec.length,
                            windows_spec.stride, windows_spec.max_windows)

    def features(signal: torch.Tensor) -> torch.Tensor:
        return window_features(encoder, signal, xyz, features_settings, groups)

    def shuffled_cls(i: int) -> np.ndarray:
        with torch.no_grad():
            signal = torch.as_tensor(windows(i, True), device=device)
            return features(signal).cpu().numpy()

    inputs.first_window = lambda i, shuffled: windows(i, shuffled)[0]
    inputs.features = features
    inputs.shuffled_cls = shuffled_cls
    return inputs, dict(encoder.source_info)
