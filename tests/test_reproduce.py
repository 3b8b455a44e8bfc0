"""``fmtc reproduce`` without the book build: executed copies are free of machine paths.

Tiny throwaway notebooks (plain Python cells) run on a real ``python3`` kernel in a
temporary "repository" with a ``notebooks/`` and a ``book/`` folder.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from fmtc.report.reproduce import (
    REMOVE_TAG,
    NotebookError,
    absolute_paths_in,
    default_roots,
    execute_notebooks,
    kernel_environment,
    kernel_path,
    notebook_parameters,
    replacement_roots,
    reproduce,
    scrub_notebook,
    scrub_text,
)

PRINTS_PATHS = """\
import os
import sys
import warnings
print("cwd:", os.getcwd())
print("data at", os.path.join(os.getcwd(), "data", "runs", "x.csv"))
print("home file", os.path.join(os.path.expanduser("~"), ".cache", "thing"))
warnings.warn_explicit("deprecated thing", UserWarning,
                       filename=os.path.join(sys.prefix, "lib", "somelib", "mod.py"), lineno=7)
print("profile is", profile)
"""


def _notebook(path: Path, *cells: str) -> Path:
    """Write a source notebook: a ``parameters`` cell, then ``cells``."""
    parameters = nbformat.v4.new_code_cell('profile = "x"\nplan_file = None')
    parameters.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(
        cells=[parameters, *(nbformat.v4.new_code_cell(c) for c in cells)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A throwaway repository with one source notebook and an empty book folder."""
    root = tmp_path / "repo"
    _notebook(root / "notebooks" / "01_paths.ipynb", PRINTS_PATHS)
    (root / "book").mkdir()
    return root


def _all_text(path: Path) -> str:
    notebook = nbformat.read(str(path), as_version=4)
    parts = []
    for cell in notebook.cells:
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(v) for v in output.get("data", {}).values())
            parts.extend(output.get("traceback", []))
    return "\n".join(parts)


def test_executed_copy_has_no_absolute_path_and_path_is_restored(repo: Path) -> None:
    path_before = os.environ.get("PATH")
    report = reproduce(repo / "notebooks", repo / "book", "smoke", None, build=False, cwd=repo)
    assert os.environ.get("PATH") == path_before
    assert set(report.notebooks) == {"01_paths.ipynb"}
    executed = repo / "book" / "01_paths.ipynb"
    roots = [repo, repo / "book", Path.home(), sys.prefix, tempfile.gettempdir()]
    assert absolute_paths_in(executed, roots) == []
    assert absolute_paths_in(executed, default_roots(repo, repo / "book")) == []
    text = _all_text(executed)
    assert "cwd: .\n" in text
    assert "data at data/runs/x.csv" in text
    assert "home file ~/.cache/thing" in text
    assert "<python>/lib/somelib/mod.py:7: UserWarning: deprecated thing" in text
    assert "profile is smoke" in text


def test_injected_cell_is_hidden_and_papermill_metadata_is_relative(repo: Path) -> None:
    reproduce(repo / "notebooks", repo / "book", "smoke", None, build=False, cwd=repo)
    notebook = nbformat.read(str(repo / "book" / "01_paths.ipynb"), as_version=4)
    meta = notebook.metadata["papermill"]
    assert meta["input_path"] == "notebooks/01_paths.ipynb"
    assert meta["output_path"] == "01_paths.ipynb"
    assert meta["parameters"] == {"profile": "smoke"}
    injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert REMOVE_TAG in injected[0].metadata["tags"]
    assert "plan_file" not in injected[0].source


