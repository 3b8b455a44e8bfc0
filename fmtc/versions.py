"""The declared version of every computation whose result fmtc stores.

A result's identity (:mod:`fmtc.lifecycle`) holds its kind's version, never a hash of fmtc's
source: a refactor that leaves results identical changes no identity and no page stamp. A
change that alters what a kind computes must bump its version here; the golden tests
(``tests/test_golden.py``) pin each kind's output on a tiny input and fail until the version
is bumped and the golden value regenerated (``python tests/golden.py --regenerate KIND``).

Each entry names the code it covers.
"""

from __future__ import annotations

VERSIONS: dict[str, int] = {
    # fmtc.simulate (generator, embedded cohort) and fmtc.acquire.simulated_atlas
    "cohort": 4,
    # fmtc.represent.pretrain + brainlm (the simulated-pretrained encoder)
    "encoder": 3,
    # fmtc.represent.features / readout / brainlm forward / preprocess.transforms windows
    "features": 2,
    # fmtc.predict (models, training, baselines), fmtc.evaluate.selection, fold seeds
    # (2: fused AdamW, one kernel per parameter; rounding, and so training, differs from 1)
    # (3: a training set of 8k + 1 subjects joins its last subject to the batch before;
    # before, 2 batches raised an IndexError and 3 or more overwrote another batch)
    "fit": 3,
    # fmtc.evaluate.protocol tables, metrics, uncertainty, paired differences
    "run": 1,
    # fmtc.evaluate.generalisation (jobs, within references, confounds)
    # (2: every scheme's fits in one pool; the cross-cohort fits' seeds follow the schemes')
    "generalisation": 2,
    # fmtc.interpret (integrated gradients, aggregation, recovery)
    # (2: the TS share is of the mean |IG| per input value, not of the sums)
    "interpretation": 2,
    # fmtc.evaluate.calibration and family (pool, cheap arms, truth, replicates, methods)
    # (2: the method is the narrowest reaching the coverage with the error within 1 - level)
    # (3: chosen on several calibration pools, each of which must hold it; the claims
    # table's permutation count, so that Holm-adjusted p-values can pass)
    "calibration": 3,
    # fmtc.report: what an executed page shows from the results above (tables, figures, text)
    # (3: the claims table's intervals at nominal 99%, fmtc.evaluate.family.FAMILY_NOMINAL)
    "page": 3,
}
"""Kind -> version of its computation."""


def version(kind: str) -> int:
    """The declared version of ``kind`` (a key of :data:`VERSIONS`)."""
    try:
        return VERSIONS[kind]
    except KeyError:
        raise KeyError(f"no declared version for result kind {kind!r}; add it to "
                       "fmtc.versions.VERSIONS") from None
