"""Golden tests: each kind of result, computed on a tiny input, equals its stored value.

A change that alters what a kind computes must bump its version in :mod:`fmtc.versions` and
regenerate its golden values (``python tests/golden.py --regenerate KIND``); a refactor that
leaves results identical passes without either. See ``tests/golden.py`` for the inputs and the
tolerance of each kind.
"""

from __future__ import annotations

import golden
import pytest

from fmtc.versions import VERSIONS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("kind", golden.KINDS)
def test_each_kind_computes_its_golden_values(kind, tmp_path):
    stored = golden.stored(kind)
    assert stored is not None, (f"no golden values for {kind!r}: run "
                                f"`python tests/golden.py --regenerate {kind}`")
    assert stored["version"] == VERSIONS[kind], (
        f"the golden values of {kind!r} are for version {stored['version']}, but "
        f"fmtc.versions declares {VERSIONS[kind]}: regenerate them with "
        f"`python tests/golden.py --regenerate {kind}` (and check the change is intended)")
    rtol, atol = golden.TOLERANCE[kind]
    differences = golden.compare(stored["values"], golden.compute(kind, tmp_path), rtol, atol)
    assert not differences, (
        f"{kind} computes other values than its golden ones at version {VERSIONS[kind]}: "
        f"{differences[:5]}. If the change is intended, bump VERSIONS[{kind!r}] in "
        f"fmtc/versions.py and run `python tests/golden.py --regenerate {kind}`")


def test_every_declared_kind_has_a_golden_test():
    assert set(golden.KINDS) == set(VERSIONS) - {"page"}
