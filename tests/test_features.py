"""BrainLM TS features: deterministic, a result keyed by what they depend on, published whole."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_cohorts import load_quietly, write_tiny_cohort

from fmtc.errors import CacheError, OutputError
from fmtc.lifecycle import RECORD, find, read_record
from fmtc.pipeline import encoder_spec, feature_settings
from fmtc.plan import load_plan
from fmtc.represent import encoder as encoder_module
from fmtc.represent import features as features_module
from fmtc.represent.brainlm import BrainLM, BrainLMConfig
from fmtc.represent.encoder import simulated_encoder, simulated_encoder_folder
from fmtc.represent.features import BrainLMFeatures, cohort_features, read_features
from fmtc.represent.loading import load_brainlm, save_brainlm

N_REGIONS = 12
TINY = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 32, "decoder_hidden_size": 16, "decoder_num_hidden_layers": 1,
        "decoder_num_attention_heads": 2, "decoder_intermediate_size": 32,
        "conv_kernel_size": 5, "model_type": "brainlm_mae"}


def _tiny_encoder(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = BrainLM(BrainLMConfig.from_dict(TINY))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return save_brainlm(model, folder)


@pytest.fixture()
def setup(tmp_path):
    """(cohort, plan) with a tiny saved encoder as brainlm.source and outputs under tmp_path."""
    cohort = load_quietly(write_tiny_cohort(tmp_path / "cohort", [220] * 5))
    encoder = _tiny_encoder(tmp_path / "encoder")
    plan = load_plan("smoke").replace(
        brainlm={"source": str(encoder), "batch_size": 3},
        outputs={"features_dir": str(tmp_path / "features"),
                 "models_dir": str(tmp_path / "models")})
    return cohort, plan


def _fail(*args, **kwargs):
    raise AssertionError("a cache hit must not build, load or run the encoder")


def features(cohort, plan, source=None, model=None):
    """The plan's features of ``cohort`` (``source`` overrides brainlm.source)."""
    return cohort_features(cohort, feature_settings(plan), encoder_spec(plan, source),
                           model=model)


def published(cohort, plan, source=None):
    """The published folder of the plan's features, or None (nothing is built or encoded)."""
    found = find(BrainLMFeatures(cohort, feature_settings(plan), encoder_spec(plan, source)))
    return None if found is None else found.folder


def _finished_simulated_encoder(plan, seed=0):
    """A tiny encoder published as the plan's simulated-pretrained one (no pretraining)."""
    import json

    from fmtc.lifecycle import materialise

    encoder = simulated_encoder(encoder_spec(plan))

    class Stand(type(encoder)):  # computes a tiny random encoder instead of pretraining
        def compute(self, staging, extras):
            _tiny_encoder(staging, seed)
            (staging / "training_log.json").write_text(json.dumps({"stand-in": True}))

    import dataclasses

    stand = Stand(**{f.name: getattr(encoder, f.name) for f in dataclasses.fields(encoder)})
    return materialise(stand).folder


def test_two_calls_give_identical_features(setup):
    cohort, plan = setup
    cold = features(cohort, plan)
    warm = features(cohort, plan)
    assert cold.subject_ids == warm.subject_ids == cohort.subject_ids
    assert not cold.reused and warm.reused
    n_networks = cohort.regions["network"].nunique()  # smoke reads token means per network
    assert cold.cls.shape == (5, 2, TINY["hidden_size"] * n_networks)
    assert cold.cls.dtype == np.float32
    assert cold.cls.tobytes() == warm.cls.tobytes()
    assert np.array_equal(cold.n_windows, warm.n_windows)
    assert cold.encoder == warm.encoder and cold.folder == warm.folder
    assert len(cold.encoder["weights_sha256"]) == 64


def test_cold_run_returns_the_values_read_back_from_the_cache(setup):
    cohort, plan = setup
    cold = features(cohort, plan)
    with np.load(cold.folder / "features.npz") as stored:
        assert cold.cls.tobytes() == stored["cls"].tobytes()


def test_second_embed_hits_the_cache(setup, monkeypatch):
    cohort, plan = setup
    first = features(cohort, plan)
    for name in ("resolve_encoder", "_encode_cohort"):
        monkeypatch.setattr(features_module, name, _fail)
    monkeypatch.setattr(encoder_module, "load_brainlm", _fail)
    assert published(cohort, plan) == first.folder
    second = features(cohort, plan)
    assert np.array_equal(first.cls, second.cls)


