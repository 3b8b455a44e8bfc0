"""Time and peak memory of the BrainLM encoder forward on CPU: fmtc vs the materialised softmax.

Each (implementation, batch) runs in its own fresh Python process with 2 torch threads, under
``torch.no_grad``: one warm-up call, then one timed call, reported as wall-clock seconds and as
CPU seconds (user + system, all threads), which is less sensitive to other load on the machine.
Peak memory is that process's maximum resident set size (imports included). Inputs: 424 regions
x 200 timepoints (4241 tokens), the conformance fixture weights and A424 coordinates from
``../shared/brainlm``.

Usage: ``.venv/bin/python benchmarks/bench_brainlm_forward.py [--batches 1 4 8]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "brainlm"


def _child(impl: str, batch: int, out: Path, shared: Path) -> None:
    import resource

    import torch

    torch.set_num_threads(2)
    xyz_a424 = torch.from_numpy(np.load(shared / "golden.npz")["xyz"][:1])
    signal = torch.randn(batch, 424, 200, generator=torch.Generator().manual_seed(0))
    xyz = xyz_a424.expand(batch, -1, -1).contiguous()
    if impl == "fmtc":
        from fmtc.represent.loading import load_brainlm

        model = load_brainlm(shared)

        def run() -> torch.Tensor:
            return model.vit(signal, xyz, None, 0.0)[0]
    else:
        sys.path.insert(0, str(HERE))
        from _reference_brainlm import reference_encoder

        state = torch.load(shared / "pytorch_model.bin", map_location="cpu", weights_only=True)

        def run() -> torch.Tensor:
            return reference_encoder(state, signal, xyz)

    with torch.no_grad():
        run()
        start, cpu_start = time.perf_counter(), time.process_time()
        hidden = run()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    np.save(out, hidden.numpy())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": peak_mb}))


def _measure(impl: str, batch: int, out: Path, shared: Path) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", impl, "--batch", str(batch), "--out", str(out)]
    cmd += ["--shared", str(shared)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{impl} at batch {batch} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--shared", type=Path, default=SHARED, help="BrainLM fixture folder")
    parser.add_argument("--child", choices=["fmtc", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.shared / "pytorch_model.bin").is_file():
        raise SystemExit(f"BrainLM fixture not found in {args.shared}; pass --shared FOLDER.")
    if args.child:
        _child(args.child, args.batch, args.out, args.shared)
        return

    header = (
        f"{'batch':>5} {'fmtc s':>8} {'ref s':>8} {'speed-up':>8} {'fmtc cpu':>8} {'ref cpu':>8} "
        f"{'cpu ratio':>9} "
        f"{'fmtc MB':>8} {'ref MB':>8} {'mem ratio':>9} {'max|diff|':>10}"
    )
    print(header, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batches:
            outs = {impl: Path(tmp) / f"{impl}_{batch}.npy" for impl in ("fmtc", "reference")}
            ours = _measure("fmtc", batch, outs["fmtc"], args.shared)
            ref = _measure("reference", batch, outs["reference"], args.shared)
            diff = float(np.abs(np.load(outs["fmtc"]) - np.load(outs["reference"])).max())
            print(
                f"{batch:>5} {ours['seconds']:>8.2f} {ref['seconds']:>8.2f} "
                f"{ref['seconds'] / ours['seconds']:>7.2f}x {ours['cpu_seconds']:>8.2f} "
                f"{ref['cpu_seconds']:>8.2f} {ref['cpu_seconds'] / ours['cpu_seconds']:>8.2f}x "
                f"{ours['peak_mb']:>8.0f} "
                f"{ref['peak_mb']:>8.0f} {ours['peak_mb'] / ref['peak_mb']:>9.3f} {diff:>10.2e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
