"""End to end: every notebook runs on the tiny profile (a test a page); the strict build passes.

The notebooks execute into a temporary copy of the book; the tracked book tree and the
notebook sources are never written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_sources_have_parameters_and_no_outputs():
    sources = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert sources
    for source in sources:
        notebook = json.loads(source.read_text())
        code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code), source
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), source


def test_every_notebook_has_an_executed_copy_in_the_book():
    toc = (ROOT / "book" / "_toc.yml").read_text()
    for source in (ROOT / "notebooks").glob("*.ipynb"):
        assert (ROOT / "book" / source.name).is_file(), f"run `make book` to add {source.name}"
        assert f"file: {source.stem}" in toc


PAGES = sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> dict[str, Path]:
    """A scratch copy of the book and a plan whose ``tiny`` profile writes under a temporary folder.

    The tiny profile (16 subjects, 3 folds, 2 epochs, the pages' sweeps cut to one setting)
    checks that every page runs end to end and the book builds; the pages share one store, so
    the first page pays for the cohort, the encoder and the features, later pages reuse them
    and each other's fits. The tracked book and the notebook sources are never written.
    """
    from stages_fixture import make_page_repo, write_cbig_centroids

    from fmtc.report.reproduce import copy_book

    root = tmp_path_factory.mktemp("tiny-book")
    # The real-trial page clones the STAGES repository: here a small look-alike (its notice
    # says so), with a centroid table in CBIG's format.
    stages, commit = make_page_repo(root / "stages-fixture")
    centroids = write_cbig_centroids(root / "centroids.csv")
    plan_file = root / "plan.yml"
    plan_file.write_text(
        "profiles:\n  tiny:\n    outputs:\n"
        + "".join(f"      {key}: {root / 'data' / sub}\n" for key, sub in (
            ("data_dir", ""), ("cohorts_dir", "cohorts"), ("features_dir", "features"),
            ("models_dir", "models"), ("fits_dir", "fits"), ("runs_dir", "runs")))
        + f"      book_dir: {ROOT / 'book'}\n"
        + f"    pages:\n      stages_source: {stages}\n      stages_revision: {commit}\n"
        + f"      stages_regions_file: {centroids}\n")
    tracked = {p: p.stat().st_mtime_ns for p in (ROOT / "book").glob("*.ipynb")}
    book = copy_book(ROOT / "book", root / "book")
    yield {"root": root, "plan": plan_file, "book": book}
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "book").glob("*.ipynb")} == tracked


def _reproduce(tiny_book: dict[str, Path], *options: str) -> subprocess.CompletedProcess:
    # One torch / BLAS thread: `make test` runs two test workers on two cores, and a kernel
    # with two threads beside another worker's two spins for the cores it waits on.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "fmtc", "reproduce", "--profile", "tiny", "--plan",
         str(tiny_book["plan"]), "--notebooks", str(ROOT / "notebooks"), "--book",
         str(tiny_book["book"]), *options], capture_output=True, text=True,
        cwd=tiny_book["root"], env=env)


@pytest.mark.parametrize("page", PAGES)
def test_each_page_runs_on_the_tiny_profile(tiny_book, page):
    # The committed copies were executed on another profile: each page is executed here.
    result = _reproduce(tiny_book, "--only", page, "--no-build")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 notebook(s) executed on profile 'tiny'" in result.stdout, result.stdout
    record = json.loads((tiny_book["book"] / f"{page}.ipynb").read_text())["metadata"]["fmtc"]
    assert record["kind"] == "page", record
    assert record["identity"]["config"]["parameters"]["profile"] == "tiny", record


def test_the_tiny_book_builds_strictly_and_nothing_is_left_stale(tiny_book):
    # After the page tests this executes nothing (run alone, it executes every page first).
    result = _reproduce(tiny_book)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stale" not in result.stdout, result.stdout
    html = tiny_book["book"] / "_build" / "html"
    assert (html / "index.html").is_file()
    baseline_page = (html / "01_cohort_and_fc_baseline.html").read_text()
    assert "SIMULATED" in baseline_page and "<img" in baseline_page
    assert "MCC" in baseline_page
    from fmtc.report.launch import github_parts, repository_url

    owner, name = github_parts(repository_url(ROOT))  # launch buttons from the one setting
    assert f"https://mybinder.org/v2/gh/{owner}/{name}/main?urlpath=tree/book/" in baseline_page
    assert f"https://colab.research.google.com/github/{owner}/{name}/blob/" in baseline_page
    assert 'href="_downloads/' in baseline_page and "fc-logreg_summary.csv" in baseline_page
    again = _reproduce(tiny_book, "--missing-only", "--no-build")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 notebook(s) executed" in again.stdout and "stale" not in again.stdout


ABSOLUTE = re.compile(r"(?<![\w:/.~<])/(?:home|root|work|tmp|Users|usr|opt|var|mnt|srv)/")


def test_executed_notebooks_in_the_book_carry_no_absolute_path():
    from fmtc.report.reproduce import absolute_paths_in, default_roots

    for path in sorted((ROOT / "book").glob("*.ipynb")):
        assert absolute_paths_in(path, default_roots(ROOT, ROOT / "book")) == [], path.name
        notebook = json.loads(path.read_text())
        texts = [json.dumps(notebook["metadata"])]
        for cell in notebook["cells"]:
            texts.append("".join(cell["source"]))
            for output in cell.get("outputs", []):
                texts.append("".join(output.get("text", "")))
                texts += ["".join(v) if isinstance(v, list) else str(v)
                          for k, v in output.get("data", {}).items() if k.startswith("text/")]
                texts += output.get("traceback", [])
        found = [m.group(0) for text in texts for m in ABSOLUTE.finditer(text)]
        assert not found, f"{path.name}: {found[:5]}"
        injected = [c for c in notebook["cells"]
                    if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
        assert all("remove-cell" in c["metadata"]["tags"] for c in injected), path.name


HIDDEN = {"remove-cell", "remove-input", "hide-input"}


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_every_page_opens_with_its_title_then_the_data_notice():
    for source in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = _cells(source)
        install, title, parameters, setup = cells[:4]
        assert "remove-cell" in install["metadata"]["tags"], source.name  # the Colab cell
        assert title["cell_type"] == "markdown", source.name
        text = "".join(title["source"]).strip()
        assert text.startswith("# ") and "\n" not in text, f"{source.name}: title only"
        assert parameters["metadata"]["tags"] == ["parameters", "remove-cell"], source.name
        code = "".join(setup["source"])
        assert setup["metadata"]["tags"] == ["hide-input"], source.name
        assert "pages.notice(" in code or "pages.admonition(" in code, source.name
        assert ".use_book_style()" in code, source.name
        assert "myst_nb" not in "".join("".join(c["source"]) for c in cells), source.name
        for cell in cells:  # plumbing hidden: no code cell is shown as it is, and a cell
            if cell["cell_type"] == "code":  # that shows output has the Show code toggle
                tags = set(cell["metadata"].get("tags", []))
                assert HIDDEN & tags, (source.name, cell["source"])
                assert "remove-input" not in tags, (source.name, "use hide-input",
                                                    cell["source"])


def test_executed_pages_show_the_notice_first_and_their_downloads_exist():
    for path in sorted((ROOT / "book").glob("[0-9]*.ipynb")):
        shown = [o for c in _cells(path) if c["cell_type"] == "code"
                 and "remove-cell" not in c["metadata"].get("tags", [])
                 for o in c.get("outputs", []) if o["output_type"] != "stream"]
        first = "".join(shown[0]["data"].get("text/html", ""))
        assert 'class="admonition' in first and ("SIMULATED" in first or "Real data" in first), \
            f"{path.name}: the data notice is not the first output (run `make book`)"
        for output in shown:
            record = output.get("metadata", {}).get("fmtc_downloads")
            if record:
                for entry in record["files"]:
                    assert "source" not in entry, path.name  # no path of the machine kept
                    copy = ROOT / "book" / "downloads" / record["page"] / entry["name"]
                    assert copy.is_file(), f"{copy} is missing (run `make book`)"


GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`")


def _glued_keys(path: Path) -> set[str]:
    return {o["metadata"]["scrapbook"]["name"] for c in _cells(path) if c["cell_type"] == "code"
            for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}


def test_every_glued_number_a_page_quotes_is_in_its_executed_copy():
    # A page's own keys are in its executed copy; a cross-page key (``page.ipynb::key:fmt``,
    # as the claims page's summary quotes) is in the executed copy of the page it names.
    for path in sorted((ROOT / "book").glob("[0-9]*.ipynb")):
        cells = _cells(path)
        quoted = {name for c in cells if c["cell_type"] == "markdown"
                  for name in GLUE_ROLE.findall("".join(c["source"]))}
        own = {name for name in quoted if "::" not in name}
        missing = own - _glued_keys(path)
        assert not missing, f"{path.name}: not glued {sorted(missing)} (run `make book`)"
        for name in sorted(quoted - own):
            page, key = name.split("::", 1)
            assert key.split(":", 1)[0] in _glued_keys(ROOT / "book" / page), (
                f"{path.name} quotes {name}, which {page} does not glue (run `make book`)")


def test_no_executed_page_shows_a_figure_twice():
    for path in sorted((ROOT / "book").glob("[0-9]*.ipynb")):
        images = [o["data"]["image/png"] for c in _cells(path) if c["cell_type"] == "code"
                  and "remove-cell" not in c["metadata"].get("tags", [])
                  for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        assert len(images) == len(set(map(str, images))), \
            f"{path.name}: a figure is shown twice (display it with pages.show; run `make book`)"


def test_committed_pages_are_meaningful_launchable_and_from_committed_code():
    # Every committed page was executed on a profile marked meaningful, that exists among
    # fmtc's built-in profiles (so that Colab and Binder can run the copy as it is), from a
    # clean commit; so were the runs whose provenance it offers for download.
    import yaml

    from fmtc.plan import load_plan

    builtin = yaml.safe_load((ROOT / "fmtc" / "plans" / "profiles.yml").read_text())["profiles"]
    problems = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        record = json.loads(path.read_text(encoding="utf-8"))["metadata"].get("fmtc", {})
        profile = record.get("identity", {}).get("config", {}).get("parameters", {}).get(
            "profile")
        commit = record.get("provenance", {}).get("git_commit") or ""
        if profile not in builtin:
            problems.append(f"{path.name}: profile {profile!r} is not built in")
        elif not load_plan(profile, ROOT / "_config.yml").meaningful:
            problems.append(f"{path.name}: profile {profile!r} is marked not meaningful")
        if not commit or commit.endswith("-dirty"):
            problems.append(f"{path.name}: executed from {commit or 'no commit'}")
        if "marked not meaningful" in path.read_text(encoding="utf-8"):
            problems.append(f"{path.name}: shows the not-meaningful notice")
    for path in sorted((ROOT / "book" / "downloads").rglob("*.json")):
        if "-dirty" in path.read_text(encoding="utf-8"):
            problems.append(f"{path.relative_to(ROOT)}: computed from uncommitted code")
    assert not problems, ("re-execute with `fmtc reproduce --profile quick` from a clean "
                          "checkout: " + "; ".join(problems))
