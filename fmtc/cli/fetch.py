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
    add_stages(targets)


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


def add_stages(targets: argparse._SubParsersAction) -> None:
    """Add the ``stages`` target (Pope et al. 2025, izachp/psychosis-FC-prediction)."""
    from fmtc.acquire.stages import PARCELLATIONS, PIPELINES

    st = targets.add_parser(
        "stages", help="STAGES first-episode psychosis trial (Pope et al. 2025)",
        description="Build the STAGES cohort (antipsychotic vs placebo, first-episode "
                    "psychosis) from the parcellated series of izachp/psychosis-FC-prediction "
                    "(Apache-2.0), cloned with DataLad at a pinned commit: OUT holds each "
                    "patient's baseline scan, labelled responder_bprs_6m (6-month BPRS change "
                    "below the cohort median; sensitivity label responder_sofas_6m); OUT-ses2 "
                    "holds the 3-month scans as an unlabelled cohort, for pretraining only. "
                    "Resumable; needs network unless --source is a local clone and "
                    "--regions-file a local centroid table.")
    st.add_argument("--out", required=True, type=Path, metavar="DIR",
                    help="the baseline cohort folder, published when complete (a partial build "
                         "resumes from the partial folder beside it)")
    st.add_argument("--source", default=None, metavar="URL|PATH",
                    help="repository to clone (default "
                         "https://github.com/izachp/psychosis-FC-prediction.git)")
    st.add_argument("--revision", default=None, metavar="SHA",
                    help="commit to check out (default the pinned 411a2cad…, also with "
                         "--source; HEAD takes the source's latest); a clone without it is "
                         "refused")
    st.add_argument("--pipeline", choices=PIPELINES, default=PIPELINES[0],
                    help="preprocessing pipeline (default the authors' main analysis, "
                         "%(default)s)")
    st.add_argument("--parcellation", choices=tuple(PARCELLATIONS), default="419_parc",
                    help="419_parc: Schaefer 400 (7 networks) + 19 subcortical (default); "
                         "328_parc needs a complete --regions-file")
    st.add_argument("--tr", type=float, default=None, metavar="SECONDS",
                    help="repetition time; not stated in the repository, 2.0 s is assumed "
                         "(and recorded as an assumption) unless given")
    st.add_argument("--regions-file", type=Path, default=None, metavar="FILE",
                    help="local copy of CBIG's Schaefer2018_400Parcels_7Networks_order_"
                         "FSLMNI152_2mm.Centroid_RAS.csv (default: download it once from the "
                         "pinned CBIG commit), or a complete regions table (index, name, x, y, "
                         "z, network; one row per series row)")
    st.add_argument("--subcortical-file", type=Path, default=None, metavar="FILE",
                    help="centroids (columns name, x, y, z; MNI mm) of the 19 FreeSurfer aseg "
                         "structures of 419_parc rows 401-419 (Left-Cerebellum-Cortex, "
                         "Left-Thalamus-Proper, ..., Right-VentralDC); no pinned public table "
                         "gives them")
    st.add_argument("--cortex-only", action="store_true",
                    help="keep only the 400 Schaefer parcels (no subcortical table needed)")
    st.add_argument("--ses2-out", type=Path, default=None, metavar="DIR",
                    help="the unlabelled 3-month cohort folder (default OUT-ses2)")
    st.add_argument("--no-ses2", action="store_true", help="do not write the 3-month scans")
    st.add_argument("--work-dir", type=Path, default=None, metavar="DIR",
                    help="where the clone lives (default .OUT.work beside OUT)")
    st.add_argument("--atlas-cache", type=Path, default=None, metavar="DIR",
                    help="download cache of the centroid table "
                         "(default ~/.cache/fmtc/atlases/schaefer2018)")
    st.add_argument("--overwrite", action="store_true",
                    help="replace different cohorts already in OUT / OUT-ses2")
    st.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    st.set_defaults(handler=_fetch_stages)


def _fetch_stages(args: argparse.Namespace) -> int:
    from fmtc.acquire.stages import STAGES_REPOSITORY
    from fmtc.cohort.stages import fetch_stages

    report = fetch_stages(
        args.out, source=STAGES_REPOSITORY.override(
            args.source, args.revision or STAGES_REPOSITORY.revision),
        pipeline=args.pipeline, parcellation=args.parcellation, repetition_time=args.tr,
        work_dir=args.work_dir, regions_file=args.regions_file,
        subcortical_file=args.subcortical_file, cortex_only=args.cortex_only,
        ses2_out=args.ses2_out, include_ses2=not args.no_ses2, cache_dir=args.atlas_cache,
        overwrite=args.overwrite, progress=not args.no_progress)
    for line in report.summary():
        print(f"fmtc fetch stages: {line}")
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1 if report.problems else 0
