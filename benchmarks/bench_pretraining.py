"""Pretraining throughput: full 424-region windows vs random region subsets (issue 11).

``pretrain.regions_per_window`` makes each pretraining window keep a random subset of its
regions. A 48-region window has 1/8.8 of the tokens of a full one, and attention over 4,240
tokens makes a full window cost more per token too, so the same wall-clock budget trains on many
more windows. This benchmark times AdamW steps of the `quick`
architecture (hidden 32, 2 encoder layers, 1 decoder layer), mask ratio 0.5, on random data, in
one process and interleaved so both settings see the same machine state:

- ``full``: batch 2 of full 424-region windows (the recipe before issue 11);
- ``subset``: batch 8 of 48-region windows (the `quick` recipe).

It prints seconds per step, windows per second, tokens per second and the ratio of windows per
second (subset / full), the headline figure, and the step cost per token of each (measured on the
project's 2-core machine: 10 steps each, full 0.599 s/step = 70.6 us/token, subset 0.112 s/step =
29.3 us/token, 21.3x the windows per second).

Usage: ``.venv/bin/python benchmarks/bench_pretraining.py [--steps 20] [--threads 2]``
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from fmtc.plan import load_plan
from fmtc.represent.brainlm import BrainLM
from fmtc.represent.pretrain import masking_noise, pretraining_config

SETTINGS = {"full": (424, 2), "subset": (48, 8)}
"""name -> (regions per window, batch size)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plan = load_plan("quick")
    torch.manual_seed(0)
    model = BrainLM(pretraining_config(plan.pretrain, plan.windows, 424)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    inputs = {name: (torch.randn(batch, regions, 200), torch.randn(batch, regions, 3) * 50)
              for name, (regions, batch) in SETTINGS.items()}

    def step(name: str) -> float:
        signal, xyz = inputs[name]
        noise = masking_noise(signal.shape, 20, "random", generator)
        began = time.perf_counter()
        loss = model(signal, xyz, noise=noise, mask_ratio=plan.pretrain.mask_ratio).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - began

    for name in SETTINGS:  # warm-up
        step(name)
    seconds = {name: 0.0 for name in SETTINGS}
    for _ in range(args.steps):
        for name in SETTINGS:
            seconds[name] += step(name)

    print(f"torch {torch.__version__}, {args.threads} thread(s), {platform.processor() or 'cpu'}; "
          f"{args.steps} timed steps per setting, interleaved")
    rate = {}
    for name, (regions, batch) in SETTINGS.items():
        per_step = seconds[name] / args.steps
        rate[name] = batch / per_step
        tokens = batch * regions * 10
        print(f"{name:>6}: {regions:>3} regions x batch {batch}: {per_step:.3f} s/step, "
              f"{rate[name]:.1f} windows/s, {tokens / per_step:,.0f} tokens/s, "
              f"{per_step / tokens * 1e6:.1f} us/token")
    print(f"windows per second, subset / full: {rate['subset'] / rate['full']:.2f}x")


if __name__ == "__main__":
    main()
