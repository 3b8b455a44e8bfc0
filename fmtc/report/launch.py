"""Where the book says the code lives: one repository URL, written everywhere it is needed.

The repository URL is one setting, ``[project.urls] Repository`` in ``pyproject.toml``
(the installed package's metadata when there is no source tree). From it, :func:`sync`
writes

- the Jupyter Book config: repository and issues buttons, Binder and Colab launch
  buttons, and the ``repository_url`` MyST substitution the narrative pages use;
- the README's launch badges (between ``<!-- fmtc:badges -->`` markers);
- the first cell of every notebook source: on Colab (``"google.colab" in sys.modules``) it
  installs fmtc from that repository; elsewhere it does nothing. The book removes it.

``fmtc book-settings`` runs :func:`sync`; ``--check`` reports drift without writing (the
test suite checks that the tracked files are in sync).
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from fmtc.report.findings import FIGURE_PATH, FINDINGS_START, figure_png, synced_findings
from fmtc.storage import atomic_open

#: Tags of the install cell: found by the second, removed from the book by the first.
INSTALL_TAGS = ["remove-cell", "colab-install"]
BADGE_START, BADGE_END = "<!-- fmtc:badges -->", "<!-- /fmtc:badges -->"
BINDER = "https://mybinder.org"
COLAB = "https://colab.research.google.com"
#: The page the README's launch badges open.
LANDING_NOTEBOOK = "01_cohort_and_fc_baseline.ipynb"


class SettingsError(ValueError):
    """The repository setting is missing or is not a GitHub URL."""


def repository_url(root: Path | None = None) -> str:
    """The project's repository URL (``[project.urls] Repository``), without a trailing slash.

    Parameters
    ----------
    root : Path, optional
        A source tree whose ``pyproject.toml`` is read; default: the installed package's
        metadata.
    """
    url = None
    if root is not None and (Path(root) / "pyproject.toml").is_file():
        project = tomllib.loads((Path(root) / "pyproject.toml").read_text(encoding="utf-8"))
        url = project.get("project", {}).get("urls", {}).get("Repository")
    else:
        for entry in metadata.metadata("fmtc").get_all("Project-URL") or []:
            label, _, value = entry.partition(",")
            if label.strip().lower() == "repository":
                url = value.strip()
    if not url:
        raise SettingsError("no repository URL: set [project.urls] Repository in "
                            "pyproject.toml (e.g. https://github.com/OWNER/fmtc)")
    return url.rstrip("/").removesuffix(".git")


def github_parts(url: str) -> tuple[str, str]:
    """``(owner, name)`` of a ``https://github.com/OWNER/NAME`` URL."""
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", url)
    if match is None:
        raise SettingsError(f"the repository URL {url!r} is not https://github.com/OWNER/NAME; "
                            "Binder and Colab launch only from GitHub")
    return match.group(1), match.group(2)


def install_requirement(url: str, ref: str | None = None,
                        extras: tuple[str, ...] | list[str] = ()) -> str:
    """The pip requirement that installs fmtc from ``url`` (a git URL or repository page)."""
    source = url if url.startswith("git+") else f"git+{url}.git"
    name = f"fmtc[{','.join(extras)}]" if extras else "fmtc"
    return f"{name} @ {source}" + (f"@{ref}" if ref else "")


#: Notebook-metadata key listing the extras a page needs on Colab (e.g. ``["data"]`` for a
#: page that fetches its cohort with DataLad).
EXTRAS_KEY = "fmtc_install_extras"


def install_cell_source(url: str, extras: tuple[str, ...] | list[str] = ()) -> str:
    """The source of every notebook's first cell: install fmtc when running on Colab."""
    return (
        "# On Google Colab, install fmtc first (about 3 minutes); elsewhere this cell does\n"
        "# nothing: the environment of `make book`, Binder or `pip install fmtc` has it.\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",\n'
        f'                    "{install_requirement(url, extras=extras)}"], check=True)'
    )


def _install_cell(url: str, extras: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None,
            "metadata": {"tags": list(INSTALL_TAGS)}, "outputs": [],
            "source": install_cell_source(url, extras).splitlines(keepends=True)}


def synced_notebook(notebook: dict[str, Any], url: str) -> dict[str, Any]:
    """``notebook`` with the install cell first (replacing an earlier install cell)."""
    cells = [c for c in notebook["cells"]
             if "colab-install" not in c.get("metadata", {}).get("tags", [])]
    installed = _install_cell(url, notebook.get("metadata", {}).get(EXTRAS_KEY, []))
    previous = [c for c in notebook["cells"]
                if "colab-install" in c.get("metadata", {}).get("tags", [])]
    if previous and previous[0].get("id"):
        installed["id"] = previous[0]["id"]
    elif notebook.get("nbformat", 4) >= 4 and notebook.get("nbformat_minor", 0) >= 5:
        installed["id"] = "colab-install"
    if previous and previous[0].get("outputs"):  # an executed copy keeps its (empty) run
        installed["outputs"] = previous[0]["outputs"]
        installed["execution_count"] = previous[0].get("execution_count")
        installed["metadata"] = {**previous[0]["metadata"], "tags": list(INSTALL_TAGS)}
    return {**notebook, "cells": [installed, *cells]}