def test_plan_file_is_injected_relative_to_the_kernel_directory(repo: Path,
                                                                tmp_path: Path) -> None:
    inside = repo / "plans" / "mine.yml"
    outside = tmp_path / "elsewhere" / "plan.yml"
    assert notebook_parameters("smoke", None, repo) == {"profile": "smoke"}
    assert notebook_parameters("smoke", inside, repo) == {"profile": "smoke",
                                                          "plan_file": "plans/mine.yml"}
    assert notebook_parameters("smoke", outside, repo)["plan_file"] == str(outside)
    _notebook(repo / "notebooks" / "02_plan.ipynb", "print('plan:', plan_file)")
    execute_notebooks(repo / "notebooks", repo / "book",
                      notebook_parameters("smoke", inside, repo), names=["02_plan"], cwd=repo)
    executed = repo / "book" / "02_plan.ipynb"
    assert "plan: plans/mine.yml" in _all_text(executed)
    assert absolute_paths_in(executed, default_roots(repo, repo / "book")) == []


def test_failing_notebook_names_itself_and_the_cell(repo: Path) -> None:
    _notebook(repo / "notebooks" / "03_fails.ipynb", "x = 1",
              "raise ValueError('broken on purpose')")
    path_before = os.environ.get("PATH")
    with pytest.raises(RuntimeError) as caught:
        reproduce(repo / "notebooks", repo / "book", "smoke", None, names=["03_fails.ipynb"],
                  build=False, cwd=repo)
    message = str(caught.value)
    # cells: parameters [1], injected parameters [2], x = 1 [3], the raise [4]
    assert "notebook 03_fails.ipynb failed in cell 4: ValueError: broken on purpose" in message
    partial = repo / "book" / "_build" / "failed" / "03_fails.ipynb"
    assert str(partial) in message
    assert os.environ.get("PATH") == path_before
    assert absolute_paths_in(partial, default_roots(repo, repo / "book")) == []
    assert not (repo / "book" / "03_fails.ipynb").exists()  # no half-executed copy published


def test_an_interrupted_reproduce_resumes_and_keeps_complete_copies(repo: Path) -> None:
    notebooks, book = repo / "notebooks", repo / "book"
    _notebook(notebooks / "02_second.ipynb", "x = 2")
    first = reproduce(notebooks, book, "smoke", None, build=False, cwd=repo)
    assert sorted(first.notebooks) == ["01_paths.ipynb", "02_second.ipynb"]
    copies = {name: (book / name).read_bytes() for name in first.notebooks}

    again = reproduce(notebooks, book, "smoke", None, build=False, cwd=repo)
    assert again.notebooks == {} and again.skipped == sorted(copies)  # all up to date
    assert {name: (book / name).read_bytes() for name in copies} == copies

    # An edited source is re-executed; the others are not.
    _notebook(notebooks / "02_second.ipynb", "x = 3")
    edited = reproduce(notebooks, book, "smoke", None, build=False, cwd=repo)
    assert list(edited.notebooks) == ["02_second.ipynb"]
    copies["02_second.ipynb"] = (book / "02_second.ipynb").read_bytes()

    # A failing edit leaves the earlier complete copy byte-identical.
    _notebook(notebooks / "02_second.ipynb", "raise RuntimeError('half way')")
    with pytest.raises(NotebookError):
        reproduce(notebooks, book, "smoke", None, build=False, cwd=repo)
    assert {name: (book / name).read_bytes() for name in copies} == copies
    assert reproduce(notebooks, book, "other", None, build=False, cwd=repo,
                     names=["01_paths"]).notebooks.keys() == {"01_paths.ipynb"}


def test_scrub_text_keeps_unrelated_paths_and_handles_colour_codes(tmp_path: Path) -> None:
    repo, book = tmp_path / "repo", tmp_path / "repo" / "book"
    pairs = replacement_roots(repo, book)
    replaced: set[str] = set()
    text = (f"{repo}/data/runs/a.csv and {repo} and {repo}ository and /var{repo} "
            f"\x1b[0;32m{book}/x.ipynb\x1b[0m file://{sys.prefix}/lib/y.py")
    out = scrub_text(text, pairs, replaced)
    # "<repo>ository" is another folder: only a wider root (the temporary folder) may apply
    sibling = scrub_text(f"{repo}ository", pairs)
    assert sibling.endswith("/repoository") and not sibling.startswith(("ository", "."))
    assert out == (f"data/runs/a.csv and . and {sibling} and /var{repo} "
                   "\x1b[0;32mbook/x.ipynb\x1b[0m file://<python>/lib/y.py")
    assert f"{repo}/data/runs/a.csv" in replaced


