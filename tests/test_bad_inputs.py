"""Bad inputs at the command line: one matrix of damaged files, plans and folders.

Every case runs ``fmtc.cli.main(argv)`` in this process, from a fresh folder (with an empty
``.git``, so no project ``_config.yml`` above it is read), on an input that a user could
plausibly get wrong. Each case asserts, as a user sees it:

- the exit status (:mod:`fmtc.errors`: 1 invalid data, 2 usage / plan / output folder,
  130 interrupted, 143 terminated; 0 for the few controls and rebuilt caches);
- that the message names what to fix: the file, the subject or the plan key;
- that it is one ``fmtc <command>: error: ...`` line of at most 500 bytes (``cohort
  validate`` lists its problems on stdout instead; argparse's own errors, such as a seed
  out of range, name the sub-command in full, ``fmtc fetch ds000208: error: ...``, below
  its usage), and that no Python traceback is printed;
- that previously computed results are byte-identical afterwards: a simulated cohort,
  a finished ``fmtc evaluate`` run, a tiny cohort, a tiny BrainLM checkpoint and its
  feature cache, all built once for the module, plus any folder a case puts in harm's way.

The matrix (ids read as a table under ``pytest -v``):

==========  ===================================================================
prefix      inputs
==========  ===================================================================
plan-       plan YAML: syntax, tabs, encoding, shapes, unknown keys, wrong types,
            out-of-range values, unknown profiles / models / experiments, and a
            damaged ``_config.yml`` found in the working directory; alias bombs,
            duplicate keys, empty files, non-finite numbers, output folders at / or ~
opt-        command-line options: seeds out of range, counts below their minimum,
            options that would do nothing in the given combination, a Dask scheduler
            without ``distributed``, files given for folders and folders for files
cohort-     the cohort folder contract (``fmtc cohort validate``, exit 1, stdout):
            participants.tsv, dataset_description.json, sidecars, series,
            subject folders, ground_truth.json; other commands: one line
label-      labels that cannot be cross-validated (``fmtc evaluate``)
ckpt-       BrainLM checkpoint folders given to ``--brainlm``
cache-      damaged feature-cache files: reported and rebuilt (exit 0), and
            :func:`fmtc.represent.features.read_features` raising ``CacheError``
out-        output folders: other results, unrelated files, files, unwritable parents
stop-       Ctrl-C and SIGTERM in the middle of a command
==========  ===================================================================

A case whose behaviour is a known fmtc bug is written as it should behave and marked
``xfail(strict=True)``, so that the fix turns it into a pass.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_cohorts import write_tiny_cohort

import fmtc.cohort.folder as cohort_folder
import fmtc.evaluate.fits as fits_module
import fmtc.represent.features as features_module
import fmtc.simulate.generator as generator
from fmtc.cli import main
from fmtc.cohort.folder import timeseries_path
from fmtc.errors import CacheError
from fmtc.represent.brainlm import BrainLM, BrainLMConfig
from fmtc.represent.features import read_features
from fmtc.represent.loading import save_brainlm

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # The module's cohorts are short on purpose (fast); their padding warning is expected.
    pytest.mark.filterwarnings(r"ignore:.*volumes \(< 200\)"),
    pytest.mark.filterwarnings("ignore:.*every labelled participant has"),  # label-single-class
]

ATLAS = "SIM424"
N_SUBJECTS = 12
SIMULATE = ["--n-subjects", str(N_SUBJECTS), "--n-volumes", "60", "--seed", "1"]
TINY_ENCODER = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 32, "decoder_hidden_size": 16,
                "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
                "decoder_intermediate_size": 32, "conv_kernel_size": 5,
                "model_type": "brainlm_mae"}
RUN_TABLES = ("metrics.csv", "predictions.csv", "summary.csv", "splits.json", "models.json")


def plan_text(profiles: str = "") -> str:
    """The module's plan (profile ``tiny``: 3 folds, 1 repeat, one process) plus ``profiles``."""
    return (
        "default_profile: tiny\n"
        "profiles:\n"
        "  tiny:\n"
        "    extends: quick\n"
        "    device: cpu\n"
        "    evaluation: {folds: 3, repeats: 1, permutations: 0, bootstrap: 10}\n"
        "    logistic: {c_grid: [0.1, 1.0], inner_folds: 2}\n"
        "    execution: {n_jobs: 1}\n"
        "    outputs: {features_dir: features, models_dir: models, runs_dir: runs}\n"
        + profiles)


# --------------------------------------------------------------------------- previous results


@dataclass
class Shared:
    """What was computed before the cases run; none of it may change."""

    root: Path
    plan: Path
    cohort: Path       # simulated, 12 subjects x 60 volumes x 424 regions
    run: Path          # `fmtc evaluate --model fc-logreg` on ``cohort``
    tiny: Path         # 6 subjects x 12 regions: fast to encode
    encoder: Path      # a tiny BrainLM checkpoint folder
    features: Path     # the plan's feature cache, holding ``tiny`` encoded by ``encoder``
    hashes: dict[str, str] = field(default_factory=dict)

    def cache_file(self) -> Path:
        (npz,) = sorted(self.features.glob("brainlm-*/features.npz"))
        return npz


def tree_hashes(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders`` (hidden files included), by path."""
    hashes = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def quiet_main(argv: list[str]) -> int:
    buffer = io.StringIO()
    with redirect_stdout(buffer), redirect_stderr(buffer):
        code = main(argv)
    assert code == 0, buffer.getvalue()
    return code


def save_tiny_encoder(folder: Path) -> Path:
    torch.manual_seed(0)
    model = BrainLM(BrainLMConfig.from_dict(TINY_ENCODER))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return save_brainlm(model, folder)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Shared:
    root = tmp_path_factory.mktemp("previous")
    (root / ".git").mkdir()
    plan = root / "plan.yml"
    plan.write_text(plan_text(), encoding="utf-8")
    made = Shared(root, plan, root / "previous_cohort", root / "previous_run",
                  root / "previous_tiny", root / "previous_encoder", root / "features")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        quiet_main(["simulate", "--plan", str(plan), "--out", str(made.cohort), *SIMULATE])
        quiet_main(["evaluate", "--plan", str(plan), "--cohort", str(made.cohort),
                    "--model", "fc-logreg", "--out", str(made.run)])
        write_tiny_cohort(made.tiny, [60] * 6)
        save_tiny_encoder(made.encoder)
        quiet_main(["embed", "--plan", str(plan), "--cohort", str(made.tiny),
                    "--brainlm", str(made.encoder)])
    made.hashes = tree_hashes(made.cohort, made.run, made.tiny, made.encoder, made.features)
    return made


# --------------------------------------------------------------------------- the case machinery


@dataclass
class Context:
    """One case's folder (its working directory) and what its setup asked to check."""

    tmp: Path
    shared: Shared
    monkeypatch: pytest.MonkeyPatch
    kept: list[Path] = field(default_factory=list)
    checks: list[Callable[[Context], None]] = field(default_factory=list)
    file_size_limit: int | None = None  # bytes; RLIMIT_FSIZE while the command runs

    def copy_cohort(self, name: str = "cohort") -> Path:
        return Path(shutil.copytree(self.shared.cohort, self.tmp / name))

    def keep(self, path: Path) -> Path:
        """Register a folder that the command must leave byte-identical."""
        self.kept.append(path)
        return path

    def then(self, check: Callable[[Context], None]) -> None:
        """Run ``check(context)`` after the command (and after the message checks)."""
        self.checks.append(check)

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path


@dataclass(frozen=True)
class Case:
    """A damaged input: ``setup(context)`` makes it and returns the command's argv."""

    id: str
    setup: Callable[[Context], list[str]]
    code: int
    names: tuple[str, ...]
    absent: tuple[str, ...] = ()
    xfail: str | None = None


@dataclass
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str
    message: str  # what the user reads: the error line, or the listed problems
    changed: list[str]  # files of the kept folders that the command changed, added or removed


def run_case(case: Case, context: Context, capsys) -> Outcome:
    """Set up the case in its folder, run the command, return what the user saw."""
    context.monkeypatch.chdir(context.tmp)
    argv = case.setup(context)
    before = tree_hashes(*context.kept)
    capsys.readouterr()
    try:
        with file_size_limit(context.file_size_limit):
            code = main(argv)
    except SystemExit as stop:  # argparse refusing an option (exit 2, after its usage)
        code = stop.code
    out, err = capsys.readouterr()
    after = tree_hashes(*context.kept)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return Outcome(argv, code, out, err, user_message(argv, out, err), changed)


@contextmanager
def file_size_limit(limit: int | None) -> Iterator[None]:
    """Writes past ``limit`` bytes fail with ``EFBIG`` (``ulimit -f``), as a full disk would.

    Python ignores ``SIGXFSZ``, so the write raises :class:`OSError` instead of ending the
    process; the limit is this process's, lifted again as soon as the command returns.
    """
    if limit is None:
        yield
        return
    import resource

    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)


