"""How many fits a book's runs ask for, and how many distinct fits were computed.

Reads a data folder after ``fmtc reproduce`` (default: the plan's ``data/``): every run and
generalisation folder records how many fits it reads (``provenance.json`` ``fits.total``), and
the fit store holds one folder per distinct fit (:mod:`fmtc.evaluate.fits`). Before fits were
results, each distinct run computed every fit it reads; now a fit that several runs share (the
FMM_TC arm of the main comparison, of the external-knowledge experiment and the authors'
honest arm, ...) is computed once::

    .venv/bin/python benchmarks/count_fits.py [--data data]

prints the fits asked for by the runs (what the earlier scheme computed), the distinct fits
in the store (what is computed now), per model, and the size of the run and fit folders.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="the data folder")
    args = parser.parse_args()
    runs, fits = args.data / "runs", args.data / "fits"
    asked = 0
    kinds: Counter[str] = Counter()
    for folder in sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")):
        record = folder / ".fmtc-result.json"
        provenance = folder / "provenance.json"
        if not record.is_file() or not provenance.is_file():
            continue
        kind = json.loads(record.read_text())["kind"]
        kinds[kind] += 1
        asked += int(json.loads(provenance.read_text()).get("fits", {}).get("total", 0))
    models: Counter[str] = Counter()
    for folder in fits.glob("fit-*"):
        record = folder / ".fmtc-result.json"
        if record.is_file():
            models[json.loads(record.read_text())["identity"]["config"]["model"]] += 1
    print(f"run folders: {dict(kinds)}")
    print(f"fits asked for by the runs (each run computing its own): {asked}")
    print(f"distinct fits computed (the fit store): {sum(models.values())}")
    print("  by model: " + ", ".join(f"{m} {n}" for m, n in sorted(models.items())))
    print(f"weights kept: {len(list(fits.glob('fit-*/weights.pt')))} fit(s)")
    print(f"size: runs {folder_bytes(runs) / 2**20:.0f} MiB, fits {folder_bytes(fits) / 2**20:.0f} "
          f"MiB (interpretations are in the runs folder)")


if __name__ == "__main__":
    main()
