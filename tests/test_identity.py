"""Identities follow declared versions, not fmtc's source: refactors keep them, changes do not.

Two acceptance checks on a temporary copy of the package:

- renaming a private function of the training code leaves every result identity (cohort,
  encoder, features, fit, run, generalisation) and every page stamp unchanged;
- changing a numerical constant of training makes the fit's golden test fail while the version
  is unchanged, and pass once the version is bumped and its golden value regenerated (the fit's
  identity changing with the version).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

KEYS = f"""
import json, sys, warnings
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
import fmtc
from golden import _arms, _plan, _synthetic, _tiny_cohort
from fmtc.cohort.folder import load_cohort
from fmtc.evaluate.protocol import CrossValidation
from fmtc.evaluate.runs import ExperimentRunResult, GeneralisationResult
from fmtc.lifecycle import Store
from fmtc.pipeline import encoder_spec, feature_settings
from fmtc.plan import SimulationPlan
from fmtc.report.reproduce import Page
from fmtc.represent.encoder import simulated_encoder
from fmtc.represent.features import BrainLMFeatures
from fmtc.simulate.embedded import SimulatedCohort

root = Path(sys.argv[1])
plan = _plan(root)
data = _synthetic()
models = ["fmmtc", "ts", "fc", "fc-logreg"]
cv = CrossValidation(data, _arms(plan, models), plan.evaluation, 0, ("honest", "paper"))
fits = cv.fits(root / "fits")
cohort = {{"content_hash": "c", "label_column": "label"}}
run = ExperimentRunResult("x", cv, fits, [("fmmtc", "fc")], data.subject_ids, cohort,
                          root, "x", "golden")
generalisation = GeneralisationResult(cv.arms, ["drug"], cv.datasets,
                                      {{"drug": ["a", "b"] * 9}}, None, ("A", "B"),
                                      plan.evaluation, 0, cohort, None, root, root, "g", "golden")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    tiny = load_cohort(_tiny_cohort(root))
simulated = plan.replace(brainlm={{"source": "simulated-pretrained"}})
keys = {{
    "module": fmtc.__file__,
    "cohort": SimulatedCohort(SimulationPlan(n_subjects=8, seed=3), Store.under(root)).key,
    "encoder": simulated_encoder(encoder_spec(simulated)).key,
    "features": BrainLMFeatures(tiny, feature_settings(plan), encoder_spec(plan)).key,
    "fits": [f.key for f in fits],
    "run": run.key,
    "generalisation": generalisation.key,
    "pages": {{p.name: Page(p, {str(ROOT / "book")!r}, {{"profile": "smoke"}}, Path({str(ROOT)!r}),
                           Path({str(ROOT)!r})).key
              for p in sorted(Path({str(ROOT / "notebooks")!r}).glob("*.ipynb"))}},
}}
print(json.dumps(keys))
"""


def _copy_package(destination: Path) -> Path:
    """A copy of the fmtc package under ``destination`` (importable with PYTHONPATH)."""
    shutil.copytree(ROOT / "fmtc", destination / "fmtc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def _env(package: Path | None, golden: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FMTC_GOLDEN_DIR")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (package, TESTS) if p is not None)
    if golden is not None:
        env["FMTC_GOLDEN_DIR"] = str(golden)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _keys(package: Path | None, scratch: Path) -> dict:
    scratch.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", KEYS, str(scratch)], env=_env(package),
                          cwd=scratch, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rename_a_private_function(path: Path) -> str:
    """Rename the first private function of ``path`` everywhere in that file; return its name."""
    text = path.read_text()
    name = re.search(r"^def (_[a-z]\w*)\(", text, re.MULTILINE).group(1)
    path.write_text(re.sub(rf"\b{name}\b", f"{name}_renamed", text))
    return name


def test_renaming_a_private_training_function_changes_no_identity_or_page_stamp(tmp_path):
    copy = _copy_package(tmp_path / "copy")
    training = copy / "fmtc" / "predict" / "training.py"
    name = _rename_a_private_function(training)
    assert f"def {name}_renamed(" in training.read_text()
    before = _keys(None, tmp_path / "original")
    after = _keys(copy, tmp_path / "renamed")
    assert after.pop("module").startswith(str(copy))  # the copy was what ran
    assert before.pop("module").startswith(str(ROOT))
    assert before == after
    assert len(before["pages"]) == len(list((ROOT / "notebooks").glob("*.ipynb")))


def _golden_fit(copy: Path, golden: Path) -> subprocess.CompletedProcess:
    # From another folder: `python -m` puts the working directory first on sys.path, and the
    # repository's own fmtc must not shadow the copy.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(ROOT), "-c", str(ROOT / "pyproject.toml"), str(TESTS / "test_golden.py"),
         "-k", "fit"],
        env=_env(copy, golden), cwd=golden.parent, capture_output=True, text=True, timeout=300)


@pytest.mark.filterwarnings("ignore")
def test_a_changed_training_constant_fails_its_golden_test_until_the_version_is_bumped(
        tmp_path):
    copy = _copy_package(tmp_path / "copy")
    golden = Path(shutil.copytree(TESTS / "golden", tmp_path / "golden"))
    models = copy / "fmtc" / "predict" / "models.py"
    text = models.read_text()
    assert "FC_EMBEDDING = 256" in text
    models.write_text(text.replace("FC_EMBEDDING = 256", "FC_EMBEDDING = 128"))

    failed = _golden_fit(copy, golden)
    assert failed.returncode == 1, failed.stdout[-2000:]
    assert "fit computes other values than its golden ones" in failed.stdout
    assert "bump VERSIONS['fit']" in failed.stdout

    versions = copy / "fmtc" / "versions.py"
    found = re.search(r'"fit": (\d+),', versions.read_text())
    versions.write_text(versions.read_text().replace(
        found.group(0), f'"fit": {int(found.group(1)) + 1},'))
    regenerated = subprocess.run([sys.executable, str(TESTS / "golden.py"), "--regenerate",
                                  "fit"], env=_env(copy, golden), cwd=tmp_path,
                                 capture_output=True, text=True, timeout=300)
    assert regenerated.returncode == 0, regenerated.stderr[-2000:]
    passed = _golden_fit(copy, golden)
    assert passed.returncode == 0, passed.stdout[-2000:]
    assert json.loads((golden / "fit.json").read_text())["version"] == int(found.group(1)) + 1
    # and the new version gives every fit (and so every run) a new identity
    original, bumped = _keys(None, tmp_path / "k1"), _keys(copy, tmp_path / "k2")
    assert not set(original["fits"]) & set(bumped["fits"]) and original["run"] != bumped["run"]
    assert original["cohort"] == bumped["cohort"]  # other kinds keep theirs