def prefixes(argv: list[str]) -> tuple[str, ...]:
    """How a line of this command starts: ``fmtc <command>: `` (fmtc's own lines), or with
    the sub-command too (argparse's errors, e.g. ``fmtc fetch ds000208: ``)."""
    return (f"fmtc {argv[0]}: ", *((f"fmtc {argv[0]} {argv[1]}: ",) if len(argv) > 1 else ()))


def user_message(argv: list[str], out: str, err: str) -> str:
    if argv[:2] == ["cohort", "validate"] and out.strip():
        return out.strip()
    lines = err.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(prefixes(argv))]
    if not starts:  # a success (controls, rebuilt caches): what it printed and logged
        return "\n".join([*out.splitlines(), *(x for x in lines if x.startswith("[fmtc]"))])
    return lines[starts[0]]


def check_outcome(case: Case, outcome: Outcome) -> None:
    command = outcome.argv[0]
    shown = outcome.out + outcome.err
    assert outcome.code == case.code, shown
    assert "Traceback" not in shown, shown
    for name in case.names:
        assert name in outcome.message, f"{name!r} not named in:\n{outcome.message}\n---\n{shown}"
    for text in case.absent:
        assert text not in shown, f"{text!r} must not be printed:\n{shown}"
    if outcome.argv[:2] == ["cohort", "validate"] and case.code == 1:
        assert outcome.out.startswith(f"{outcome.argv[2]}: INVALID"), shown
    elif case.code in (1, 2):  # exactly one error line, short, and nothing continuing it
        errors = [line for line in outcome.err.splitlines() if line.startswith("fmtc ")]
        assert len(errors) == 1, shown
        assert errors[0].startswith(tuple(f"{p}error: " for p in prefixes(outcome.argv))), shown
        assert len(errors[0].encode("utf-8")) <= 500, f"{len(errors[0].encode())} bytes: {shown}"
        assert not [line for line in outcome.err.splitlines() if line.startswith("  - ")], shown
    elif case.code in (130, 143):
        what = "interrupted" if case.code == 130 else "terminated"
        stops = [line for line in outcome.err.splitlines() if line.startswith("fmtc ")]
        assert len(stops) == 1 and stops[0].startswith(f"fmtc {command}: {what}; "), shown


# --------------------------------------------------------------------------- helpers of the setups


def series_file(root: Path, pid: str, suffix: str = "tsv") -> Path:
    return timeseries_path(root, pid, ATLAS, suffix)


def edit_rows(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    """Rewrite the data rows of a TSV (header kept) with ``edit(rows)``."""
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([header, *edit(rows)]) + "\n", encoding="utf-8")


def edit_participants(root: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = root / "participants.tsv"
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    edit(table).to_csv(path, sep="\t", index=False, lineterminator="\n")


def set_labels(root: Path, labels: list[int | str]) -> None:
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table["Response"] = [str(v) for v in labels]
        return table

    edit_participants(root, edit)


def evaluate_argv(context: Context, *extra: str, plan: Path | None = None,
                  cohort: Path | None = None, model: str = "fc-logreg",
                  out: str | Path | None = "new_run") -> list[str]:
    """``fmtc evaluate`` of one model; the default ``--out new_run`` must not appear.

    ``out``: a name in the case's folder, a path, or None for the plan's runs_dir.
    """
    if out == "new_run":
        context.then(lambda c: assert_absent(c.tmp / "new_run"))
    where = [] if out is None else ["--out", str(context.tmp / out)]
    return ["evaluate", "--plan", str(plan or context.shared.plan),
            "--cohort", str(cohort or context.shared.cohort), "--model", model,
            *where, *extra]


def assert_absent(path: Path) -> None:
    assert not path.exists(), f"{path} was written by a command that failed"


def validate(context: Context, damage: Callable[[Path], object]) -> list[str]:
    root = context.copy_cohort()
    damage(root)
    return ["cohort", "validate", str(root)]


# --------------------------------------------------------------------------- plan files


def bad_plan(name: str, content: str | bytes, *extra: str) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        plan = context.file(name, content)
        return evaluate_argv(context, "--profile", "mine", *extra, plan=plan)

    return setup


def config_in_cwd(content: str | bytes) -> Callable[[Context], list[str]]:
    """A damaged ``_config.yml`` in the working directory, found without ``--plan``."""
    def setup(context: Context) -> list[str]:
        context.file("_config.yml", content)
        return ["evaluate", "--cohort", str(context.shared.cohort), "--model", "fc-logreg",
                "--out", str(context.tmp / "new_run")]

    return setup


def experiment_plan(arms: str) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        plan = context.file("experiment.yml", plan_text(
            "  mine:\n"
            "    extends: tiny\n"
            f"    data: {{cohort: {json.dumps(str(context.shared.cohort))}}}\n"
            "    experiments:\n"
            "      ablation:\n"
            "        arms:\n" + arms))
        context.then(lambda c: assert_empty(c.tmp / "runs"))
        return ["experiment", "ablation", "--plan", str(plan), "--profile", "mine"]

    return setup


def _simulate_tr_ms(context: Context) -> list[str]:
    context.then(lambda c: assert_absent(c.tmp / "new_cohort"))
    return ["simulate", "--plan", str(context.shared.plan), "--out",
            str(context.tmp / "new_cohort"), "--n-subjects", "6", "--n-volumes", "40",
            "--tr", "2500"]


def _plan_device_cuda(context: Context) -> list[str]:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: device cuda is valid here")
    plan = context.file("cuda.yml", plan_text("  mine:\n    extends: tiny\n    device: cuda\n"))
    return evaluate_argv(context, "--profile", "mine", plan=plan)


def _plan_cohort_missing(context: Context) -> list[str]:
    plan = context.file("cohort.yml", plan_text(
        "  mine:\n    extends: tiny\n    data: {cohort: nosuch_cohort}\n"))
    return ["evaluate", "--plan", str(plan), "--profile", "mine", "--model", "fc-logreg"]


MINE = "profiles:\n  mine:\n    extends: quick\n"

PLAN_CASES = [
    Case("plan-yaml-syntax", bad_plan("syntax.yml", MINE + "    seed: [1, 2\n"), 2,
         ("syntax.yml:", "YAML syntax error")),
    Case("plan-yaml-tabs", bad_plan("tabs.yml", "profiles:\n\tmine:\n\t\textends: quick\n"), 2,
         ("tabs.yml:", "tabs")),
    Case("plan-not-utf8", bad_plan("latin1.yml", (MINE + '    data: {label: "Réponse"}\n')
                                   .encode("latin-1")), 2,
         ("latin1.yml", "UTF-8")),
    Case("plan-top-level-list", bad_plan("list.yml", "- profiles\n- mine\n"), 2,
         ("list.yml", "mapping", "list")),
    Case("plan-profiles-a-list", bad_plan("profiles_list.yml", "profiles:\n  - mine\n"), 2,
         ("profiles_list.yml", "'profiles'", "list")),
    Case("plan-profile-a-list", bad_plan(
        "profile_list.yml", "profiles:\n  mine:\n    - extends: quick\n    - seed: 3\n"), 2,
         ("profile_list.yml", "profile 'mine'", "list")),
    Case("plan-profile-a-string", bad_plan("profile_str.yml", "profiles:\n  mine: quick\n"), 2,
         ("profile_str.yml", "profile 'mine'")),
    Case("plan-unknown-top-level-key", bad_plan("typo.yml", "profils:\n  mine: {}\n"), 2,
         ("typo.yml", "profils")),
    Case("plan-unknown-key", bad_plan("fold.yml", MINE + "    evaluation: {fold: 3}\n"), 2,
         ("fold.yml", "evaluation.fold")),
    Case("plan-wrong-type", bad_plan("type.yml", MINE + "    evaluation: {folds: three}\n"), 2,
         ("type.yml", "evaluation.folds", "three")),
    Case("plan-logistic-inner-folds-1", bad_plan(
        "inner.yml", MINE + "    logistic: {inner_folds: 1}\n"), 2,
         ("inner.yml", "logistic.inner_folds")),
    Case("plan-logistic-empty-c-grid", bad_plan(
        "cgrid.yml", MINE + "    logistic: {c_grid: []}\n"), 2,
         ("cgrid.yml", "logistic.c_grid")),
    Case("plan-extends-unknown-profile", bad_plan(
        "extends.yml", "profiles:\n  mine:\n    extends: quik\n"), 2,
         ("profiles.mine.extends", "quik")),
    Case("plan-unknown-profile", lambda c: evaluate_argv(c, "--profile", "nosuch"), 2,
         ("'nosuch'", "tiny")),
    Case("plan-file-missing", lambda c: evaluate_argv(c, plan=c.tmp / "nosuch.yml"), 2,
         ("nosuch.yml", "does not exist")),
    Case("plan-option-repeats-0", lambda c: evaluate_argv(c, "--repeats", "0"), 2,
         ("evaluation.repeats",)),
    Case("plan-option-jobs-0", lambda c: evaluate_argv(c, "--jobs", "0"), 2,
         ("execution.n_jobs",)),
    Case("plan-option-unknown-model",
         lambda c: evaluate_argv(c, model="fc-logregg"), 2,
         ("--model", "fc-logregg")),
    Case("plan-option-simulate-n-subjects-2",
         lambda c: ["simulate", "--plan", str(c.shared.plan), "--out", str(c.tmp / "new_cohort"),
                    "--n-subjects", "2"], 2,
         ("--n-subjects", "simulation.n_subjects")),
    Case("plan-option-simulate-tr-in-ms", _simulate_tr_ms, 2,
         ("--tr", "simulation.tr", "milliseconds")),
    Case("plan-device-cuda-without-gpu", _plan_device_cuda, 2,
         ("device", "cuda")),
    Case("plan-data-cohort-missing", _plan_cohort_missing, 1,
         ("data.cohort", "nosuch_cohort")),
    Case("plan-config-yml-in-cwd-syntax", config_in_cwd(
        "default_profile: quick\nprofiles:\n  quick:\n    seed: [1\n"), 2,
         ("_config.yml:", "YAML syntax error")),
    Case("plan-config-yml-in-cwd-not-utf8", config_in_cwd(
        "default_profile: quick\n# r\xe9ponse\n".encode("latin-1")), 2,
         ("_config.yml", "UTF-8")),
    Case("plan-config-yml-in-cwd-unknown-key", config_in_cwd("base:\n  sed: 3\n"), 2,
         ("_config.yml", "sed")),
    Case("plan-experiment-unknown-model", experiment_plan(
        "          base: {model: fc-logreg}\n          typo: {model: fc-logregg}\n"), 2,
         ("experiments.ablation.arms", "fc-logregg")),
    Case("plan-experiment-arm-overrides-folds", experiment_plan(
        "          base: {model: fc-logreg}\n"
        "          other: {model: fc-logreg, overrides: {evaluation: {folds: 4}}}\n"), 2,
         ("experiments.ablation.arms.other.overrides", "evaluation")),
    Case("plan-experiment-name-missing",
         lambda c: ["experiment", "--plan", str(c.shared.plan)], 2,
         ("fmtc experiment: error:",)),
    Case("plan-experiment-unknown-name",
         lambda c: ["experiment", "nosuch", "--plan", str(c.shared.plan)], 2,
         ("'nosuch'",)),
]


def bomb_text(levels: int, where: str = "data:\n    label:") -> str:
    """A plan whose ``base`` nests ``levels`` lists of 9 aliases of the list before it."""
    lines = ["base:", f"  {where}", f"      - &l0 [{', '.join(['lol'] * 9)}]"]
    lines += [f"      - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n" + MINE


def _alias_bomb_listed(context: Context) -> list[str]:
    """``fmtc experiment --list`` of a 9-level alias bomb: refused within seconds."""
    plan = context.file("bomb.yml", bomb_text(9))
    began = time.perf_counter()
    context.then(lambda c: _within(began, 10.0))
    return ["experiment", "--list", "--plan", str(plan), "--profile", "mine"]


def _within(began: float, seconds: float) -> None:
    took = time.perf_counter() - began
    assert took < seconds, f"the command took {took:.1f} s"


def _huge_value(context: Context) -> list[str]:
    """7,380 values of nested aliases given where a number goes: a short message."""
    chain = ["&l0 [" + ", ".join(["'" + "A" * 50 + "'"] * 9) + "]"]
    chain += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 4)]
    plan = context.file("huge.yml", MINE + f"    seed: [{', '.join(chain)}]\n")
    return ["experiment", "--list", "--plan", str(plan), "--profile", "mine"]


