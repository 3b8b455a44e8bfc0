"""The runnable book: the one repository setting, the Colab install cell, downloads, glue."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from fmtc.report import launch, pages

ROOT = Path(__file__).resolve().parents[1]


def test_the_tracked_files_carry_the_one_repository_setting():
    assert launch.sync(ROOT, check=True) == [], "run `fmtc book-settings`"
    url = launch.repository_url(ROOT)
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert config["repository"]["url"] == url
    assert config["launch_buttons"]["binderhub_url"] and config["launch_buttons"]["colab_url"]
    assert config["html"]["use_repository_button"] and config["html"]["use_issues_button"]
    assert launch.badges(url) in (ROOT / "README.md").read_text()


def test_a_changed_setting_reaches_every_generated_file(tmp_path):
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    (tmp_path / "book").mkdir()
    shutil.copy(ROOT / "book" / "_config.yml", tmp_path / "book" / "_config.yml")
    for page in (ROOT / "book").glob("*.ipynb"):  # the README's findings block reads them
        shutil.copy(page, tmp_path / "book" / page.name)
    pyproject = tmp_path / "pyproject.toml"
    old = launch.repository_url(tmp_path)
    new = "https://github.com/someone-else/fmtc-fork"
    pyproject.write_text(pyproject.read_text().replace(old, new))

    changed = launch.sync(tmp_path)
    assert tmp_path / "book" / "_config.yml" in changed and tmp_path / "README.md" in changed
    assert launch.sync(tmp_path, check=True) == []  # idempotent
    for path in [tmp_path / "README.md", tmp_path / "book" / "_config.yml",
                 *sorted((tmp_path / "notebooks").glob("*.ipynb"))]:
        text = path.read_text()
        assert new in text and old not in text, path.name
    config = yaml.safe_load((tmp_path / "book" / "_config.yml").read_text())
    assert config["title"] and config["bibtex_bibfiles"]  # the other keys are kept


def test_a_repository_that_is_not_on_github_is_refused_with_the_fix(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(launch.SettingsError, match=r"\[project.urls\] Repository"):
        launch.repository_url(tmp_path)
    with pytest.raises(launch.SettingsError, match="github.com/OWNER/NAME"):
        launch.synced_book_config({}, "https://gitlab.com/a/b")


def _install_cell(path: Path) -> dict:
    notebook = json.loads(path.read_text())
    first = notebook["cells"][0]
    assert first["cell_type"] == "code" and "colab-install" in first["metadata"]["tags"]
    assert "remove-cell" in first["metadata"]["tags"]  # hidden in the book
    return first


@pytest.mark.parametrize("folder", ["notebooks", "book"])
def test_every_notebook_first_installs_fmtc_on_colab_only(folder, monkeypatch):
    url = launch.repository_url(ROOT)
    for path in sorted((ROOT / folder).glob("*.ipynb")):
        code = "".join(_install_cell(path)["source"])
        calls: list[list[str]] = []
        monkeypatch.setattr(subprocess, "run", lambda args, _calls=calls, **kw: _calls.append(args))
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
        exec(compile(code, path.name, "exec"), {})
        assert calls == [], f"{path.name} installs outside Colab"
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
        exec(compile(code, path.name, "exec"), {})
        extras = json.loads(path.read_text())["metadata"].get(launch.EXTRAS_KEY, [])
        assert calls and calls[0][-1] == launch.install_requirement(url, extras=extras), path.name
        assert calls[0][:4] == [sys.executable, "-m", "pip", "install"]


def test_the_colab_requirement_installs_fmtc_from_a_git_clone(tmp_path):
    """The install cell's pip path, against a clone of this repository (git+file://)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of fmtc")
    try:  # the build runs offline, in this environment: it needs the build backend here
        from importlib.metadata import version

        setuptools_major = int(version("setuptools").split(".")[0])
        version("wheel")
    except Exception:  # noqa: BLE001 - any missing piece means: cannot build offline here
        setuptools_major = 0
    if setuptools_major < 68:
        pytest.skip("needs setuptools>=68 and wheel installed (pip install setuptools wheel) "
                    "to build fmtc offline")
    clone = tmp_path / "clone"
    # A full clone: pip cannot clone from a shallow one (it loops on "filtering not recognized").
    subprocess.run(["git", "clone", "--quiet", f"file://{ROOT}", str(clone)],
                   check=True)
    site = tmp_path / "site"
    requirement = launch.install_requirement(f"git+file://{clone}")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), requirement],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (site / "fmtc" / "report" / "launch.py").is_file()
    assert (site / "fmtc" / "plans" / "profiles.yml").is_file()  # package data travels too
    metadata = next(site.glob("fmtc-*.dist-info")) / "METADATA"
    assert f"Project-URL: Repository, {launch.repository_url(ROOT)}" in metadata.read_text()


def test_glue_without_myst_nb_writes_what_myst_nb_writes(monkeypatch):
    shown = []
    import IPython.display

    monkeypatch.setattr(IPython.display, "display",
                        lambda bundle, raw, metadata: shown.append((bundle, metadata)))
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # as if not installed
    pages.glue("mcc", "0.42", display=False)
    bundle, metadata = shown[0]
    assert bundle == {"application/papermill.record/text/plain": "'0.42'"}
    assert metadata["scrapbook"] == {"name": "mcc",
                                     "mime_prefix": "application/papermill.record/"}


def test_downloads_are_copied_under_the_book_and_their_sources_forgotten(tmp_path):
    run = tmp_path / "data" / "runs" / "main-comparison_smoke_abc"
    run.mkdir(parents=True)
    (run / "summary.csv").write_text("arm,mean\nfmmtc,0.1\n")
    (run / "provenance.json").write_text("{}\n")
    claims = tmp_path / "data" / "runs" / "claims_smoke.csv"
    claims.write_text("claim,verdict\nx,y\n")
    files = pages._offered_files({"main-comparison": run, "claims": claims})
    assert [name for _, name, _ in files] == ["main-comparison_summary.csv",
                                              "main-comparison_provenance.json", "claims.csv"]
    record = {"page": "02_x", "files": [{"source": str(s), "name": n} for s, n, _ in files]}
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {"text/markdown": "links"},
         "metadata": {pages.DOWNLOADS_KEY: record}}]}], "metadata": {}}
    path = tmp_path / "02_x.ipynb"
    path.write_text(json.dumps(notebook))
    book = tmp_path / "book"
    (book / "downloads" / "02_x").mkdir(parents=True)
    (book / "downloads" / "02_x" / "old_table.csv").write_text("stale")

    written = pages.place_downloads(path, book, tmp_path)
    assert sorted(p.name for p in written) == sorted(n for _, n, _ in files)
    assert (book / "downloads" / "02_x" / "claims.csv").read_text() == claims.read_text()
    assert not (book / "downloads" / "02_x" / "old_table.csv").exists()
    assert str(tmp_path) not in path.read_text()  # no path of this machine is kept
    with pytest.raises(FileNotFoundError, match="offered as 'gone'"):
        pages._offered_files({"gone": tmp_path / "missing"})


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_the_notice_says_simulated_and_describes_the_profile_in_a_sentence(profile):
    from fmtc.plan import load_plan

    plan = load_plan(profile=profile)
    cohort = types.SimpleNamespace(is_simulated=True, ground_truth={"effect_size": 1.0},
                                   name="sim", subject_ids=["sub-01"])
    body = pages.notice(cohort, plan).data
    assert "SIMULATED DATA" in body and "effect size 1" in body
    assert f"Profile <code>{profile}</code>: 5-fold CV" in body
    described = plan.description.strip()
    assert described[:1].upper() + described[1:].rstrip(".") in body.replace("&#x27;", "'")
    assert "))" not in body and ".." not in body
    real = types.SimpleNamespace(is_simulated=False, name="ds000208",
                                 subject_ids=["sub-01", "sub-02"])
    body = pages.notice(real, plan).data
    assert "Real data" in body and "<code>ds000208</code> (2 subjects)" in body
    assert "SIMULATED" not in body


def test_show_displays_a_figure_once_and_closes_it(monkeypatch):
    import IPython.display
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    fig, _ = plt.subplots()
    pages.show(fig)
    assert shown == [fig]
    assert not plt.fignum_exists(fig.number)  # the inline backend will not show it again


def test_a_committed_book_page_runs_from_a_folder_outside_the_repository(tmp_path):
    # What Colab and Binder do: the executed copy alone, no project plan above it. The page
    # must run on a built-in profile, say that it reads the built-in plan, and write its
    # results under the folder it runs in.
    page = "01_cohort_and_fc_baseline.ipynb"
    shutil.copy(ROOT / "book" / page, tmp_path / page)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "papermill", page, "out.ipynb", "-p", "profile", "tiny",
         "-k", "python3", "--no-progress-bar"],
        cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    executed = (tmp_path / "out.ipynb").read_text(encoding="utf-8")
    assert "fmtc&#x27;s built-in profiles" in executed or "fmtc's built-in profiles" in executed
    assert (tmp_path / "data" / "cohorts").is_dir()
    assert not (ROOT / "book" / "out.ipynb").exists()
