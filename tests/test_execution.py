"""The executor's worker set-up: the allocator a Dask nanny leaves behind is tuned back."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys
import numpy as np
from fmtc.execution import tune_allocator

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):  # what a training step does: allocate, fill and free 1 MiB blocks
        block = np.empty(1 << 17)
        block.fill(1.0)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
untuned = faults()
tuned = tune_allocator()
print(json.dumps({"untuned": untuned, "tuned": tuned, "after": faults()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's mallopt and MALLOC_TRIM_THRESHOLD_")
def test_tune_allocator_stops_the_page_faults_a_dask_nanny_environment_causes():
    # A Dask nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536: every block above
    # 128 KiB is then a fresh mmap whose pages fault in again on each use.
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    counts = json.loads(result.stdout)
    assert counts["tuned"] is True
    assert counts["untuned"] > 20_000  # 256 a block: fresh pages every time
    assert counts["after"] < counts["untuned"] / 20
