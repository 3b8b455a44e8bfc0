"""Cost of integrated gradients per subject: fmtc's batched attribution vs a plain captum loop.

``fmtc interpret`` attributes a fold's test subjects in one captum call per path
(:mod:`fmtc.interpret.attribution`: all subjects x ``n_steps`` interpolated inputs, chunked by
``internal_batch_size``). The reference is the plain captum recipe: one
``IntegratedGradients.attribute`` call per subject, every interpolated input of that subject in
one forward pass. Both sides compute the same attributions (checked: maximum difference
printed), in one process, alternating, on the same model and inputs:

- **FC path**: FMM_TC (R = 424, the smoke profile's 64 x 64 pooling, the smoke encoder's
  network-mean features) with respect to the R x R matrix, ``n_steps`` 50, a fold of 12 test
  subjects;
- **TS path**: through a BrainLM of the smoke profile's size (hidden 32, 2 layers; random
  weights: the cost does not depend on them) with respect to a 424 x 200 window, ``ts_steps``
  16, 4 subjects (the CPU default per fold).

Wall-clock seconds per subject are the headline; the ratio is loop / batched.
Usage: ``.venv/bin/python benchmarks/bench_interpret.py [--threads 2] [--repeats 2]``

Measured on the project's 2-core CPU (2 threads, median; 2026-11-30, 2 repeats): FC 0.556
s/subject batched vs 0.495 looped (0.89x), TS 5.45 vs 5.91 (1.08x); 2026-12-07 (1 repeat,
models called with named inputs): FC 0.461 vs 0.329 (0.71x), TS 3.95 vs 3.44 (0.87x);
identical attributions (max |diff| 1e-10). On a CPU, batching subjects buys nothing and the
larger passes cost up to a third more: captum already evaluates a subject's ``n_steps``
points in one pass and the cores are busy either way. What
batching gives is a bounded memory (``internal_batch_size`` caps a pass whatever ``n_steps``
and the number of subjects) and fuller passes on a GPU (not measured: no GPU was lent).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from fmtc.interpret.attribution import evidence, fc_attributions, ts_attributions
from fmtc.predict.models import FMMTC, ModelConfig
from fmtc.represent.brainlm import BrainLM, BrainLMConfig

REGIONS, FEATURES, WINDOW = 424, 224, 200


def _model() -> FMMTC:
    torch.manual_seed(0)
    model = FMMTC(ModelConfig("fmmtc", FEATURES, REGIONS, pool_size=64)).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _encoder() -> BrainLM:
    torch.manual_seed(0)
    config = BrainLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, decoder_hidden_size=32,
                           decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                           decoder_intermediate_size=32)
    encoder = BrainLM(config).eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return encoder


def _loop(forward, inputs: torch.Tensor, baselines: torch.Tensor, extra: list, n_steps: int
          ) -> torch.Tensor:
    """The plain captum recipe: one subject per ``attribute`` call, no internal batching."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(forward)
    out = [ig.attribute(inputs[i:i + 1], baselines=baselines[i:i + 1],
                        additional_forward_args=tuple(e[i:i + 1] for e in extra),
                        n_steps=n_steps) for i in range(len(inputs))]
    return torch.cat(out)


def _timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fc-subjects", type=int, default=12)
    parser.add_argument("--ts-subjects", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(1)
    model, encoder = _model(), _encoder()
    fc = torch.randn(args.fc_subjects, REGIONS, REGIONS, generator=g)
    cls = torch.randn(args.fc_subjects, 2, FEATURES, generator=g)
    valid = torch.ones(args.fc_subjects, 2, dtype=torch.bool)
    base = torch.zeros_like(fc)
    xyz = torch.randn(REGIONS, 3, generator=g) * 50
    groups = torch.arange(REGIONS) % 7

    def features(windows: torch.Tensor) -> torch.Tensor:
        tokens = encoder.encode_tokens(windows, xyz.expand(len(windows), -1, -1))[:, 1:]
        per_region = tokens.reshape(len(windows), REGIONS, -1, 32).mean(2)
        return torch.cat([per_region[:, groups == k].mean(1) for k in range(7)], dim=1)

    windows = torch.randn(args.ts_subjects, REGIONS, WINDOW, generator=g)
    ts_fc = fc[:args.ts_subjects]

    def fc_forward(x, c, v):
        return evidence(model(cls=c, fc=x), v)

    def ts_forward(w, f):
        return evidence(model(cls=features(w), fc=f))

    rows = {k: [] for k in ("fc_batched", "fc_loop", "ts_batched", "ts_loop")}
    diffs = {}
    for _ in range(args.repeats):
        t, batched = _timed(lambda: fc_attributions(model, fc, base, cls, valid, n_steps=50,
                                                    internal_batch_size=64))
        rows["fc_batched"].append(t / args.fc_subjects)
        t, loop = _timed(lambda: _loop(fc_forward, fc, base, [cls, valid], 50))
        rows["fc_loop"].append(t / args.fc_subjects)
        diffs["fc"] = float((batched.values[0] - loop).abs().max())
        t, batched = _timed(lambda: ts_attributions(model, features, windows,
                                                    torch.zeros_like(windows), ts_fc,
                                                    n_steps=16, internal_batch_size=16))
        rows["ts_batched"].append(t / args.ts_subjects)
        t, loop = _timed(lambda: _loop(ts_forward, windows, torch.zeros_like(windows), [ts_fc],
                                       16))
        rows["ts_loop"].append(t / args.ts_subjects)
        diffs["ts"] = float((batched.values[0] - loop).abs().max())
    print(f"# bench_interpret: {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, {args.threads} threads, {args.repeats} repeats (median)")
    print("| path | batched s/subject | captum loop s/subject | loop / batched | max |diff| |")
    print("|---|---|---|---|---|")
    for path in ("fc", "ts"):
        fast = float(torch.tensor(rows[f"{path}_batched"]).median())
        slow = float(torch.tensor(rows[f"{path}_loop"]).median())
        print(f"| {path.upper()} | {fast:.3f} | {slow:.3f} | {slow / fast:.2f} | "
              f"{diffs[path]:.1e} |")


if __name__ == "__main__":
    main()