def synced_book_config(config: dict[str, Any], url: str, path_to_book: str = "book",
                       branch: str = "main") -> dict[str, Any]:
    """The Jupyter Book 1 config with the repository, issues and launch buttons set."""
    github_parts(url)
    config = json.loads(json.dumps(config))  # a deep copy of plain YAML data
    config["repository"] = {"url": url, "path_to_book": path_to_book, "branch": branch}
    html = config.setdefault("html", {})
    html["use_repository_button"] = True
    html["use_issues_button"] = True
    config["launch_buttons"] = {"notebook_interface": "classic", "binderhub_url": BINDER,
                                "colab_url": COLAB}
    parse = config.setdefault("parse", {})
    extensions = parse.setdefault("myst_enable_extensions", [])
    if "substitution" not in extensions:
        extensions.append("substitution")
    parse.setdefault("myst_substitutions", {})["repository_url"] = url
    return config


def badges(url: str, path_to_book: str = "book", branch: str = "main") -> str:
    """The README's badges: the hosted book (GitHub Pages), Binder, Colab and the repository."""
    owner, name = github_parts(url)
    notebook = f"{path_to_book}/{LANDING_NOTEBOOK}"
    binder = f"{BINDER}/v2/gh/{owner}/{name}/{branch}?urlpath=tree/{notebook}"
    colab = f"{COLAB}/github/{owner}/{name}/blob/{branch}/{notebook}"
    label = f"{owner}/{name}".replace("-", "--").replace("_", "__").replace("/", "%2F")
    pages = f"https://{owner.lower()}.github.io/{name}/"  # .github/workflows/book.yml
    return (f"[![Book](https://img.shields.io/badge/book-read%20online-brightgreen)]({pages}) "
            f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder}) "
            f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab}) [![Repository](https://img.shields.io/badge/code-{label}-blue)]"
            f"({url})")


QUICKSTART_START, QUICKSTART_END = "<!-- fmtc:quickstart -->", "<!-- /fmtc:quickstart -->"


def quickstart(url: str, branch: str = "main") -> str:
    """The README's one-minute start: install fmtc, then papermill the book's first page."""
    owner, name = github_parts(url)
    page = f"https://raw.githubusercontent.com/{owner}/{name}/{branch}/book/{LANDING_NOTEBOOK}"
    return ("```bash\n"
            f'pip install "{install_requirement(url, extras=["book"])}"\n'
            f"papermill {page} \\\n    01.ipynb -p profile smoke\n"
            "```")


def synced_readme(text: str, url: str) -> str:
    """``text`` with the blocks between the badge (and quickstart) markers rewritten."""
    block = f"{BADGE_START}\n{badges(url)}\n{BADGE_END}"
    pattern = re.compile(re.escape(BADGE_START) + r".*?" + re.escape(BADGE_END), re.S)
    if pattern.search(text) is None:
        raise SettingsError(f"the README has no {BADGE_START} ... {BADGE_END} block; add one "
                            "under its title")
    text = pattern.sub(lambda _: block, text, count=1)
    start = f"{QUICKSTART_START}\n{quickstart(url)}\n{QUICKSTART_END}"
    pattern = re.compile(re.escape(QUICKSTART_START) + r".*?" + re.escape(QUICKSTART_END), re.S)
    return pattern.sub(lambda _: start, text, count=1)


CONFIG_HEADER = (
    "# Jupyter Book 1 configuration. The notebooks are executed beforehand by\n"
    "# `fmtc reproduce` (papermill); the book only renders their stored outputs.\n"
    "# `repository`, `launch_buttons`, the html buttons and the `repository_url` substitution\n"
    "# are written by `fmtc book-settings` from [project.urls] Repository in pyproject.toml.\n")


def _dump_yaml(config: dict[str, Any]) -> str:
    return CONFIG_HEADER + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True,
                                                 width=100)


def sync(root: Path, check: bool = False) -> list[Path]:
    """Write the repository setting into the book config, the README and every notebook.

    The README's findings block (between :data:`~fmtc.report.findings.FINDINGS_START` and
    ``FINDINGS_END``, when it has one) is rewritten from the executed book too.

    Parameters
    ----------
    root : Path
        The source tree (``pyproject.toml``, ``README.md``, ``book/``, ``notebooks/``).
    check : bool
        Only report which files differ; write nothing.

    Returns
    -------
    list of Path
        The files that were (or, with ``check``, would be) changed.
    """
    root = Path(root)
    url = repository_url(root)
    changed: list[Path] = []

    def update(path: Path, new: str) -> None:
        if path.read_text(encoding="utf-8") != new:
            changed.append(path)
            if not check:
                with atomic_open(path) as handle:
                    handle.write(new)

    config_path = root / "book" / "_config.yml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    update(config_path, _dump_yaml(synced_book_config(config, url)))
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    update(readme, synced_findings(synced_readme(text, url), root / "book"))
    if FINDINGS_START in text:  # the README's figure, from the executed claims page
        figure = root / FIGURE_PATH
        png = figure_png(root / "book")
        if not figure.is_file() or figure.read_bytes() != png:
            changed.append(figure)
            if not check:
                with atomic_open(figure, "wb") as handle:
                    handle.write(png)
    # The sources only: the executed copies in the book take the cell from them.
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        update(path, json.dumps(synced_notebook(notebook, url), sort_keys=True, indent=1,
                                ensure_ascii=False) + "\n")
    return changed
