"""The faster training loop computes what the old one did.

The old loop is the frozen copy kept by ``benchmarks/bench_training_epoch.py`` (the FC
standardised and pooled for every sample of every step, the per-tensor AdamW loop, positional
``model(cls, fc)``), which was checked bit for bit against ``train_fold`` before the change.

Tolerances. With the per-tensor AdamW the new loop is the old one bit for bit: the cached FC
images are the very numbers the old forward computed (elementwise standardisation, the same
pooling per matrix). The fused AdamW performs the same update in one kernel, rounded differently
in the last bit of some parameters (one update: within 1e-6 relative). Through training those
differences grow: Adam normalises each gradient entry, so where an entry is at rounding level a
last-bit difference can flip the sign of a whole ``lr``-sized step, and the trajectories drift
apart as the old loop's own do between 1 and 2 threads. On the input below, max |delta p| after
epochs 1, 2, 3, 4: fused vs per-tensor 2.9e-6, 1.5e-5, 6.7e-5, 8.3e-5; the old loop at 1 vs 2
threads 8.8e-7, 1.1e-5, 7.5e-5, 9.6e-5. The test compares 2 epochs against 1e-4 (7x the drift
measured); over a 40-epoch fit on random inputs both differences reach 0.6-0.9
(``benchmarks/bench_training_epoch.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fmtc.plan import TrainPlan
from fmtc.predict import training
from fmtc.predict.models import FCEncoder, ModelConfig, build_model
from fmtc.predict.training import ModelInputs, fc_images, predict_logits, train_fold

CPU = torch.device("cpu")
BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_training_epoch.py"
N, W, H, R, POOL = 20, 3, 16, 40, 32
FIT, VAL, TEST = np.arange(12), np.arange(12, 16), np.arange(16, 20)


def _old_loop():
    name = "_frozen_bench_training_epoch"
    if name not in sys.modules:  # registered first: its dataclasses look their module up
        spec = importlib.util.spec_from_file_location(name, BENCHMARK)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def old():
    return _old_loop()


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as fits run in production (and as the tolerances were measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _inputs(window_fc: bool = False) -> ModelInputs:
    rng = np.random.default_rng(0)
    cls = rng.standard_normal((N, W, H)).astype(np.float32)
    n_windows = rng.integers(1, W + 1, N)
    series = rng.standard_normal((N, R, 2 * R)).astype(np.float32)
    fc = np.stack([np.corrcoef(s) for s in series]).astype(np.float32)
    fc_windows = None
    if window_fc:
        fc_windows = fc[:, None] + 0.1 * rng.standard_normal((N, W, R, R)).astype(np.float32)
    return ModelInputs.from_arrays(np.arange(N) % 2, CPU, cls=cls, n_windows=n_windows, fc=fc,
                                   fc_windows=fc_windows, window_fc=window_fc)


def _plan(aux_weight: float, epochs: int = 3) -> TrainPlan:
    return TrainPlan(epochs=epochs, batch_size=8, lr=5e-4, weight_decay=0.01,
                     aux_weight=aux_weight)


def _per_tensor_adamw(parameters, lr, weight_decay, device):
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, foreach=False)


def _both(old, inputs: ModelInputs, plan: TrainPlan, seed: int = 3):
    config = ModelConfig("fmmtc", H, R, pool_size=POOL)
    new = train_fold(config, plan, inputs, FIT, VAL, TEST, seed=seed, device=CPU)
    torch.manual_seed(seed)  # train_fold's initial weights
    initial = build_model(config).state_dict()
    index = [torch.as_tensor(a) for a in (FIT, VAL, TEST)]
    reference = old.old_fit(initial, inputs.cls, inputs.n_windows, inputs.fc, inputs.labels,
                            *index, epochs=plan.epochs, batch_size=plan.batch_size, lr=plan.lr,
                            weight_decay=plan.weight_decay, aux_weight=plan.aux_weight,
                            pool_size=POOL, seed=seed)
    return new, reference


@pytest.mark.parametrize("aux_weight", [0.0, 1.0])
def test_cached_fc_images_train_bit_for_bit_like_the_old_loop(old, monkeypatch, aux_weight):
    monkeypatch.setattr(training, "adamw", _per_tensor_adamw)
    new, reference = _both(old, _inputs(), _plan(aux_weight))
    np.testing.assert_array_equal(new.test_probabilities, reference.test_probabilities.numpy())
    np.testing.assert_array_equal(new.val_probabilities, reference.val_probabilities.numpy())
    assert new.train_loss == reference.train_loss
    state = new.model.state_dict()
    assert state.keys() == reference.state.keys()  # the saved weights' layout is unchanged
    for name, value in reference.state.items():
        assert torch.equal(state[name], value), name


def test_the_fast_loop_matches_the_old_loop_within_rounding(old):
    new, reference = _both(old, _inputs(), _plan(1.0, epochs=2))
    for ours, theirs in ((new.test_probabilities, reference.test_probabilities),
                         (new.val_probabilities, reference.val_probabilities)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-4)


def test_fused_adamw_is_the_per_tensor_update_up_to_rounding():
    torch.manual_seed(0)
    shapes = [(64, 3, 7, 7), (64,), (256, 512)]
    start = [torch.randn(s) for s in shapes]
    groups = [[torch.nn.Parameter(p.clone()) for p in start] for _ in range(2)]
    optimisers = [training.adamw(groups[0], 5e-4, 0.01, CPU),
                  _per_tensor_adamw(groups[1], 5e-4, 0.01, CPU)]
    assert optimisers[0].defaults["fused"]
    for _ in range(5):
        gradients = [torch.randn(s) for s in shapes]
        for group, optimiser in zip(groups, optimisers, strict=True):
            for parameter, gradient in zip(group, gradients, strict=True):
                parameter.grad = gradient.clone()
            optimiser.step()
    for fused, looped in zip(*groups, strict=True):
        torch.testing.assert_close(fused, looped, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["fmmtc", "fc"])
def test_the_fc_image_path_is_the_whole_path(kind):
    torch.manual_seed(0)
    net = build_model(ModelConfig(kind, H, R, pool_size=POOL))
    fc = torch.randn(4, R, R)
    net.set_standardisation(fc=(fc.mean(0), fc.std(0)))
    image = net.fc_encoder.image(fc)
    assert image.shape == (4, 1, POOL, POOL)
    named = {"cls": torch.randn(4, W, H)} if kind == "fmmtc" else {}
    for mode in (net.train, net.eval):
        mode()
        state = {k: v.clone() for k, v in net.state_dict().items()}
        whole = net(**named, fc=fc)
        net.load_state_dict(state)  # the same BatchNorm statistics for the second call
        assert torch.equal(whole, net(**named, fc_image=image))
        net.load_state_dict(state)
    with pytest.raises(ValueError, match="exactly one of fc"):
        net(**named, fc=fc, fc_image=image)
    with pytest.raises(ValueError, match=r"FC images of shape \[B, 1, 32, 32\]"):
        net(**named, fc_image=fc)


def test_fc_images_are_computed_once_per_fold(monkeypatch):
    calls = []
    image = FCEncoder.image

    def counted(self, fc):
        calls.append(len(fc))
        return image(self, fc)

    monkeypatch.setattr(FCEncoder, "image", counted)
    inputs = _inputs()
    train_fold(ModelConfig("fmmtc", H, R, pool_size=POOL), _plan(1.0, epochs=2), inputs, FIT,
               VAL, TEST, seed=0, device=CPU)
    assert calls == [N]  # every subject once, before the first step; never per step
    calls.clear()  # without pooling the image is the standardised matrix: computed per call
    train_fold(ModelConfig("fmmtc", H, R, pool_size=None), _plan(1.0, epochs=1), inputs, FIT,
               VAL, TEST, seed=0, device=CPU)
    assert len(calls) == 2 + 2  # the 2 steps, then the validation and the test subjects


@pytest.mark.parametrize("window_fc", [False, True])
@pytest.mark.parametrize("crops", ["all_windows", "random"])
def test_predictions_from_cached_images_equal_the_whole_path(window_fc, crops):
    inputs = _inputs(window_fc=True)
    if not window_fc:  # whole-recording FC in training, crops' FC for random evaluation
        inputs = ModelInputs(inputs.cls, inputs.n_windows, inputs.fc, inputs.labels,
                             inputs.fc_windows, None, False)
    for kind in ("fmmtc", "fc"):
        torch.manual_seed(0)
        net = build_model(ModelConfig(kind, H, R, pool_size=POOL))
        stats = training.standardisation_statistics(inputs, FIT)
        net.set_standardisation(cls=stats["cls"], fc=stats["fc"])
        images = fc_images(net, inputs)
        assert images.shape == ((N, W, 1, POOL, POOL) if window_fc else (N, 1, POOL, POOL))
        subjects = np.arange(N)
        found = [predict_logits(net, inputs, subjects, CPU, crops=crops,
                                generator=torch.Generator().manual_seed(1), images=cached)
                 for cached in (None, images)]
        np.testing.assert_array_equal(found[0], found[1])


def test_a_model_without_per_window_inputs_is_called_once_per_subject(monkeypatch):
    inputs = _inputs()  # holds every window's CLS, which FC-only does not read
    torch.manual_seed(0)
    net = build_model(ModelConfig("fc", H, R, pool_size=POOL)).eval()
    seen = []
    net.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs),
                                  with_kwargs=True)
    logits = predict_logits(net, inputs, np.arange(N), CPU, chunk=N)
    assert [sorted(kwargs) for kwargs in seen] == [["fc"]]
    assert seen[0]["fc"].shape == (N, R, R)
    with torch.no_grad():
        np.testing.assert_array_equal(logits, net(fc=inputs.fc).double().numpy())


def test_declared_inputs_come_from_the_registry_and_are_checked():
    inputs = _inputs()
    for kind, reads in (("fmmtc", ("cls", "fc")), ("ts", ("cls",)), ("fc", ("fc",))):
        net = build_model(ModelConfig(kind, H, R, pool_size=POOL))
        assert training.declared_inputs(net, inputs) == reads
    assert training.declared_inputs(torch.nn.Linear(2, 2), inputs) == ("cls", "fc")
    no_fc = ModelInputs(inputs.cls, inputs.n_windows, None, inputs.labels)
    with pytest.raises(ValueError, match="reads fc but the inputs hold no connectivity"):
        training.declared_inputs(torch.nn.Linear(2, 2), no_fc, reads=("fc",))