def test_given_encoder_and_plan_source_share_one_cache_entry(setup, monkeypatch):
    cohort, plan = setup
    model = load_brainlm(plan.brainlm.source)
    first = features(cohort, plan, model=model)
    monkeypatch.setattr(features_module, "_encode_cohort", _fail)
    assert features(cohort, plan).folder == first.folder


def test_cache_key_changes_with_token_order_and_windows(setup):
    cohort, plan = setup
    base = features(cohort, plan).folder
    shuffled = plan.replace(brainlm={"token_order": "shuffle-mean", "n_shuffles": 2})
    strided = plan.replace(windows={"stride": 50})
    other_seed = shuffled.replace(seed=1)
    paths = {features(cohort, p).folder for p in (shuffled, strided, other_seed)}
    assert len(paths | {base}) == 4
    # n_shuffles does not change identity-order features, so it does not change their key
    unshuffled = plan.replace(brainlm={"n_shuffles": 3})
    assert published(cohort, unshuffled) == base


def test_cache_key_changes_with_encoder_weights_and_cohort(setup, tmp_path):
    cohort, plan = setup
    base = features(cohort, plan).folder
    other = _tiny_encoder(tmp_path / "other-encoder", seed=1)
    assert features(cohort, plan, source=str(other)).folder != base
    other_cohort = load_quietly(write_tiny_cohort(tmp_path / "cohort2", [220] * 5, seed=1))
    assert features(other_cohort, plan).folder != base


