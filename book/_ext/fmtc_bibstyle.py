"""Author-year bibliography labels that match the book's author-year citations.

The book cites author-year (``Fan et al. [2025]``, ``[Tétreault et al., 2016]``), but
sphinxcontrib-bibtex labels the bibliography with pybtex's ``alpha`` style by default
(``[F+25]``), so a citation and the entry it points to did not read alike. This extension
registers

- a pybtex label style and formatting style, ``fmtc_author_year``: each entry is labelled
  exactly as a parenthetical citation reads (``Fan et al., 2025``), entries are sorted by
  author, year and title, and an author list that ends in BibTeX's ``and others`` is
  printed with "et al.";
- a sphinxcontrib-bibtex referencing style, ``fmtc_author_year``: sphinxcontrib-bibtex's
  ``author_year`` style, except that a trailing ``and others`` also reads "et al." in
  citations (``Fan et al.``, not ``Fan and others``).

Both are selected in ``_config.yml`` (``sphinx: config: bibtex_default_style`` and
``bibtex_reference_style``). Nothing here reads the network or the project's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.template import (
    FieldIsMissing,
    field,
    first_of,
    join,
    node,
    optional,
    sentence,
    tag,
)
from sphinxcontrib.bibtex.plugin import register_plugin
from sphinxcontrib.bibtex.style.referencing import PersonStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.template import join as bibtex_join

STYLE = "fmtc_author_year"
ET_AL = "et al."


def _split_others(persons: list[Any]) -> tuple[list[Any], bool]:
    """The named persons, and whether the list ended in BibTeX's ``and others``."""
    if len(persons) > 1 and str(persons[-1]) == "others":
        return list(persons[:-1]), True
    return list(persons), False


def _surname(person: Any) -> str:
    """A person's surname as citations print it (von part included, LaTeX decoded)."""
    last = pybtex.plugin.find_plugin("pybtex.style.names", "last")()
    return last.format(person, True).format().render_as("text")


def citation_authors(entry: Any) -> str:
    """The author part of a parenthetical citation: ``A``, ``A and B`` or ``A et al.``."""
    role = "author" if entry.persons.get("author") else "editor"
    named, others = _split_others(entry.persons.get(role, []))
    if not named:
        return str(entry.fields.get("title", entry.key))
    if others or len(named) > 2:
        return f"{_surname(named[0])} {ET_AL}"
    return " and ".join(_surname(p) for p in named)


class AuthorYearLabelStyle(BaseLabelStyle):
    """``Surname, 2025``, ``A and B, 2025`` or ``A et al., 2025``.

    Two entries that would share a label get ``2025a``, ``2025b`` (labels must be unique);
    their citations do not carry the letter, so give such entries distinguishable authors.
    """

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [f"{citation_authors(e)}, {e.fields.get('year', 'n.d.')}" for e in entries]
        counts = {label: labels.count(label) for label in labels}
        seen: dict[str, int] = {}
        for label in labels:
            if counts[label] > 1:
                seen[label] = seen.get(label, 0) + 1
                yield f"{label}{'abcdefghijklmnopqrstuvwxyz'[seen[label] - 1]}"
            else:
                yield label


@node
def _names_et_al(children, context, role, **kwargs):
    """pybtex's ``names`` node, printing a trailing ``and others`` as "et al."."""
    if children:
        raise ValueError(children)
    try:
        persons = context["entry"].persons[role]
    except KeyError:
        raise FieldIsMissing(role, context["entry"]) from None
    style = context["style"]
    named, others = _split_others(persons)
    formatted = [style.format_name(person, style.abbreviate_names) for person in named]
    if not others:
        return join(**kwargs)[formatted].format_data(context)
    # "A et al.", "A, B, et al.": the list is open-ended, so no "and" before its last name.
    text = join(sep=kwargs.get("sep", ", "))[formatted].format_data(context)
    return Text(text, ", " if len(named) > 1 else " ", ET_AL)


class AuthorYearStyle(UnsrtStyle):
    """pybtex's ``unsrt`` entries, labelled and sorted author-year."""

    default_label_style = AuthorYearLabelStyle
    default_sorting_style = "author_year_title"

    def format_names(self, role, as_sentence=True):
        formatted = _names_et_al(role, sep=", ", sep2=" and ", last_sep=", and ")
        return sentence[formatted] if as_sentence else formatted


@node
def _reference_names(children, data, role, sep="", sep2=None, last_sep=None, other=None,
                     full=False):
    """sphinxcontrib-bibtex's ``names`` node, reading a trailing ``and others`` as "et al."."""
    assert not children
    try:
        persons = data["entry"].persons[role]
    except KeyError:
        raise FieldIsMissing(role, data["entry"]) from None
    person = data["style"].person
    named, others = _split_others(persons)
    formatted = [person.style_plugin.format(p, person.abbreviate) for p in named]
    if not others:
        return bibtex_join(sep=sep, sep2=sep2, last_sep=last_sep,
                           other=None if full else other)[formatted].format_data(data)
    shown = formatted if full else formatted[:1]
    text = bibtex_join(sep=sep)[shown].format_data(data)
    suffix = other if other is not None else Text(" ", ET_AL)
    return Text(text, "," if len(shown) > 1 else "", suffix)


@dataclass
class EtAlPersonStyle(PersonStyle):
    """sphinxcontrib-bibtex's person style with "et al." for a trailing ``and others``."""

    def names(self, role: str, full: bool):
        return _reference_names(role=role, sep=self.sep, sep2=self.sep2,
                                last_sep=self.last_sep, other=self.other, full=full)

    def author_or_editor_or_title(self, full: bool):
        return first_of[
            optional[self.names("author", full)],
            optional[self.names("editor", full)],
            tag("em")[field("title")],
        ]


@dataclass
class AuthorYearEtAlReferenceStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's ``author_year`` referencing style with :class:`EtAlPersonStyle`."""

    person: PersonStyle = dataclass_field(default_factory=EtAlPersonStyle)


def setup(app):
    pybtex.plugin.register_plugin("pybtex.style.labels", STYLE, AuthorYearLabelStyle,
                                  force=True)
    pybtex.plugin.register_plugin("pybtex.style.formatting", STYLE, AuthorYearStyle,
                                  force=True)
    register_plugin("sphinxcontrib.bibtex.style.referencing", STYLE,
                    AuthorYearEtAlReferenceStyle, force=True)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
