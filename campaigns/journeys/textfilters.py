"""The filters a text may use, and a check that it uses no other.

Journey texts (subjects, titles, notes) and email templates are Jinja. Beyond Jinja's own
filters they have ``date``, ``datetime``, ``number``, ``money`` and ``days``, which print in
the reader's words (:mod:`campaigns.content.filters` implements them). A filter Jinja does
not know fails only when the text is rendered, at send time, so ``campaigns validate`` and
the template store look for unknown filter names and unknown ``date``/``datetime`` formats
first. Pure: a Jinja syntax tree in, problems out.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import nodes
from jinja2.filters import FILTERS as JINJA_FILTERS

from campaigns.journeys.hints import suggest

TEXT_FILTERS = ("date", "datetime", "number", "money", "days")
"""The filters texts and templates have beyond Jinja's own."""

FORMATS = {
    "date": ("long", "full", "medium", "short"),
    "datetime": ("long", "medium", "short", "time"),
}
"""The format names of ``date(...)`` and ``datetime(...)``; the first is the default."""

KNOWN = frozenset(JINJA_FILTERS) | frozenset(TEXT_FILTERS)


@dataclass(frozen=True)
class FilterProblem:
    """A filter or format a text names that does not exist, at its line in the text."""

    line: int
    message: str
    hint: str
    needle: str


def filter_problems(tree: nodes.Template) -> list[FilterProblem]:
    """Every unknown filter and every unknown literal format of ``date``/``datetime``."""
    found: list[FilterProblem] = []
    for node in tree.find_all(nodes.Filter):
        if node.name not in KNOWN:
            hint = suggest(node.name, KNOWN) or (
                f"beyond Jinja's own filters there are {', '.join(TEXT_FILTERS)}"
                " (docs/templates.md#dates-numbers-and-money)"
            )
            message = f"unknown filter '|{node.name}'"
            found.append(FilterProblem(node.lineno, message, hint, node.name))
            continue
        formats = FORMATS.get(node.name)
        first = node.args[0] if node.args else None
        if formats and isinstance(first, nodes.Const) and first.value not in formats:
            value = str(first.value)
            hint = suggest(value, formats) or f"use one of {', '.join(formats)}"
            message = f"unknown {node.name} format '{value}'"
            found.append(FilterProblem(node.lineno, message, hint, value))
    return found