def test_interrupted_cache_write_leaves_no_file(setup, monkeypatch):
    cohort, plan = setup

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(features_module.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        features(cohort, plan)
    folder = plan.path(plan.outputs.features_dir)
    assert [p.name for p in folder.iterdir() if p.name != ".locks"] == []
    assert published(cohort, plan) is None
    monkeypatch.undo()
    assert features(cohort, plan).cls.shape[0] == 5


def test_features_without_their_record_are_computed_again(setup):
    cohort, plan = setup
    first = features(cohort, plan)
    (first.folder / RECORD).unlink()  # as if the run died before the folder was whole
    assert published(cohort, plan) is None
    assert features(cohort, plan).cls.tobytes() == first.cls.tobytes()


def test_subjects_of_different_lengths_are_nan_padded(tmp_path, setup):
    _, plan = setup
    cohort = load_quietly(write_tiny_cohort(tmp_path / "mixed", [220, 150, 300]))
    found = features(cohort, plan)
    assert found.n_windows.tolist() == [2, 1, 2]
    assert np.isnan(found.cls[1, 1]).all()
    assert np.isfinite(found.cls[0]).all() and np.isfinite(found.cls[1, 0]).all()


def test_features_match_encoding_each_window_alone(setup):
    cohort, plan = setup
    from fmtc.preprocess.transforms import make_windows, robust_scale

    model = load_brainlm(plan.brainlm.source)
    for order in ("identity", "shuffle-mean"):
        p = plan.replace(brainlm={"token_order": order, "n_shuffles": 3, "readout": "cls"},
                         seed=5)
        found = features(cohort, p)
        spec = p.windows
        for row in (0, 4):  # the last subject shares a batch of 3 with another
            windows = make_windows(robust_scale(cohort.timeseries[cohort.subject_ids[row]]),
                                   spec.length, spec.stride, spec.max_windows)
            with torch.no_grad():
                for col, window in enumerate(windows):
                    alone = model.encode(torch.from_numpy(window[None]),
                                         torch.from_numpy(cohort.xyz[None]), token_order=order,
                                         n_shuffles=3, seed=5)
                    np.testing.assert_allclose(found.cls[row, col], alone[0].numpy(),
                                               atol=1e-5)


def test_simulated_source_is_read_back_without_pretraining(setup, monkeypatch):
    cohort, plan = setup
    plan = plan.replace(brainlm={"source": "simulated-pretrained"})
    folder = _finished_simulated_encoder(plan)  # stands in for a finished pretraining
    assert folder == simulated_encoder_folder(encoder_spec(plan))
    first = features(cohort, plan)
    assert first.encoder["source"] == "simulated-pretrained"
    assert first.encoder["folder"] == str(folder)
    assert first.encoder["key"] == read_record(folder)["key"]
    for name in ("build_simulated_encoder", "load_brainlm"):
        monkeypatch.setattr(encoder_module, name, _fail)
    monkeypatch.setattr(features_module, "resolve_encoder", _fail)
    assert features(cohort, plan).folder == first.folder


@pytest.mark.parametrize("damage", ["truncated", "foreign", "shape"])
def test_a_damaged_cache_is_reported_and_rebuilt_not_trusted(setup, caplog, damage):
    cohort, plan = setup
    first = features(cohort, plan)
    path = first.folder / "features.npz"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "foreign":
        np.savez(path, something=np.arange(3))
    else:  # arrays of the wrong shape under the right key
        with np.load(path) as stored:
            arrays = dict(stored)
        np.savez(path, **{**arrays, "cls": arrays["cls"][:2]})
    with pytest.raises(CacheError, match=re.escape(str(path))):
        read_features(first.folder)
    with caplog.at_level(logging.WARNING, logger="fmtc"):
        rebuilt = features(cohort, plan)
    assert any(str(first.folder) in r.getMessage() and "recomputing" in r.getMessage()
               for r in caplog.records)
    assert rebuilt.cls.tobytes() == first.cls.tobytes() and not rebuilt.reused
    assert read_features(first.folder).cls.tobytes() == first.cls.tobytes()  # whole again


def test_an_unwritable_cache_folder_is_reported_before_any_encoding(setup, tmp_path, monkeypatch):
    cohort, plan = setup
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    plan = plan.replace(outputs={"features_dir": str(blocker / "features")})
    monkeypatch.setattr(features_module, "_encode_cohort", _fail)
    monkeypatch.setattr(features_module, "resolve_encoder", _fail)
    with pytest.raises(OutputError, match="a-file/features: cannot write the features"):
        features(cohort, plan)


def test_a_damaged_published_encoder_is_rebuilt(setup, monkeypatch, caplog):
    _, plan = setup
    plan = plan.replace(brainlm={"source": "simulated-pretrained"})
    folder = _finished_simulated_encoder(plan)
    (folder / "pytorch_model.bin").write_bytes(b"\x00" * 64)  # a truncated download / disk error
    builds = []
    real = encoder_module.materialise

    def materialise(result, *args, overwrite=False, **kwargs):  # rebuilds the stand-in
        if overwrite:
            builds.append(result.default_folder())
            _tiny_encoder(result.default_folder(), seed=1)
            return real(result, *args, **kwargs)
        return real(result, *args, **kwargs)

    monkeypatch.setattr(encoder_module, "materialise", materialise)
    with caplog.at_level(logging.WARNING, logger="fmtc"):
        model = encoder_module.resolve_encoder(encoder_spec(plan), torch.device("cpu"))
    assert builds == [folder]
    assert "damaged" in caplog.text and "pytorch_model.bin" in caplog.text
    assert model.source_info["folder"] == str(folder)


def test_the_random_init_encoder_is_the_untrained_architecture_and_is_cached(setup, monkeypatch):
    cohort, plan = setup
    tiny = {k: v for k, v in TINY.items() if k not in ("conv_kernel_size", "model_type")}
    plan = plan.replace(brainlm={"source": "random-init"},
                        pretrain={"architecture": tiny, "seed": 3})
    model = encoder_module.resolve_encoder(encoder_spec(plan), torch.device("cpu"))
    again = encoder_module.random_init_encoder(encoder_spec(plan))
    assert model.source_info["weights_sha256"] == again.source_info["weights_sha256"]
    for key, value in model.state_dict().items():  # the same seed, the same weights
        assert torch.equal(value, again.state_dict()[key])
    other = encoder_module.random_init_encoder(encoder_spec(plan.replace(pretrain={"seed": 4})))
    assert other.source_info["weights_sha256"] != model.source_info["weights_sha256"]
    assert model.config.hidden_size == TINY["hidden_size"]

    first = features(cohort, plan)
    assert first.encoder["source"] == "random-init"
    monkeypatch.setattr(features_module, "_encode_cohort", _fail)
    assert features(cohort, plan).folder == first.folder
