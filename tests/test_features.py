"""BrainLM CLS features: deterministic, cached under a complete key, written atomically."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_cohorts import load_quietly, write_tiny_cohort

from fmtc.errors import CacheError, OutputError
from fmtc.plan import load_plan
from fmtc.represent import encoder as encoder_module
from fmtc.represent import features as features_module
from fmtc.represent.brainlm import BrainLM, BrainLMConfig
from fmtc.represent.encoder import SETTINGS_FILE, simulated_encoder_folder, simulated_settings
from fmtc.represent.features import cached_feature_path, cohort_features, read_features
from fmtc.represent.loading import load_brainlm, save_brainlm
from fmtc.storage import write_json

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


def test_two_calls_give_identical_features(setup):
    cohort, plan = setup
    cold = cohort_features(cohort, plan, progress=False)
    warm = cohort_features(cohort, plan, progress=False)
    assert cold.subject_ids == warm.subject_ids == cohort.subject_ids
    assert not cold.cache_hit and warm.cache_hit
    n_networks = cohort.regions["network"].nunique()  # smoke reads token means per network
    assert cold.cls.shape == (5, 2, TINY["hidden_size"] * n_networks)
    assert cold.cls.dtype == np.float32
    assert cold.cls.tobytes() == warm.cls.tobytes()
    assert np.array_equal(cold.n_windows, warm.n_windows)
    assert cold.encoder == warm.encoder and cold.cache_path == warm.cache_path
    assert len(cold.encoder["weights_sha256"]) == 64


def test_cold_run_returns_the_values_read_back_from_the_cache(setup):
    cohort, plan = setup
    cold = cohort_features(cohort, plan, progress=False)
    with np.load(cold.cache_path) as stored:
        assert cold.cls.tobytes() == stored["cls"].tobytes()


def test_second_embed_hits_the_cache(setup, monkeypatch):
    cohort, plan = setup
    first = cohort_features(cohort, plan, progress=False)
    for name in ("resolve_encoder", "_encode_cohort"):
        monkeypatch.setattr(features_module, name, _fail)
    monkeypatch.setattr(encoder_module, "load_brainlm", _fail)
    assert cached_feature_path(cohort, plan) == first.cache_path
    second = cohort_features(cohort, plan, progress=False)
    assert np.array_equal(first.cls, second.cls)


def test_given_encoder_and_plan_source_share_one_cache_entry(setup, monkeypatch):
    cohort, plan = setup
    model = load_brainlm(plan.brainlm.source)
    first = cohort_features(cohort, plan, encoder=model, progress=False)
    monkeypatch.setattr(features_module, "_encode_cohort", _fail)
    assert cohort_features(cohort, plan, progress=False).cache_path == first.cache_path


def test_cache_key_changes_with_token_order_and_windows(setup):
    cohort, plan = setup
    base = cohort_features(cohort, plan, progress=False).cache_path
    shuffled = plan.replace(brainlm={"token_order": "shuffle-mean", "n_shuffles": 2})
    strided = plan.replace(windows={"stride": 50})
    other_seed = shuffled.replace(seed=1)
    paths = {cohort_features(cohort, p, progress=False).cache_path
             for p in (shuffled, strided, other_seed)}
    assert len(paths | {base}) == 4
    # n_shuffles does not change identity-order features, so it does not change their key
    unshuffled = plan.replace(brainlm={"n_shuffles": 3})
    assert cached_feature_path(cohort, unshuffled) == base


def test_cache_key_changes_with_encoder_weights_and_cohort(setup, tmp_path):
    cohort, plan = setup
    base = cohort_features(cohort, plan, progress=False).cache_path
    other = _tiny_encoder(tmp_path / "other-encoder", seed=1)
    assert cohort_features(cohort, plan, source=str(other), progress=False).cache_path != base
    other_cohort = load_quietly(write_tiny_cohort(tmp_path / "cohort2", [220] * 5, seed=1))
    assert cohort_features(other_cohort, plan, progress=False).cache_path != base


def test_interrupted_cache_write_leaves_no_file(setup, monkeypatch):
    cohort, plan = setup

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(features_module.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        cohort_features(cohort, plan, progress=False)
    folder = plan.path(plan.outputs.features_dir)
    assert [p.name for p in folder.iterdir()] == []
    assert cached_feature_path(cohort, plan) is None
    monkeypatch.undo()
    assert cohort_features(cohort, plan, progress=False).cls.shape[0] == 5


def test_arrays_without_their_key_file_are_a_cache_miss(setup):
    cohort, plan = setup
    first = cohort_features(cohort, plan, progress=False)
    first.cache_path.with_suffix(".json").unlink()  # as if the run died between the two files
    assert cached_feature_path(cohort, plan) is None
    assert cohort_features(cohort, plan, progress=False).cls.tobytes() == first.cls.tobytes()


def test_subjects_of_different_lengths_are_nan_padded(tmp_path, setup):
    _, plan = setup
    cohort = load_quietly(write_tiny_cohort(tmp_path / "mixed", [220, 150, 300]))
    features = cohort_features(cohort, plan, progress=False)
    assert features.n_windows.tolist() == [2, 1, 2]
    assert np.isnan(features.cls[1, 1]).all()
    assert np.isfinite(features.cls[0]).all() and np.isfinite(features.cls[1, 0]).all()


def test_features_match_encoding_each_window_alone(setup):
    cohort, plan = setup
    from fmtc.preprocess.transforms import make_windows, robust_scale

    model = load_brainlm(plan.brainlm.source)
    for order in ("identity", "shuffle-mean"):
        p = plan.replace(brainlm={"token_order": order, "n_shuffles": 3, "readout": "cls"},
                         seed=5)
        features = cohort_features(cohort, p, progress=False)
        spec = p.windows
        for row in (0, 4):  # the last subject shares a batch of 3 with another
            windows = make_windows(robust_scale(cohort.timeseries[cohort.subject_ids[row]]),
                                   spec.length, spec.stride, spec.max_windows)
            with torch.no_grad():
                for col, window in enumerate(windows):
                    alone = model.encode(torch.from_numpy(window[None]),
                                         torch.from_numpy(cohort.xyz[None]), token_order=order,
                                         n_shuffles=3, seed=5)
                    np.testing.assert_allclose(features.cls[row, col], alone[0].numpy(),
                                               atol=1e-5)


def test_simulated_source_hits_the_cache_without_pretraining(setup, tmp_path, monkeypatch):
    cohort, plan = setup
    plan = plan.replace(brainlm={"source": "simulated-pretrained"})
    folder = simulated_encoder_folder(plan)  # stand in for a finished pretraining run
    _tiny_encoder(folder)
    write_json(folder / SETTINGS_FILE, simulated_settings(plan))
    first = cohort_features(cohort, plan, progress=False)
    assert first.encoder["source"] == "simulated-pretrained"
    assert first.encoder["folder"] == str(folder)
    assert first.encoder["settings"] == simulated_settings(plan)
    for name in ("build_simulated_encoder", "load_brainlm"):
        monkeypatch.setattr(encoder_module, name, _fail)
    monkeypatch.setattr(features_module, "resolve_encoder", _fail)
    assert cohort_features(cohort, plan, progress=False).cache_path == first.cache_path


@pytest.mark.parametrize("damage", ["truncated", "foreign", "shape"])
def test_a_damaged_cache_is_reported_and_rebuilt_not_trusted(setup, caplog, damage):
    cohort, plan = setup
    first = cohort_features(cohort, plan, progress=False)
    path = first.cache_path
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "foreign":
        np.savez(path, something=np.arange(3))
    else:  # arrays of the wrong shape under the right key
        with np.load(path) as stored:
            arrays = dict(stored)
        np.savez(path, **{**arrays, "cls": arrays["cls"][:2]})
    with pytest.raises(CacheError, match=re.escape(str(path))):
        read_features(path)
    with caplog.at_level(logging.WARNING, logger="fmtc"):
        rebuilt = cohort_features(cohort, plan, progress=False)
    assert any(str(path) in r.getMessage() and "rebuilding" in r.getMessage()
               for r in caplog.records)
    assert rebuilt.cls.tobytes() == first.cls.tobytes() and not rebuilt.cache_hit
    assert read_features(path).cls.tobytes() == first.cls.tobytes()  # the file is whole again


def test_an_unwritable_cache_folder_is_reported_before_any_encoding(setup, tmp_path, monkeypatch):
    cohort, plan = setup
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    plan = plan.replace(outputs={"features_dir": str(blocker / "features")})
    monkeypatch.setattr(features_module, "_encode_cohort", _fail)
    monkeypatch.setattr(features_module, "resolve_encoder", _fail)
    with pytest.raises(OutputError, match="a-file/features: cannot write the feature cache"):
        cohort_features(cohort, plan, progress=False)


def test_a_damaged_cached_encoder_is_rebuilt(setup, monkeypatch, caplog):
    _, plan = setup
    plan = plan.replace(brainlm={"source": "simulated-pretrained"})
    folder = simulated_encoder_folder(plan)
    _tiny_encoder(folder)
    write_json(folder / SETTINGS_FILE, simulated_settings(plan))
    (folder / "pytorch_model.bin").write_bytes(b"\x00" * 64)  # a truncated download / disk error
    builds = []

    def build(plan, device, progress=True):  # stands in for the (slow) pretraining
        builds.append(folder)
        _tiny_encoder(folder, seed=1)
        write_json(folder / SETTINGS_FILE, simulated_settings(plan))
        return folder

    monkeypatch.setattr(encoder_module, "build_simulated_encoder", build)
    with caplog.at_level(logging.WARNING, logger="fmtc"):
        model = encoder_module.resolve_encoder(plan, torch.device("cpu"), progress=False)
    assert builds == [folder]
    assert "damaged" in caplog.text and "pytorch_model.bin" in caplog.text
    assert model.source_info["folder"] == str(folder)


def test_the_random_init_encoder_is_the_untrained_architecture_and_is_cached(setup, monkeypatch):
    cohort, plan = setup
    tiny = {k: v for k, v in TINY.items() if k not in ("conv_kernel_size", "model_type")}
    plan = plan.replace(brainlm={"source": "random-init"},
                        pretrain={"architecture": tiny, "seed": 3})
    model = encoder_module.resolve_encoder(plan, torch.device("cpu"), progress=False)
    again = encoder_module.random_init_encoder(plan)
    assert model.source_info["weights_sha256"] == again.source_info["weights_sha256"]
    for key, value in model.state_dict().items():  # the same seed, the same weights
        assert torch.equal(value, again.state_dict()[key])
    other = encoder_module.random_init_encoder(plan.replace(pretrain={"seed": 4}))
    assert other.source_info["weights_sha256"] != model.source_info["weights_sha256"]
    assert model.config.hidden_size == TINY["hidden_size"]

    first = cohort_features(cohort, plan, progress=False)
    assert first.encoder["source"] == "random-init"
    monkeypatch.setattr(features_module, "_encode_cohort", _fail)
    assert cohort_features(cohort, plan, progress=False).cache_path == first.cache_path
