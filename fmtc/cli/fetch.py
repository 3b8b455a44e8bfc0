"""``fmtc fetch ds000208``: build the real cohort from OpenNeuro ds000208 with DataLad.

Clones the raw dataset (labels) and its fMRIPrep 21.0.2 derivatives at pinned
commits, then per patient gets the BOLD, parcellates it with A424, writes the
series and drops the BOLD (Tétreault et al. 2016; Fan et al., MICCAI 2025).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fmtc.acquire.atlas import Atlas
from fmtc.cli.options import at_least

if TYPE_CHECKING:
    from fmtc.cohort.build import BuildReport


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fetch`` (with its ``ds000208`` target) to the ``fmtc`` parser."""
    parser = subparsers.add_parser("fetch", help="download a real dataset into a cohort folder",
                                   description=__doc__)
    targets = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    ds = targets.add_parser("ds000208", help="OpenNeuro ds000208 (Tétreault et al. 2016)",
                            description="Build the ds000208 cohort: per patient, DataLad get → "
                                        "parcellate → write → drop. Resumable; needs network "
                                        "unless both sources are local clones.")
    ds.add_argument("--out", required=True, type=Path, metavar="DIR",
                    help="cohort folder, published when complete (a partial build resumes "
                         "from the partial folder beside it)")
    ds.add_argument("--overwrite", action="store_true",
                    help="replace a different cohort already in --out")
    ds.add_argument("--variant", choices=("aroma", "preproc"), default="aroma",
                    help="aroma: fMRIPrep ICA-AROMA output on A424's grid (default); "
                         "preproc: MNI152NLin2009cAsym res-2, denoised with nilearn 'simple'")
    ds.add_argument("--subjects", nargs="+", default=None, metavar="ID",
                    help="participant ids (sub-21 or 21); default every patient")
    ds.add_argument("--jobs", type=at_least(1), default=1, metavar="N",
                    help="subjects in parallel (peak disk ~N x 330 MB)")
    ds.add_argument("--raw-source", default=None, metavar="URL|PATH",
                    help="raw dataset (default the pinned OpenNeuroDatasets GitHub mirror)")
    ds.add_argument("--derivatives-source", default=None, metavar="URL|PATH",
                    help="fMRIPrep derivatives (default the pinned OpenNeuroDerivatives mirror)")
    ds.add_argument("--raw-revision", default=None, metavar="REV",
                    help="commit/tag of the raw dataset (default: pinned, or the source's HEAD "
                         "with --raw-source)")
    ds.add_argument("--derivatives-revision", default=None, metavar="REV",
                    help="commit/tag of the derivatives (default: pinned, or HEAD with "
                         "--derivatives-source)")
    ds.add_argument("--max-mean-fd", type=float, default=None, metavar="MM",
                    help="leave out subjects whose mean framewise displacement exceeds MM")
    ds.add_argument("--work-dir", type=Path, default=None, metavar="DIR",
                    help="where the DataLad clones live (default .OUT.work beside OUT)")
    add_atlas_options(ds)
    ds.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ds.set_defaults(handler=_fetch_ds000208)


def add_atlas_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--atlas-dir`` and ``--atlas-cache`` (the A424 atlas source)."""
    parser.add_argument("--atlas-dir", type=Path, default=None, metavar="DIR",
                        help="local folder holding the A424 files (default: env FMTC_ATLAS_DIR, "
                             "else download once into the cache)")
    parser.add_argument("--atlas-cache", type=Path, default=None, metavar="DIR",
                        help="atlas download cache (default ~/.cache/fmtc/atlases)")


def atlas_from_args(args: argparse.Namespace, name: str = "A424") -> Atlas:
    """Resolve the atlas from ``--atlas-dir`` / ``FMTC_ATLAS_DIR`` / the download cache."""
    from fmtc.acquire.atlas import get_atlas

    atlas_dir = args.atlas_dir or os.environ.get("FMTC_ATLAS_DIR") or None
    return get_atlas(name, atlas_dir=atlas_dir, cache_dir=args.atlas_cache)


def print_report(report: BuildReport, command: str) -> int:
    """Print failures and the summary of a build; return the exit status."""
    for participant_id, reason in report.failed.items():
        print(f"{participant_id}: failed: {reason}", file=sys.stderr)
    for participant_id, fd in report.excluded.items():
        print(f"{participant_id}: excluded, mean framewise displacement {fd:.3f} mm")
    print(f"fmtc {command}: {report.summary()} -> {report.out}")
    if report.failed:
        print(f"fmtc {command}: cohort not published: {report.out} is unchanged and the written "
              "subjects are kept beside it; rerun the same command to retry the failed subjects, "
              "or leave them out with --subjects", file=sys.stderr)
        return 1
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1 if report.problems else 0


def _fetch_ds000208(args: argparse.Namespace) -> int:
    from fmtc.acquire.datalad_source import DS000208_FMRIPREP, DS000208_RAW
    from fmtc.cohort.build import fetch_ds000208

    # Network, clone and disk failures reach fmtc.cli.main: one line, exit 1.
    atlas = atlas_from_args(args)
    report = fetch_ds000208(
        args.out, atlas, variant=args.variant, subjects=args.subjects, jobs=args.jobs,
        raw_source=DS000208_RAW.override(args.raw_source, args.raw_revision),
        derivatives_source=DS000208_FMRIPREP.override(args.derivatives_source,
                                                      args.derivatives_revision),
        work_dir=args.work_dir, max_mean_fd=args.max_mean_fd, progress=not args.no_progress,
        overwrite=args.overwrite)
    return print_report(report, "fetch ds000208")