def test_scrub_notebook_reports_and_is_idempotent(tmp_path: Path) -> None:
    repo, book = tmp_path / "repo", tmp_path / "repo" / "book"
    path = book / "n.ipynb"
    cell = nbformat.v4.new_code_cell(f"open('{repo}/data/x')")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{repo}/data/x\n"),
                    nbformat.v4.new_output("error", ename="E", evalue="v",
                                           traceback=[f"File {tempfile.gettempdir()}/k.py:1"])]
    notebook = nbformat.v4.new_notebook(cells=[cell], metadata={"papermill": {
        "input_path": str(repo / "notebooks" / "n.ipynb"), "output_path": str(path)}})
    book.mkdir(parents=True)
    nbformat.write(notebook, str(path))
    replaced = scrub_notebook(path, repo, book)
    assert f"{repo}/data/x" in replaced
    assert absolute_paths_in(path, default_roots(repo, book)) == []
    result = nbformat.read(str(path), as_version=4)
    assert result.metadata.papermill.input_path == "notebooks/n.ipynb"
    assert result.metadata.papermill.output_path == "n.ipynb"
    assert result.cells[0].source == "open('data/x')"
    assert result.cells[0].outputs[1].traceback == ["File <tmp>/k.py:1"]
    assert scrub_notebook(path, repo, book) == []


def test_kernel_path_is_scoped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nowhere")
    bin_dir = str(Path(sys.executable).parent)
    assert kernel_environment()["PATH"].split(os.pathsep)[0] == bin_dir
    assert os.environ["PATH"] == "/nowhere"
    with pytest.raises(KeyError), kernel_path() as inside:
        assert inside.split(os.pathsep)[:2] == [bin_dir, "/nowhere"]
        raise KeyError("boom")
    assert os.environ["PATH"] == "/nowhere"


def test_progress_is_logged_per_notebook(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fmtc"):
        reproduce(repo / "notebooks", repo / "book", "smoke", None, build=False, cwd=repo)
    lines = [r.getMessage() for r in caplog.records if r.name == "fmtc.report.reproduce"
             and r.levelno == logging.INFO]
    assert lines[0] == "executing 01_paths.ipynb (1 of 1)"  # which one runs, before it runs
    assert len(lines) == 2 and lines[1].startswith("01_paths.ipynb done in ")


def test_a_page_is_stale_when_its_notebook_plan_or_versions_change_not_fmtcs_code(
        repo: Path, monkeypatch) -> None:
    from fmtc import versions
    from fmtc.report.reproduce import stale_pages

    notebooks, book = repo / "notebooks", repo / "book"
    parameters = notebook_parameters("smoke", None, repo)
    execute_notebooks(notebooks, book, parameters, cwd=repo)
    assert stale_pages(notebooks, book, parameters, repo) == []
    monkeypatch.setitem(versions.VERSIONS, "fit", versions.VERSIONS["fit"] + 1)
    assert stale_pages(notebooks, book, parameters, repo) == ["01_paths.ipynb"]
    monkeypatch.undo()
    assert stale_pages(notebooks, book, notebook_parameters("quick", None, repo), repo) == [
        "01_paths.ipynb"]  # another profile
    # make book executes only what is missing: the stale page is kept as executed
    monkeypatch.setitem(versions.VERSIONS, "page", versions.VERSIONS["page"] + 1)
    copy = (book / "01_paths.ipynb").read_bytes()
    assert execute_notebooks(notebooks, book, parameters, cwd=repo, missing_only=True) == {}
    assert (book / "01_paths.ipynb").read_bytes() == copy


def test_the_command_line_builds_without_importing_torch():
    # Every `fmtc` call (each page `fmtc reproduce` executes, each test that runs the command)
    # builds the whole parser first: importing torch there cost ~3 s a call.
    code = ("import sys, fmtc.cli; fmtc.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout
