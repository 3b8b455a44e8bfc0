"""The book's prose states no number by hand: every number in a notebook's Markdown is glued.

A number written into a Markdown cell does not change when the computation does; the book
then says one thing and shows another. This test reads every Markdown cell of the papermill
sources and fails on a number that is not inside a ``{glue:...}`` role or directive, inline
code, a link target or a citation, unless it is listed below as a constant of the paper, the
data or the method. Numbers that depend on the plan (folds, epochs, subjects) are glued from
the plan, not listed here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

#: Numbers the prose may state, each a fixed fact of the paper, the data or the method.
CONSTANTS: dict[str, str] = {
    "14.71": "the paper's reported MCC gain of the foundation model (Fan et al. 2025)",
    "2.80": "the paper's reported MCC gain of fusion",
    "56": "ds000208's patients",
    "424": "the A424 atlas's regions",
    "200": "BrainLM's input window (time points)",
    "95": "the confidence level of every interval (95%)",
    "5": "the paper's 5-fold cross-validation and the family-wise error level 5%",
    "100": "the paper's 100 epochs; percentages",
    "8": "the paper's batch size",
    "256": "BrainLM old_13M's hidden size and the ResNet-18's output",
    "512": "the fused representation (256 + 256)",
    "13": "BrainLM old_13M (13 M parameters)",
    "18": "ResNet-18",
    "2018": "Schaefer et al. 2018",
    "2025": "Fan et al. 2025",
    "400": "Schaefer-400 (the STAGES parcellation's cortical parcels)",
    "19": "the STAGES parcellation's subcortical parcels",
    "7": "Schaefer's 7 networks",
    "0": "zero: chance, no effect",
    "0.5": "a probability of one half (chance; the default threshold)",
    "1": "one (a single model, study, fold or window)",
    "2": "two (studies, drugs, modalities)",
    "3": "ordinal 'third' in an enumeration",
    "4": "ordinal 'fourth' in an enumeration",
    "6": "the 6-month follow-up of STAGES",
    "10": "BrainLM's 10 patches of 20 time points",
    "20": "BrainLM's patch length",
    "50": "ds000208's and quick's window stride",
}

_QUOTED = re.compile(
    r"\{glue(?::[a-z]+)?\}`[^`]*`"      # glue roles
    r"|```\{glue[^`]*```"                 # glue directives
    r"|`[^`]*`"                           # inline code
    r"|\]\([^)]*\)"                       # link targets
    r"|\{cite[^}]*\}`[^`]*`"              # citations
    r"|\$[^$]*\$"                         # math
    r"|<[^>]*>",                          # HTML tags
    re.DOTALL)
_ENUMERATOR = re.compile(r"^\s*(?:#+\s*)?\d+\.\s", re.MULTILINE)
_NUMBER = re.compile(r"(?<![\w.\-])(\d+(?:[.,]\d+)*)(?![\w])")


def unglued_numbers(markdown: str) -> list[str]:
    """The numbers of ``markdown`` that are neither glued nor listed constants."""
    text = _ENUMERATOR.sub(" ", _QUOTED.sub(" ", markdown))
    text = re.sub(r"\b(?:Claim|claim|page|Page|study|studies|Figure|Table)\s+\d+", " ", text)
    return [m.group(1) for m in _NUMBER.finditer(text)
            if m.group(1).rstrip(".") not in CONSTANTS]


def test_the_rule_finds_what_it_should() -> None:
    assert unglued_numbers("FC logistic reaches about 0.3 here") == ["0.3"]
    assert unglued_numbers("160 pretraining subjects, 50 epochs") == ["160"]
    assert unglued_numbers("FMM_TC reaches {glue:text}`mcc_fmmtc` (`mcc: 0.31`)") == []
    assert unglued_numbers("1. first\n2. second; the paper's 14.71 on ResNet-18") == []
    assert unglued_numbers("recall 0.78 of 58 regions") == ["0.78", "58"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_hand_written_number_in_the_prose(path: Path) -> None:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    found = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        numbers = unglued_numbers("".join(cell["source"]))
        if numbers:
            found.append(f"cell {index}: {numbers}")
    assert not found, (f"{path.name}: numbers written by hand in Markdown (glue them with "
                       f"fmtc.report.pages.glue, or list a true constant in CONSTANTS): "
                       + "; ".join(found))
