"""The foundation-model mechanism: latent traits, masking, region subsets, read-outs, probes."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_cohorts import load_quietly, write_tiny_cohort

from fmtc.cohort.folder import load_cohort
from fmtc.errors import InvalidDataError
from fmtc.pipeline import encoder_spec, feature_settings
from fmtc.plan import BrainLMArchitecture, PlanError, SimulationPlan, load_plan
from fmtc.preprocess.transforms import lag_autocorrelation
from fmtc.represent import pretrain as pretrain_module
from fmtc.represent.brainlm import BrainLM
from fmtc.represent.features import _encode_batch, cohort_features
from fmtc.represent.pretrain import (
    PROBE_FILE,
    _epoch_batches,
    masking_noise,
    pretrain_brainlm,
    pretraining_config,
)
from fmtc.represent.probe import probe_set
from fmtc.represent.readout import readout_groups, token_readout
from fmtc.simulate.generator import N_TRAITS, simulate_cohort, trait_ar, trait_networks

CPU = torch.device("cpu")
TINY = BrainLMArchitecture(
    hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
    decoder_intermediate_size=32)


# ----------------------------------------------------------------------------------- simulator


def test_trait_networks_are_a_population_fact_shared_by_every_seed(tmp_path, sim_atlas):
    cohorts = [load_cohort(simulate_cohort(tmp_path / f"s{seed}", replace(
        SimulationPlan(), n_subjects=4, n_volumes=200, seed=seed), sim_atlas))
        for seed in (0, 5)]
    truths = [c.ground_truth for c in cohorts]
    assert truths[0]["trait_networks"] == truths[1]["trait_networks"] == trait_networks(sim_atlas)
    assert len(truths[0]["trait_networks"]) == N_TRAITS
    assert truths[0]["ts_network"] == truths[0]["trait_networks"][0]
    network = dict(zip(cohorts[0].regions["index"], cohorts[0].regions["network"], strict=True))
    assert {network[r] for r in truths[0]["ts_regions"]} == {truths[0]["ts_network"]}
    assert not set(truths[0]["fc_networks"]) & set(truths[0]["trait_networks"])
    traits = truths[0]["subject_traits"]
    assert list(traits) == cohorts[0].subject_ids
    assert all(len(v) == N_TRAITS for v in traits.values())


def test_the_trait_sets_the_timescale_and_the_label_shifts_the_first_trait(tmp_path, sim_atlas):
    assert trait_ar(-10) == pytest.approx(0.45, abs=1e-6)
    assert trait_ar(10) == pytest.approx(0.95, abs=1e-6)
    settings = replace(SimulationPlan(), n_subjects=40, n_volumes=200, fc_effect=0.0, seed=4)
    cohort = load_cohort(simulate_cohort(tmp_path / "c", settings, sim_atlas))
    truth = cohort.ground_truth
    z = np.array([truth["subject_traits"][p][0] for p in cohort.subject_ids])
    labels = cohort.labels
    assert truth["ts_trait_shift"] == pytest.approx(0.8)
    assert z[labels == 1].mean() - z[labels == 0].mean() > 1.0  # 2 delta = 1.6 planted
    # Slower trait, larger lag-1 autocorrelation of the trait network's regions.
    members = cohort.regions["index"].isin(truth["ts_regions"]).to_numpy()
    lag1 = np.array([lag_autocorrelation(cohort.timeseries[p])[members].mean()
                     for p in cohort.subject_ids])
    assert np.corrcoef(z, lag1)[0, 1] > 0.8


def test_without_effect_the_trait_is_unrelated_to_the_label(tmp_path, sim_atlas):
    settings = replace(SimulationPlan(), n_subjects=40, n_volumes=200, effect_size=0.0, seed=4)
    cohort = load_cohort(simulate_cohort(tmp_path / "c", settings, sim_atlas))
    assert cohort.ground_truth["ts_trait_shift"] == 0.0
    z = np.array([cohort.ground_truth["subject_traits"][p][0] for p in cohort.subject_ids])
    gap = z[cohort.labels == 1].mean() - z[cohort.labels == 0].mean()
    assert abs(gap) < 0.8  # two groups of 20 from N(0, 1): s.d. of the gap ~0.32


# ------------------------------------------------------------------------- masking and regions


def test_time_masking_hides_whole_time_patches():
    generator = torch.Generator().manual_seed(0)
    noise = masking_noise((3, 5, 200), 20, "time", generator)
    assert noise.shape == (3, 50)
    keep = int(50 * (1 - 0.3))
    kept = torch.zeros(3, 50, dtype=torch.bool)
    kept.scatter_(1, noise.argsort(1)[:, :keep], True)
    per_time = kept.view(3, 5, 10)
    assert (per_time.all(1) | ~per_time.any(1)).all()  # a time patch is kept or hidden whole
    assert (per_time[:, 0].sum(1) == 7).all()
    with pytest.raises(ValueError, match="unknown masking"):
        masking_noise((1, 2, 20), 20, "blocks", generator)


def test_region_subsets_are_sorted_random_and_cover_the_atlas():
    rng = np.random.default_rng(0)
    scaled = {f"s{i}": rng.standard_normal((220, 30)).astype(np.float32) for i in range(6)}
    batches = _epoch_batches(scaled, list(scaled), 200, 4, np.random.default_rng(1), regions=8)
    windows, picks = batches[0]
    assert windows.shape == (4, 8, 200) and picks.shape == (4, 8)
    assert all((np.diff(p) > 0).all() for p in picks)
    everything = _epoch_batches(scaled, list(scaled), 200, 4, np.random.default_rng(1))
    assert everything[0][0].shape == (4, 30, 200)
    assert len({tuple(p) for _, picks in batches for p in picks}) > 1


def test_a_plan_with_a_bad_masking_or_readout_is_refused():
    with pytest.raises(PlanError, match="masking"):
        load_plan("smoke").replace(pretrain={"masking": "blocks"})
    with pytest.raises(PlanError, match="readout"):
        load_plan("smoke").replace(brainlm={"readout": "max"})
    with pytest.raises(PlanError, match="regions_per_window"):
        load_plan("smoke").replace(pretrain={"regions_per_window": 1})


# ----------------------------------------------------------------------------------- read-outs


@pytest.fixture(scope="module")
def tiny_model():
    plan = load_plan("smoke")
    config = pretraining_config(replace(plan.pretrain, architecture=TINY), plan.windows, 12)
    torch.manual_seed(0)
    return BrainLM(config).eval()


def test_readouts_are_the_cls_the_token_mean_and_the_per_network_means(tiny_model):
    signal, xyz = torch.randn(2, 6, 200), torch.randn(2, 6, 3) * 50
    groups = np.array([1, 0, 1, 2, 0, 1])
    with torch.no_grad():
        latent = tiny_model.encode_tokens(signal, xyz)
        assert torch.allclose(token_readout(latent, "cls"), tiny_model.encode(signal, xyz))
        tokens = latent[:, 1:].reshape(2, 6, 10, 16)
        assert torch.allclose(token_readout(latent, "mean"), tokens.mean((1, 2)), atol=1e-6)
        per_network = token_readout(latent, "network-mean", groups)
    assert per_network.shape == (2, 48)
    expected = torch.cat([tokens[:, groups == g].mean((1, 2)) for g in range(3)], dim=1)
    assert torch.allclose(per_network, expected, atol=1e-6)


def test_shuffled_token_orders_are_put_back_before_the_readout(tiny_model):
    # BrainLM adds positions before shuffling; only its token convolution depends on the order.
    # Without it, a shuffled pass whose tokens are put back reads out like the identity pass.
    order_free = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for name, parameter in order_free.vit.named_parameters():
            if ".conv." in name:
                parameter.zero_()
    signal, xyz = torch.randn(2, 6, 200), torch.randn(6, 3) * 50
    plan = load_plan("smoke")
    shuffled = plan.replace(brainlm={"token_order": "shuffle-mean", "n_shuffles": 3})
    with torch.no_grad():
        identity = _encode_batch(order_free, signal, xyz, feature_settings(plan))
        restored = _encode_batch(order_free, signal, xyz, feature_settings(shuffled))
        changed = _encode_batch(tiny_model, signal, xyz, feature_settings(shuffled))
    assert torch.allclose(identity, restored, atol=1e-4)
    assert not torch.allclose(_encode_batch(tiny_model, signal, xyz, feature_settings(plan)),
                              changed, atol=1e-4)


def test_network_readout_without_networks_names_the_cohort_and_the_fix(tmp_path):
    cohort = load_quietly(write_tiny_cohort(tmp_path / "c", [220, 220, 220, 220]))
    cohort.regions.pop("network")
    with pytest.raises(InvalidDataError, match="no 'network' column.*readout"):
        readout_groups(cohort, "network-mean")
    assert readout_groups(cohort, "mean") is None


def test_the_feature_cache_is_keyed_by_the_readout(tmp_path, small_cohort, tiny_model):
    cohort = load_cohort(small_cohort)
    plan = load_plan("smoke").replace(outputs={"features_dir": str(tmp_path / "f")})
    tiny_model.source_info = {"source": "test", "weights_sha256": "0" * 64}
    sets = {readout: cohort_features(cohort,
                                     feature_settings(plan.replace(brainlm={"readout": readout})),
                                     encoder_spec(plan), model=tiny_model)
            for readout in ("cls", "mean", "network-mean")}
    n_networks = cohort.regions["network"].nunique()
    assert sets["cls"].cls.shape[-1] == sets["mean"].cls.shape[-1] == 16
    assert sets["network-mean"].cls.shape[-1] == 16 * n_networks
    assert {s.encoder["readout"] for s in sets.values()} == set(sets)
    assert len({s.folder for s in sets.values()}) == 3
    assert plan.brainlm.readout == "network-mean"  # the embedded default's read-out


# -------------------------------------------------------------------------------------- probes


def test_pretraining_writes_a_probe_report_from_step_zero_and_keeps_it_on_resume(
        tmp_path, small_cohort, monkeypatch):
    plan = load_plan("smoke")
    settings = replace(plan.pretrain, architecture=TINY, epochs=4, batch_size=4,
                       probe_points=2, regions_per_window=24)
    corpus = load_cohort(small_cohort)
    probes = probe_set(corpus, plan.windows)
    assert set(probes.targets) == {"label"} | {f"trait-{k + 1}" for k in range(N_TRAITS)}
    out = tmp_path / "enc"
    log = pretrain_brainlm(corpus, out, settings, init=None, device=CPU, windows=plan.windows,
                           progress=False, probes=probes)
    report = json.loads((out / PROBE_FILE).read_text())
    assert [p["epoch"] for p in report["points"]] == [0, 2, 4]
    assert report["points"][-1]["step"] == 4 * 3  # 10 training subjects, batch 4: 3 steps
    assert len(log["epochs"]) == 4
    point = report["points"][0]["mcc"]
    assert set(point) == {"cls", "mean", "network-mean"}
    assert all(-1 <= v <= 1 for targets in point.values() for v in targets.values())
    assert report["probe_cohort"]["n_subjects"] == len(corpus.subject_ids)

    # A run killed in its fourth epoch resumes with the points it had measured.
    real_epoch = pretrain_module._train_epoch
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "_train_epoch", interrupted)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        pretrain_brainlm(corpus, resumed, settings, init=None, device=CPU, windows=plan.windows,
                         progress=False, probes=probes)
    monkeypatch.setattr(pretrain_module, "_train_epoch", real_epoch)
    pretrain_brainlm(corpus, resumed, settings, init=None, device=CPU, windows=plan.windows,
                     progress=False, probes=probes)
    again = json.loads((resumed / PROBE_FILE).read_text())["points"]
    assert [(p["step"], p["mcc"]) for p in again] == [(p["step"], p["mcc"])
                                                      for p in report["points"]]


def test_the_probe_table_has_a_row_per_readout_and_target_and_a_column_per_step():
    from fmtc.cli.pretrain import format_probe

    report = {"points": [{"step": s, "mcc": {"cls": {"label": v, "trait-1": -v},
                                             "mean": {"label": v / 2, "trait-1": 0.0}}}
                         for s, v in ((0, 0.0), (40, 0.25), (80, 0.5))]}
    lines = format_probe(report).splitlines()
    assert lines[1].split() == ["0", "40", "80"]
    assert lines[2].split() == ["cls:label", "0.00", "0.25", "0.50"]
    assert lines[3].split() == ["cls:trait-1", "-0.00", "-0.25", "-0.50"]
    assert len(lines) == 2 + 4