def _huge_value_in_profile(context: Context) -> list[str]:
    levels = "".join(f"      - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 4))
    text = (MINE + "    description: ok\n    data:\n      label:\n"
            "      - &l0 [" + ", ".join(["'" + "B" * 80 + "'"] * 9) + "]\n" + levels)
    plan = context.file("huge.yml", text.replace("      - &l", "        - &l"))
    return ["experiment", "--list", "--plan", str(plan), "--profile", "mine"]


def listed_plan(name: str, profile: str) -> Callable[[Context], list[str]]:
    """``fmtc experiment --list`` of a plan whose profile ``mine`` holds ``profile``."""
    def setup(context: Context) -> list[str]:
        plan = context.file(name, MINE + profile)
        return ["experiment", "--list", "--plan", str(plan), "--profile", "mine"]

    return setup


def _plan_a_folder(context: Context) -> list[str]:
    folder = context.tmp / "plans"
    folder.mkdir()
    return evaluate_argv(context, plan=folder)


def _home_as_data_dir(context: Context) -> list[str]:
    home = context.keep(context.tmp / "home")
    home.mkdir()
    (home / "notes.txt").write_text("mine\n")
    context.monkeypatch.setenv("HOME", str(home))
    plan = context.file("home.yml", MINE + "    outputs: {data_dir: '~'}\n")
    return evaluate_argv(context, "--profile", "mine", plan=plan)


PLAN_SAFETY_CASES = [
    Case("plan-alias-bomb-9-levels", _alias_bomb_listed, 2,
         ("bomb.yml:", "aliases expand the plan to more than 100,000 values", "billion laughs")),
    Case("plan-alias-bomb-4-levels-as-a-number", _huge_value, 2,
         ("huge.yml", "plan key 'seed'", "expected an integer")),
    Case("plan-long-values-in-a-profile-are-shortened", _huge_value_in_profile, 2,
         ("huge.yml", "plan key 'data.label'", "BBBB")),
    Case("plan-duplicate-key", listed_plan(
        "dup.yml", "    train: {epochs: 3}\n    train: {epochs: 5}\n"), 2,
         ("dup.yml:5:5", "duplicate key 'train'", "line 4")),
    Case("plan-recursive-alias", bad_plan(
        "loop.yml", "profiles:\n  mine: &m\n    extends: quick\n    description: [*m]\n"), 2,
         ("loop.yml:2:9", "recursive")),
    Case("plan-empty-file", bad_plan("empty.yml", ""), 2, ("empty.yml", "is empty")),
    Case("plan-comments-only", bad_plan("comments.yml", "# nothing yet\n"), 2,
         ("comments.yml", "is empty")),
    Case("plan-a-folder", _plan_a_folder, 2, ("plans", "is a folder, not a file")),
    Case("plan-experiment-list-unknown-model", listed_plan(
        "model.yml", "    experiments:\n      big: {arms: {a: {model: resnet-9000}}}\n"), 2,
         ("model.yml", "experiments.big.arms.a.model", "resnet-9000", "fc-logreg")),
    Case("plan-evaluation-models-unknown", bad_plan(
        "models.yml", MINE + "    evaluation: {models: [fc-logreg, resnet-9000]}\n"), 2,
         ("models.yml", "evaluation.models", "resnet-9000")),
    Case("plan-model-params-unknown-model", listed_plan(
        "params.yml", "    model_params: {resnet-9000: {depth: 9000}}\n"), 2,
         ("params.yml", "model_params.resnet-9000", "unknown model")),
    Case("plan-model-params-of-a-logistic-model", listed_plan(
        "params.yml", "    model_params: {fc-logreg: {c_grid: [1.0]}}\n"), 2,
         ("model_params.fc-logreg", "'logistic'")),
    Case("plan-train-lr-inf", bad_plan("lr.yml", MINE + "    train: {lr: .inf}\n"), 2,
         ("lr.yml", "train.lr", "finite")),
    Case("plan-train-weight-decay-negative", bad_plan(
        "wd.yml", MINE + "    train: {weight_decay: -5}\n"), 2,
         ("wd.yml", "train.weight_decay", ">= 0")),
    Case("plan-logistic-c-grid-inf", bad_plan(
        "grid.yml", MINE + "    logistic: {c_grid: [.inf]}\n"), 2,
         ("grid.yml", "logistic.c_grid[0]", "finite")),
    Case("plan-simulation-effect-size-nan", bad_plan(
        "nan.yml", MINE + "    simulation: {effect_size: .nan}\n"), 2,
         ("nan.yml", "simulation.effect_size", "finite")),
    Case("plan-pretrain-weight-decay-negative", bad_plan(
        "pre.yml", MINE + "    pretrain: {weight_decay: -0.1}\n"), 2,
         ("pre.yml", "pretrain.weight_decay")),
    Case("plan-brainlm-batch-size-0", bad_plan(
        "blm.yml", MINE + "    brainlm: {batch_size: 0}\n"), 2,
         ("blm.yml", "brainlm.batch_size")),
    Case("plan-seed-negative", bad_plan("seed.yml", MINE + "    seed: -1\n"), 2,
         ("seed.yml", "plan key 'seed'", "0..")),
    Case("plan-outputs-runs-dir-root", bad_plan(
        "root.yml", MINE + "    outputs: {runs_dir: /}\n"), 2,
         ("root.yml", "outputs.runs_dir", "file-system root")),
    Case("plan-outputs-data-dir-home", _home_as_data_dir, 2,
         ("home.yml", "outputs.data_dir", "home folder")),
]


# --------------------------------------------------------------------------- cohort folders


def _write(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def _description(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / "dataset_description.json"
        description = json.loads(path.read_text(encoding="utf-8"))
        edit(description)
        path.write_text(json.dumps(description), encoding="utf-8")

    return damage


def _sidecar(pid: str, content: str) -> Callable[[Path], None]:
    return lambda root: _write(series_file(root, pid, "json"), content)


def _rows(pid: str, edit: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    return lambda root: edit_rows(series_file(root, pid), edit)


def _flat(rows: list[str]) -> list[str]:
    return ["\t".join(["0"] * len(rows[0].split("\t")))] * len(rows)


def _frozen(rows: list[str]) -> list[str]:
    return rows[:20] + [rows[19]] * (len(rows) - 20)


def _nan(rows: list[str]) -> list[str]:
    values = rows[5].split("\t")
    values[2] = "n/a"
    return rows[:5] + ["\t".join(values)] + rows[6:]


def _one_column_fewer(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(line.rsplit("\t", 1)[0] for line in lines) + "\n",
                    encoding="utf-8")


def _duplicate(root: Path) -> None:
    shutil.copyfile(series_file(root, "sub-008"), series_file(root, "sub-009"))


def _tr(value: float, *pids: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        for pid in pids:
            series_file(root, pid, "json").write_text(json.dumps({"RepetitionTime": value}))

    return damage


def _participants(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    return lambda root: edit_participants(root, edit)


def _first_column(table: pd.DataFrame) -> pd.DataFrame:
    return table.rename(columns={"participant_id": "subject"})


def _duplicated_id(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[3, "participant_id"] = "sub-003"
    return table


def _bad_label(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[3, "Response"] = "yes"
    return table


def _participants_latin1(root: Path) -> None:
    path = root / "participants.tsv"
    text = path.read_text(encoding="utf-8").replace("placebo", "placébo", 1)
    path.write_bytes(text.encode("latin-1"))


def _header_only(root: Path) -> None:
    path = root / "participants.tsv"
    path.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")


def _extra_folder(root: Path) -> None:
    shutil.copytree(root / "sub-012", root / "sub-099")


def cohort_case(case_id: str, damage: Callable[[Path], object], names: tuple[str, ...],
                xfail: str | None = None) -> Case:
    return Case(case_id, lambda c: validate(c, damage), 1, names, xfail=xfail)


COHORT_CASES = [
    cohort_case("cohort-participants-not-utf8", _participants_latin1,
                ("participants.tsv", "UTF-8")),
    cohort_case("cohort-participants-empty", lambda r: _write(r / "participants.tsv", ""),
                ("participants.tsv", "empty")),
    cohort_case("cohort-participants-header-only", _header_only,
                ("participants.tsv", "no participant rows")),
    cohort_case("cohort-participants-missing", lambda r: (r / "participants.tsv").unlink(),
                ("participants.tsv", "missing")),
    cohort_case("cohort-participants-first-column", _participants(_first_column),
                ("participants.tsv", "participant_id", "'subject'")),
    cohort_case("cohort-participants-duplicated-id", _participants(_duplicated_id),
                ("participants.tsv", "duplicated", "sub-003")),
    cohort_case("cohort-participants-bad-label", _participants(_bad_label),
                ("participants.tsv", "'Response'", "sub-004")),
    cohort_case("cohort-description-a-list",
                lambda r: _write(r / "dataset_description.json", "[1, 2]\n"),
                ("dataset_description.json", "list")),
    cohort_case("cohort-description-not-utf8",
                lambda r: _write(r / "dataset_description.json",
                                 '{"Name": "d\xe9mo", "Atlas": "SIM424"}'.encode("latin-1")),
                ("dataset_description.json", "UTF-8")),
    cohort_case("cohort-description-not-json",
                lambda r: _write(r / "dataset_description.json", '{"Name": "x",}'),
                ("dataset_description.json", "JSON")),
    cohort_case("cohort-description-missing-atlas", _description(lambda d: d.pop("Atlas")),
                ("dataset_description.json", "'Atlas'")),
    cohort_case("cohort-regions-table-missing",
                lambda r: (r / f"atlas-{ATLAS}_regions.tsv").unlink(),
                (f"atlas-{ATLAS}_regions.tsv", "missing")),
    cohort_case("cohort-sidecar-a-list", _sidecar("sub-002", "[2.5]\n"),
                ("sub-002", "_timeseries.json", "list")),
    cohort_case("cohort-sidecar-missing-tr", _sidecar("sub-005", '{"TaskName": "rest"}\n'),
                ("sub-005", "_timeseries.json", "RepetitionTime")),
    cohort_case("cohort-sidecar-tr-in-ms", _tr(2500, *(f"sub-{i:03d}" for i in range(1, 13))),
                ("sub-001", "_timeseries.json", "2500", "milliseconds")),
    cohort_case("cohort-tr-differs-between-subjects", _tr(2.0, "sub-003"),
                ("RepetitionTime differs", "sub-003", "2 s", "2.5 s")),
    cohort_case("cohort-series-flat", _rows("sub-006", _flat), ("sub-006", "flat")),
    cohort_case("cohort-series-frozen", _rows("sub-007", _frozen), ("sub-007", "frozen")),
    cohort_case("cohort-series-duplicated", _duplicate, ("sub-009", "sub-008", "identical")),
    cohort_case("cohort-series-nan", _rows("sub-010", _nan),
                ("sub-010", "_timeseries.tsv", "non-finite", "row 7")),
    cohort_case("cohort-series-too-few-volumes", _rows("sub-011", lambda rows: rows[:10]),
                ("sub-011", "_timeseries.tsv", "10 volumes")),
    cohort_case("cohort-series-one-region-fewer",
                lambda r: _one_column_fewer(series_file(r, "sub-012")),
                ("sub-012", "_timeseries.tsv", "423 region columns", "424")),
    cohort_case("cohort-series-missing", lambda r: series_file(r, "sub-004").unlink(),
                ("sub-004", "_timeseries.tsv", "missing")),
    cohort_case("cohort-subject-folder-missing", lambda r: shutil.rmtree(r / "sub-004"),
                ("sub-004", "participants.tsv", "missing")),
    cohort_case("cohort-extra-subject-folder", _extra_folder,
                ("sub-099", "participants.tsv", "no row")),
    cohort_case("cohort-ground-truth-not-json",
                lambda r: _write(r / "ground_truth.json", '{"effect_size": 1.0'),
                ("ground_truth.json", "JSON", "fmtc simulate")),
    cohort_case("cohort-series-empty-file", lambda r: _write(series_file(r, "sub-003"), ""),
                ("sub-003", "_timeseries.tsv")),
    cohort_case("cohort-series-not-numbers",
                _rows("sub-003", lambda rows: ["abc" + rows[0][rows[0].index("\t"):]] + rows[1:]),
                ("sub-003", "_timeseries.tsv", "numbers")),
    cohort_case("cohort-series-ragged-row",
                _rows("sub-003", lambda rows: rows[:3] + [rows[3] + "\t1.0"] + rows[4:]),
                ("sub-003", "_timeseries.tsv")),
    cohort_case("cohort-sidecar-empty", _sidecar("sub-002", ""),
                ("sub-002", "_timeseries.json", "JSON")),
    cohort_case("cohort-participants-comma-separated",
                lambda r: _write(r / "participants.tsv", (r / "participants.tsv").read_text()
                                 .replace("\t", ",")),
                ("participants.tsv", "participant_id")),
    cohort_case("cohort-participants-all-labels-na",
                lambda r: set_labels(r, ["n/a"] * N_SUBJECTS),
                ("participants.tsv", "no participant has a 'Response' label")),
    cohort_case("cohort-description-datasettype-raw",
                _description(lambda d: d.update(DatasetType="raw")),
                ("dataset_description.json", "DatasetType", "derivative")),
    cohort_case("cohort-description-label-column-unknown",
                _description(lambda d: d.update(LabelColumn="Responder")),
                ("participants.tsv", "'Responder'")),
    Case("cohort-folder-missing", lambda c: ["cohort", "validate", str(c.tmp / "nosuch")], 1,
         ("nosuch", "does not exist")),
    Case("cohort-info-damaged", lambda c: ["cohort", "info", str(validate(
        c, _rows("sub-006", _flat))[-1])], 1,
         ("sub-006", "flat")),
]


# --------------------------------------------------------------------------- labels


def labelled(labels: list[int], *extra: str) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        root = context.copy_cohort("labelled")
        set_labels(root, labels)
        return evaluate_argv(context, *extra, cohort=root)

    return setup


LABEL_CASES = [
    Case("label-single-class", labelled([1] * N_SUBJECTS), 1,
         ("labelled", f"all {N_SUBJECTS} labelled subjects have label 1", "--label"),
         absent=("Lower evaluation.folds", "lower evaluation.folds")),
    Case("label-too-few-of-one-class", labelled([1, 1] + [0] * (N_SUBJECTS - 2)), 1,
         ("labelled", f"{N_SUBJECTS - 2} subjects with label 0 and 2 with label 1",
          "Lower evaluation.folds to 2")),
    Case("label-one-of-one-class", labelled([1] + [0] * (N_SUBJECTS - 1)), 1,
         ("labelled", "1 with label 1", "Add subjects of that class")),
    Case("label-column-unknown", lambda c: evaluate_argv(c, "--label", "Responder"), 1,
         ("participants.tsv", "'Responder'", "--label")),
]


# --------------------------------------------------------------------------- checkpoints


def embed_argv(context: Context, source: str) -> list[str]:
    """``fmtc embed`` of the tiny cohort, features into this case's folder (must stay empty)."""
    plan = context.file("plan.yml", plan_text())
    context.then(lambda c: assert_empty(c.tmp / "features"))
    return ["embed", "--plan", str(plan), "--cohort", str(context.shared.tiny),
            "--brainlm", source]


def assert_empty(folder: Path) -> None:
    """``folder`` (a cache or runs folder) is absent or empty: nothing was half-written."""
    left = sorted(p.name for p in folder.rglob("*")) if folder.exists() else []
    assert not left, f"a failed or stopped command left {left} in {folder}"


def checkpoint(make: Callable[[Path, Context], object]) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        folder = context.tmp / "ckpt"
        folder.mkdir()
        make(folder, context)
        return embed_argv(context, str(folder))

    return setup


def _config(folder: Path) -> None:
    (folder / "config.json").write_text(BrainLMConfig.from_dict(TINY_ENCODER).to_json())


def _random_bytes(name: str) -> Callable[[Path, Context], None]:
    def make(folder: Path, context: Context) -> None:
        _config(folder)
        (folder / name).write_bytes(np.random.default_rng(0).bytes(4096))

    return make


def _unsafe_pickle(folder: Path, context: Context) -> None:
    _config(folder)
    torch.save({"weight": torch.zeros(2), "where": Path("elsewhere")},
               folder / "pytorch_model.bin")


def _not_tensors(folder: Path, context: Context) -> None:
    _config(folder)
    torch.save({"weight": [0.0, 1.0]}, folder / "pytorch_model.bin")


def _truncated_weights(folder: Path, context: Context) -> None:
    shutil.copyfile(context.shared.encoder / "config.json", folder / "config.json")
    data = (context.shared.encoder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])


def _other_config(folder: Path, context: Context) -> None:
    shutil.copyfile(context.shared.encoder / "pytorch_model.bin", folder / "pytorch_model.bin")
    config = dict(TINY_ENCODER, hidden_size=32, decoder_hidden_size=32)
    (folder / "config.json").write_text(BrainLMConfig.from_dict(config).to_json())


def _config_content(content: str) -> Callable[[Path, Context], None]:
    def make(folder: Path, context: Context) -> None:
        (folder / "config.json").write_text(content)
        shutil.copyfile(context.shared.encoder / "pytorch_model.bin",
                        folder / "pytorch_model.bin")

    return make


def _evaluate_ts_with(make: Callable[[Path, Context], object]) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        folder = context.tmp / "ckpt"
        folder.mkdir()
        make(folder, context)
        plan = context.file("plan.yml", plan_text())
        return evaluate_argv(context, "--brainlm", str(folder), plan=plan, model="ts")

    return setup


CHECKPOINT_CASES = [
    Case("ckpt-missing-relative-folder",
         lambda c: embed_argv(c, "./missing/folder"), 1,
         ("./missing/folder", "does not exist")),
    Case("ckpt-missing-absolute-folder",
         lambda c: embed_argv(c, str(c.tmp / "missing" / "folder")), 1,
         ("missing/folder", "does not exist")),
    Case("ckpt-empty-folder", checkpoint(lambda folder, c: None), 1,
         ("ckpt", "config.json", "pytorch_model.bin")),
    Case("ckpt-config-without-weights", checkpoint(lambda folder, c: _config(folder)), 1,
         ("ckpt", "pytorch_model.bin or model.safetensors")),
    Case("ckpt-bin-random-bytes", checkpoint(_random_bytes("pytorch_model.bin")), 1,
         ("pytorch_model.bin", "read safely"), absent=("weights_only=False",)),
    Case("ckpt-bin-unsafe-pickle", checkpoint(_unsafe_pickle), 1,
         ("pytorch_model.bin", "read safely"), absent=("weights_only=False",)),
    Case("ckpt-bin-not-tensors", checkpoint(_not_tensors), 1,
         ("pytorch_model.bin", "state_dict")),
    Case("ckpt-bin-truncated", checkpoint(_truncated_weights), 1,
         ("pytorch_model.bin", "truncated"), absent=("weights_only=False",)),
    Case("ckpt-safetensors-random-bytes", checkpoint(_random_bytes("model.safetensors")), 1,
         ("model.safetensors",)),
    Case("ckpt-config-not-json", checkpoint(_config_content('{"hidden_size": 16,')), 1,
         ("config.json", "JSON")),
    Case("ckpt-config-a-list", checkpoint(_config_content("[16, 1, 2]")), 1,
         ("config.json", "list")),
    Case("ckpt-config-not-brainlm", checkpoint(_config_content('{"hidden_size": 16}')), 1,
         ("config.json", "model_type", "brainlm_mae")),
    Case("ckpt-config-wrong-value", checkpoint(_config_content(
        '{"model_type": "brainlm_mae", "hidden_size": "big"}')), 1,
         ("config.json", "hidden_size", "must be int")),
    Case("ckpt-weights-do-not-match-config", checkpoint(_other_config), 1,
         ("pytorch_model.bin", "do not match")),
    Case("ckpt-weight-file-instead-of-folder",
         lambda c: embed_argv(c, str(c.shared.encoder / "pytorch_model.bin")), 1,
         ("pytorch_model.bin", "folder"), absent=("does not exist",)),
    Case("ckpt-evaluate-ts-bin-random-bytes",
         _evaluate_ts_with(_random_bytes("pytorch_model.bin")), 1,
         ("pytorch_model.bin", "read safely"), absent=("weights_only=False",)),
]


# --------------------------------------------------------------------------- feature caches


def damaged_cache(damage: Callable[[Path], object]) -> Callable[[Context], list[str]]:
    """A copy of the feature cache with its .npz damaged; embed must report and rebuild it."""
    def setup(context: Context) -> list[str]:
        plan = context.file("plan.yml", plan_text())
        features = Path(shutil.copytree(context.shared.features, context.tmp / "features"))
        damage(features / context.shared.cache_file().relative_to(context.shared.features))
        context.then(rebuilt)
        return ["embed", "--plan", str(plan), "--cohort", str(context.shared.tiny),
                "--brainlm", str(context.shared.encoder)]

    return setup


def rebuilt(context: Context) -> None:
    folder = context.shared.cache_file().parent
    fresh = read_features(context.tmp / "features" / folder.name)
    original = read_features(folder)
    assert fresh.subject_ids == original.subject_ids
    assert fresh.cls.tobytes() == original.cls.tobytes()
    assert np.array_equal(fresh.n_windows, original.n_windows)
    stray = [p.name for p in (context.tmp / "features").iterdir() if p.name.startswith(".")]
    assert not stray, stray


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _other_key(path: Path) -> None:
    """The folder's record names another result (its arrays are then never trusted)."""
    record = path.parent / ".fmtc-result.json"
    data = json.loads(record.read_text())
    data["key"] = "0" * 16
    record.write_text(json.dumps(data))


CACHE_CASES = [
    Case("cache-npz-truncated-is-rebuilt", damaged_cache(_truncate), 0,
         ("brainlm-", "features.npz", "damaged", "recomputing")),
    Case("cache-npz-not-a-zip-is-rebuilt",
         damaged_cache(lambda p: p.write_bytes(b"not a zip file\n")), 0,
         ("brainlm-", "features.npz", "damaged", "recomputing")),
    Case("cache-record-of-another-key-is-rebuilt", damaged_cache(_other_key), 0,
         ("brainlm-",), absent=("read back",)),
    Case("cache-npz-zero-filled-is-rebuilt-safely",
         damaged_cache(lambda p: p.write_bytes(bytes(4096))), 0,
         ("brainlm-", "features.npz", "recomputing"), absent=("allow_pickle", "unsafely")),
    Case("cache-npz-rebuilt-is-not-called-read-back", damaged_cache(_truncate), 0,
         ("brainlm-", "recomputing"), absent=("read back",)),
]


# --------------------------------------------------------------------------- output folders


def _previous_run_copy(context: Context) -> Path:
    return context.keep(Path(shutil.copytree(context.shared.run, context.tmp / "kept_run")))


def _unrelated_folder(context: Context) -> Path:
    folder = context.tmp / "not_a_run"
    folder.mkdir()
    (folder / "thesis.tex").write_text("months of work\n")
    return context.keep(folder)


def _a_file(context: Context) -> Path:
    return context.file("a_file", "not a folder\n")


def _keep_file(context: Context, path: Path) -> None:
    content = path.read_bytes()

    def check(c: Context) -> None:
        assert path.read_bytes() == content

    context.then(check)


def _onto_file(context: Context, argv: list[str]) -> list[str]:
    _keep_file(context, context.tmp / "a_file")
    return argv


def _unwritable_parent(context: Context) -> str:
    """A --out whose parent cannot be written (a file as parent when running as root)."""
    if os.geteuid() == 0:  # root ignores permissions
        _a_file(context)
        return str(context.tmp / "a_file" / "run")
    locked = context.tmp / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    context.then(lambda c: locked.chmod(0o700))
    return str(locked / "run")


def _evaluate_out(out: Callable[[Context], str], *extra: str) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        return evaluate_argv(context, *extra, out=out(context))

    return setup


def _simulate(out: Callable[[Context], str], *extra: str,
              seed: str = "2") -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        settings = [*SIMULATE[:-1], seed]
        return ["simulate", "--plan", str(context.shared.plan), "--out", out(context),
                *settings, *extra]

    return setup


def _file_out(context: Context) -> str:
    path = _a_file(context)
    _keep_file(context, path)
    return str(path)


def _cohort_copy_kept(context: Context) -> str:
    return str(context.keep(context.copy_cohort("kept_cohort")))


def _runs_dir_under_file(context: Context) -> list[str]:
    _keep_file(context, _a_file(context))
    plan = context.file("runs.yml", plan_text().replace("runs_dir: runs", "runs_dir: a_file/runs"))
    return evaluate_argv(context, plan=plan, out=None)  # the plan's runs_dir


def _features_dir_under_file(context: Context) -> list[str]:
    _keep_file(context, _a_file(context))
    plan = context.file("features.yml", plan_text().replace("features_dir: features",
                                                             "features_dir: a_file/features"))
    return ["embed", "--plan", str(plan), "--cohort", str(context.shared.tiny),
            "--brainlm", str(context.shared.encoder)]


def _encoder_copy_kept(context: Context) -> str:
    return str(context.keep(Path(shutil.copytree(context.shared.encoder,
                                                 context.tmp / "kept_encoder"))))


def _pretrain_out(out: Callable[[Context], str]) -> Callable[[Context], list[str]]:
    """``fmtc pretrain`` of the tiny cohort for one epoch into ``--out``."""
    def setup(context: Context) -> list[str]:
        plan = context.file("pretrain.yml", plan_text(
            "  once:\n    extends: tiny\n    pretrain: {epochs: 1}\n"))
        return ["pretrain", "--plan", str(plan), "--profile", "once",
                "--cohort", str(context.shared.tiny), "--out", out(context)]

    return setup


def _from_fmriprep(derivatives: str, participants: str = "participants.tsv"
                   ) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        context.file("participants.tsv", "participant_id\tL\nsub-01\t1\nsub-02\t0\n")
        return ["cohort", "from-fmriprep", str(context.tmp / derivatives),
                "--participants", str(context.tmp / participants), "--label", "L",
                "--out", str(context.tmp / "built"), "--atlas", ATLAS,
                "--atlas-cache", str(context.shared.root / "data" / "atlases"),
                "--no-progress"]

    return setup


def _no_room_for_weights(context: Context) -> list[str]:
    """``evaluate --model fc --keep-weights`` where a file may not exceed 4 MiB (the weights
    of a fold's ResNet-18 are ~45 MB): one line naming the fits folder, nothing published."""
    context.file_size_limit = 4 << 20
    fits = context.tmp / "fits"
    plan = context.file("full.yml", plan_text(
        f"  full:\n    extends: tiny\n    train: {{epochs: 1}}\n"
        f"    outputs: {{fits_dir: {fits}}}\n"))
    context.then(lambda c: assert_absent(c.tmp / "new_run"))
    context.then(lambda c: _nothing_published_under(fits))
    return evaluate_argv(context, "--profile", "full", "--keep-weights", plan=plan,
                         model="fc")


def _no_room_for_cohort(context: Context) -> list[str]:
    """``simulate`` where a file may not exceed 64 KiB (a subject's series is ~250 KB)."""
    context.file_size_limit = 64 << 10
    context.then(lambda c: _nothing_published_under(c.tmp))
    return _simulate(lambda c: str(c.tmp / "new_cohort"))(context)


def _nothing_published_under(folder: Path) -> None:
    """No result, no staging folder and no temporary file left under ``folder``."""
    if not folder.exists():
        return
    left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith(("_config", "full.yml")))
    assert not left, f"half-written files left under {folder}: {left[:5]}"


OUTPUT_CASES = [
    Case("out-disk-full-evaluate-weights", _no_room_for_weights, 2,
         ("fits", "size limit", "nothing was published")),
    Case("out-disk-full-simulate", _no_room_for_cohort, 2,
         ("new_cohort", "size limit", "nothing was published")),
    Case("out-evaluate-onto-another-run",
         _evaluate_out(lambda c: str(c.shared.run), "--seed", "7"), 2,
         ("previous_run", "another run", "--overwrite")),
    Case("out-evaluate-identical-run-is-reused", _evaluate_out(lambda c: str(c.shared.run)), 0,
         ("reused", "previous_run")),
    Case("out-evaluate-onto-cohort-folder",
         _evaluate_out(lambda c: str(c.shared.cohort)), 2,
         ("previous_cohort", "which this run reads")),
    Case("out-evaluate-inside-its-cohort",
         _evaluate_out(lambda c: str(c.shared.cohort / "sub-run")), 2,
         ("previous_cohort", "sub-run", "lies inside", "which this run reads")),
    Case("out-evaluate-overwrite-cohort-folder",
         _evaluate_out(_cohort_copy_kept, "--overwrite"), 2,
         ("kept_cohort", "holds a cohort, not a run")),
    Case("out-evaluate-overwrite-unrelated-files",
         _evaluate_out(lambda c: str(_unrelated_folder(c)), "--overwrite"), 2,
         ("not_a_run", "not an fmtc result")),
    Case("out-evaluate-onto-a-file", _evaluate_out(_file_out), 2,
         ("a_file", "is a file, not a run folder")),
    Case("out-evaluate-overwrite-a-file", _evaluate_out(_file_out, "--overwrite"), 2,
         ("a_file", "is a file")),
    Case("out-evaluate-parent-not-writable", _evaluate_out(_unwritable_parent), 2,
         ("cannot write", "--out")),
    Case("out-evaluate-runs-dir-under-a-file", _runs_dir_under_file, 2,
         ("a_file", "outputs.runs_dir")),
    Case("out-embed-features-dir-under-a-file", _features_dir_under_file, 2,
         ("a_file", "outputs.features_dir")),
    Case("out-pretrain-cohort-without-out",
         lambda c: ["pretrain", "--plan", str(c.shared.plan), "--cohort", str(c.shared.tiny)], 2,
         ("--out",)),
    Case("out-pretrain-onto-another-checkpoint", _pretrain_out(_encoder_copy_kept), 2,
         ("kept_encoder",)),
    Case("out-pretrain-into-unrelated-files",
         _pretrain_out(lambda c: str(_unrelated_folder(c))), 2,
         ("not_a_run", "not an fmtc result")),
    Case("out-pretrain-onto-a-file", _pretrain_out(_file_out), 2,
         ("a_file",)),
    Case("out-from-fmriprep-missing-derivatives", _from_fmriprep("nosuch_derivatives"), 1,
         ("nosuch_derivatives", "does not exist")),
    Case("out-from-fmriprep-missing-participants", _from_fmriprep(".", "nosuch.tsv"), 1,
         ("nosuch.tsv", "does not exist")),
    Case("out-simulate-onto-another-cohort", _simulate(lambda c: str(c.shared.cohort)), 2,
         ("previous_cohort", "--overwrite")),
    Case("out-simulate-same-cohort-is-kept",
         _simulate(lambda c: str(c.shared.cohort), seed="1"), 0,
         ("previous_cohort", "kept as it is")),
    Case("out-simulate-onto-a-file", _simulate(_file_out), 2, ("a_file", "is a file")),
    Case("out-simulate-overwrite-unrelated-files",
         _simulate(lambda c: str(_unrelated_folder(c)), "--overwrite"), 2,
         ("not_a_run", "not an fmtc result")),
    Case("out-simulate-under-a-file",
         _simulate(lambda c: str(_a_file(c) / "cohort")), 2,
         ("a_file", "cannot write")),
]


# --------------------------------------------------------------------------- command-line options


def _no_distributed(context: Context) -> None:
    """``distributed`` not installed, and a cohort that must not be read before the error."""
    context.monkeypatch.setitem(sys.modules, "distributed", None)

    def load_cohort(*args, **kwargs):
        raise AssertionError("the cohort was read before the missing package was reported")

    context.monkeypatch.setattr(cohort_folder, "load_cohort", load_cohort)


def _dask_option(context: Context) -> list[str]:
    _no_distributed(context)
    return evaluate_argv(context, "--dask-scheduler", "tcp://127.0.0.1:8786")


def _dask_in_plan(context: Context) -> list[str]:
    _no_distributed(context)
    plan = context.file("dask.yml", plan_text(
        "  mine:\n    extends: tiny\n"
        f"    data: {{cohort: {json.dumps(str(context.shared.cohort))}}}\n"
        "    execution: {dask_scheduler: 'tcp://127.0.0.1:8786'}\n"
        "    experiments:\n      ablation: {arms: {base: {model: fc-logreg}}}\n"))
    context.then(lambda c: assert_empty(c.tmp / "runs"))
    return ["experiment", "ablation", "--plan", str(plan), "--profile", "mine"]


def _generalise(*extra: str) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        context.then(lambda c: assert_absent(c.tmp / "new_run"))
        return ["generalise", "--plan", str(context.shared.plan), "--cohort",
                str(context.shared.cohort), "--model", "fc-logreg", "--out",
                str(context.tmp / "new_run"), *extra]

    return setup


def _notebooks(context: Context) -> Path:
    folder = context.tmp / "notebooks"
    folder.mkdir()
    for name in ("01_cohort", "02_comparison"):
        (folder / f"{name}.ipynb").write_text("{}\n")
    return context.keep(folder)


def _reproduce_only(context: Context) -> list[str]:
    folder = _notebooks(context)
    context.then(lambda c: assert_absent(c.tmp / "book"))
    return ["reproduce", "--plan", str(context.shared.plan), "--notebooks", str(folder),
            "--book", str(context.tmp / "book"), "--scratch-copy", str(context.tmp / "copy"),
            "--only", "01_cohort", "no_such_page"]


def _damaged_cohort(context: Context) -> list[str]:
    """A cohort with 7 problems, given to ``fmtc evaluate``: one line, the first few shown."""
    root = context.copy_cohort()
    for i in range(1, 7):
        series_file(root, f"sub-{i:03d}").unlink()
    series_file(root, "sub-007", "json").write_text("[2.5]\n")
    return evaluate_argv(context, cohort=root)


def _empty_participants(context: Context) -> list[str]:
    root = context.copy_cohort()
    (root / "participants.tsv").write_text("")
    return ["embed", "--plan", str(context.shared.plan), "--cohort", str(root),
            "--brainlm", str(context.shared.encoder)]


def _from_fmriprep_participants_folder(context: Context) -> list[str]:
    argv = _from_fmriprep(".")(context)
    folder = context.tmp / "labels"
    folder.mkdir()
    argv[argv.index("--participants") + 1] = str(folder)
    return argv


def _fetch(*extra: str) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        context.then(lambda c: assert_absent(c.tmp / "ds000208"))
        return ["fetch", "ds000208", "--out", str(context.tmp / "ds000208"), *extra]

    return setup


OPTION_CASES = [
    Case("opt-evaluate-seed-negative", lambda c: evaluate_argv(c, "--seed", "-1"), 2,
         ("--seed", "-1", "2**32 - 1")),
    Case("opt-evaluate-seed-not-an-integer", lambda c: evaluate_argv(c, "--seed", "1.5"), 2,
         ("--seed", "'1.5'", "not an integer")),
    Case("opt-experiment-seed-2-to-the-32",
         lambda c: ["experiment", "ablation", "--plan", str(c.shared.plan), "--seed",
                    str(2**32)], 2, ("--seed", "4294967296")),
    Case("opt-simulate-seed-negative", _simulate(lambda c: str(c.tmp / "new_cohort"),
                                                 seed="-5"), 2, ("--seed", "-5")),
    Case("opt-generalise-test-seed-negative", _generalise("--scheme", "cross-cohort",
                                                          "--test-seed", "-1"), 2,
         ("--test-seed", "-1")),
    Case("opt-generalise-test-seed-with-drug-scheme", _generalise("--scheme", "drug",
                                                                  "--test-seed", "1"), 2,
         ("--test-seed", "--scheme cross-cohort", "drug")),
    Case("opt-generalise-test-cohort-with-default-schemes",
         lambda c: _generalise("--test-cohort", str(c.shared.cohort))(c), 2,
         ("--test-cohort", "--scheme cross-cohort", "(the default)")),
    Case("opt-evaluate-brainlm-without-a-brainlm-model",
         lambda c: evaluate_argv(c, "--brainlm", "./no-such-ckpt"), 2,
         ("--brainlm './no-such-ckpt'", "--model fc-logreg", "reads BrainLM features",
          "fmmtc")),
    Case("opt-evaluate-readout-without-a-brainlm-model",
         lambda c: evaluate_argv(c, "--readout", "mean", "--model", "covariates-logreg"), 2,
         ("--readout mean", "--model fc-logreg --model covariates-logreg")),
    Case("opt-evaluate-dask-scheduler-without-distributed", _dask_option, 2,
         ("--dask-scheduler tcp://127.0.0.1:8786", "'distributed'", "pip install 'fmtc[dask]'")),
    Case("opt-experiment-plan-dask-scheduler-without-distributed", _dask_in_plan, 2,
         ("execution.dask_scheduler", "pip install 'fmtc[dask]'")),
    Case("opt-reproduce-only-unknown-page", _reproduce_only, 2,
         ("--only no_such_page", "01_cohort, 02_comparison")),
    Case("opt-reproduce-notebooks-missing",
         lambda c: ["reproduce", "--plan", str(c.shared.plan), "--notebooks",
                    str(c.tmp / "nosuch"), "--no-build"], 2,
         ("--notebooks", "nosuch", "does not exist")),
    Case("opt-interpret-subjects-and-all-subjects",
         lambda c: ["interpret", "--run", str(c.shared.run), "--subjects", "2",
                    "--all-subjects"], 2,
         ("--all-subjects", "--subjects")),
    Case("opt-interpret-steps-1",
         lambda c: ["interpret", "--run", str(c.shared.run), "--steps", "1"], 2,
         ("--steps", "at least 2")),
    Case("opt-interpret-ts-steps-0",
         lambda c: ["interpret", "--run", str(c.shared.run), "--ts-steps", "0"], 2,
         ("--ts-steps", "at least 2")),
    Case("opt-fetch-jobs-0", _fetch("--jobs", "0"), 2, ("--jobs", "at least 1")),
    Case("opt-from-fmriprep-jobs-0",
         lambda c: [*_from_fmriprep(".")(c), "--jobs", "0"], 2, ("--jobs", "at least 1")),
    Case("opt-from-fmriprep-participants-a-folder", _from_fmriprep_participants_folder, 1,
         ("--participants", "labels", "is a folder")),
    Case("opt-evaluate-cohort-a-file",
         lambda c: evaluate_argv(c, cohort=_a_file(c)), 1,
         ("a_file", "is a file, not a cohort folder")),
    Case("opt-evaluate-cohort-missing",
         lambda c: evaluate_argv(c, cohort=c.tmp / "nosuch_cohort"), 1,
         ("nosuch_cohort", "does not exist")),
    Case("opt-evaluate-damaged-cohort-one-line", _damaged_cohort, 1,
         ("is not valid, 7 problems", "sub-001", "more: `fmtc cohort validate")),
    Case("opt-embed-cohort-empty-participants-one-line", _empty_participants, 1,
         ("participants.tsv", "empty")),
]


# --------------------------------------------------------------------------- interruptions


def _stop(kind: str) -> None:
    if kind == "ctrl-c":
        raise KeyboardInterrupt
    os.kill(os.getpid(), signal.SIGTERM)  # fmtc.cli turns it into Terminated
    for _ in range(200):
        time.sleep(0.01)
    raise AssertionError("SIGTERM was not delivered")


def _stop_second_fit(context: Context, kind: str) -> dict:
    """Let the first fit finish, then stop at the second; return a switch to disarm it."""
    state = {"armed": True, "calls": 0}
    original = fits_module.run_fold

    def run_fold(task, data, **options):
        state["calls"] += 1
        if state["armed"] and state["calls"] == 2:
            _stop(kind)
        return original(task, data, **options)

    context.monkeypatch.setattr(fits_module, "run_fold", run_fold)
    return state


def _own_fits(context: Context) -> Path:
    """A plan whose fits are this case's own (the previous run's are in the shared store)."""
    return context.file("own_fits.yml", plan_text())


def _stopped_evaluate(kind: str) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        state = _stop_second_fit(context, kind)
        context.then(lambda c: _resume(c, state))
        return evaluate_argv(context, out="resumed_run", plan=_own_fits(context))

    return setup


def _resume(context: Context, state: dict) -> None:
    """The stopped run is not published; the same command then gives the previous tables."""
    out = context.tmp / "resumed_run"
    assert_absent(out)
    state["armed"] = False
    before = state["calls"]
    quiet_main(evaluate_argv(context, out="resumed_run", plan=_own_fits(context)))
    assert state["calls"] - before == 2, "the fit finished before the stop was computed again"
    for name in RUN_TABLES:
        assert (out / name).read_bytes() == (context.shared.run / name).read_bytes(), name
    left = [p.name for p in context.tmp.iterdir() if p.name.startswith(".resumed_run")]
    assert not left, f"the finished run left {left} behind"


def _stopped_overwrite(context: Context) -> list[str]:
    _stop_second_fit(context, "ctrl-c")
    return evaluate_argv(context, "--seed", "3", "--overwrite",
                         out=_previous_run_copy(context), plan=_own_fits(context))


def _stopped_simulation(kind: str, overwrite: bool = False) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        def simulate_cohort(*args, **kwargs):
            _stop(kind)

        context.monkeypatch.setattr(generator, "simulate_cohort", simulate_cohort)
        if overwrite:
            out = _cohort_copy_kept(context)
        else:
            out = str(context.tmp / "new_cohort")
            context.then(lambda c: assert_absent(c.tmp / "new_cohort"))
        context.then(lambda c: _no_hidden(c.tmp))
        return ["simulate", "--plan", str(context.shared.plan), "--out", out,
                *SIMULATE[:-1], "2", *(["--overwrite"] if overwrite else [])]

    return setup


def _no_hidden(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".git"]
    assert not left, f"a stopped command left {left} in {folder}"


def _stopped_embedding(kind: str) -> Callable[[Context], list[str]]:
    def setup(context: Context) -> list[str]:
        def encode(*args, **kwargs):
            _stop(kind)

        context.monkeypatch.setattr(features_module, "_encode_cohort", encode)
        return embed_argv(context, str(context.shared.encoder))

    return setup


def _stopped_validation(context: Context) -> list[str]:
    def check(*args, **kwargs):
        raise KeyboardInterrupt

    context.monkeypatch.setattr(cohort_folder, "_check_recordings", check)
    return ["cohort", "validate", str(context.shared.cohort)]


STOP_CASES = [
    Case("stop-evaluate-ctrl-c-then-resume", _stopped_evaluate("ctrl-c"), 130,
         ("fmtc evaluate: interrupted", "finished work is kept")),
    Case("stop-evaluate-sigterm-then-resume", _stopped_evaluate("sigterm"), 143,
         ("fmtc evaluate: terminated", "finished work is kept")),
    Case("stop-evaluate-overwrite-keeps-old-run", _stopped_overwrite, 130,
         ("fmtc evaluate: interrupted",)),
    Case("stop-simulate-ctrl-c", _stopped_simulation("ctrl-c"), 130,
         ("fmtc simulate: interrupted",)),
    Case("stop-simulate-overwrite-keeps-old-cohort",
         _stopped_simulation("sigterm", overwrite=True), 143,
         ("fmtc simulate: terminated",)),
    Case("stop-embed-sigterm", _stopped_embedding("sigterm"), 143,
         ("fmtc embed: terminated",)),
    Case("stop-embed-ctrl-c", _stopped_embedding("ctrl-c"), 130,
         ("fmtc embed: interrupted",)),
    Case("stop-cohort-validate-ctrl-c", _stopped_validation, 130,
         ("fmtc cohort: interrupted",)),
]


CASES = PLAN_CASES + PLAN_SAFETY_CASES + OPTION_CASES + COHORT_CASES + LABEL_CASES \
    + CHECKPOINT_CASES + CACHE_CASES + OUTPUT_CASES + STOP_CASES


def _params(cases: list[Case]) -> list:
    marks = {case.id: [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
             for case in cases}
    return [pytest.param(case, id=case.id, marks=marks[case.id]) for case in cases]


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input(case: Case, shared: Shared, tmp_path, monkeypatch, capsys):
    (tmp_path / ".git").mkdir()  # find_project_plan stops here
    context = Context(tmp_path, shared, monkeypatch)
    outcome = run_case(case, context, capsys)
    check_outcome(case, outcome)
    assert not outcome.changed, f"the command changed files it had to keep: {outcome.changed}"
    for check in context.checks:
        check(context)
    assert tree_hashes(shared.cohort, shared.run, shared.tiny, shared.encoder,
                       shared.features) == shared.hashes, "a previous result changed"


# --------------------------------------------------------------------------- read_features


def _missing_json(path: Path) -> None:
    (path.parent / "encoder.json").unlink()


def _other_shape(path: Path) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["cls"] = arrays["cls"][:1]
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize("damage", [
    pytest.param(_truncate, id="truncated"),
    pytest.param(lambda p: p.write_bytes(b"\x00" * 64), id="zeros"),
    pytest.param(_other_shape, id="other-shape"),
    pytest.param(_missing_json, id="json-missing"),
])
def test_read_features_names_a_damaged_cache_file(damage, shared: Shared, tmp_path):
    copy = Path(shutil.copytree(shared.features, tmp_path / "features"))
    npz = copy / shared.cache_file().relative_to(shared.features)
    damage(npz)
    with pytest.raises(CacheError, match="brainlm-") as caught:
        read_features(npz.parent)
    assert "rebuild" in str(caught.value)
