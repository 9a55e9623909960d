"""Charts as inline SVG, drawn on the server: no script, no outside library, and a page that
works with JavaScript off and under a strict Content-Security-Policy.

Every piece of text is escaped (and stripped of characters XML does not allow), so a step
named ``<script>`` is just text; each chart has a ``<title>`` and ``<desc>`` for screen
readers, and each bar a ``<title>`` that browsers show on hover.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 760
LABEL = 170
"""Width of the column of metric names, left of the bars."""
BAR_MAX = 360
"""Width of the longest bar."""
BAR = 12
ROW = 17
HEADING = 20
GAP = 12
TOP = 30
"""Room for the legend."""
FONT = "-apple-system, 'Segoe UI', 'Hiragino Sans', 'Noto Sans JP', Meiryo, sans-serif"
MACHINE_OPACITY = "0.3"

BARS: tuple[tuple[str, str, str], ...] = (
    ("sent", "sent", "#64748b"),
    ("opened", "opened", "#2563eb"),
    ("clicked", "clicked", "#7c3aed"),
    ("answered", "answered", "#059669"),
)
"""(metric, label, colour) of the bars of each step, top to bottom."""

MACHINE = {"opened": "opened_machine", "clicked": "clicked_machine"}
"""The machine count drawn lighter beside a human bar."""

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class FunnelStep:
    """One step's counts: human opens, clicks and answers, and machine ones beside them."""

    label: str
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    answered: int = 0
    opened_machine: int = 0
    clicked_machine: int = 0

    def count(self, metric: str) -> int:
        return int(getattr(self, metric))


def text(value: str, width: int | None = None) -> str:
    """``value`` safe inside SVG/XML: escaped, without control characters, and cut to
    ``width`` display columns (East Asian wide characters count two) with an ellipsis."""
    value = _NOT_XML.sub("", value)
    if width is not None and _columns(value) > width:
        cut, used = [], 0
        for ch in value:
            used += _columns(ch)
            if used > width - 1:
                break
            cut.append(ch)
        value = "".join(cut) + "…"
    return str(escape(value))


def _columns(value: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in value)


def _percent(hits: int, n: int) -> str:
    return f" ({hits / n * 100:.1f}%)" if n else ""


def funnel(
    steps: Sequence[FunnelStep], *, title: str = "Funnel", chart_id: str = "funnel"
) -> Markup:
    """A horizontal bar chart: per step a group of bars for sent, opened, clicked and
    answered (people), with machine opens and clicks in a lighter shade after their bar.
    Every step is a ``<g class="step">``; every bar a ``<rect class="bar ...">``."""
    ident = re.sub(r"[^A-Za-z0-9_-]", "", chart_id) or "chart"
    group = HEADING + len(BARS) * ROW + GAP
    height = TOP + max(len(steps), 1) * group
    scale = max(
        [
            1,
            *(
                max(s.sent, s.opened + s.opened_machine, s.clicked + s.clicked_machine, s.answered)
                for s in steps
            ),
        ]
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{ident}" viewBox="0 0 '
        f'{WIDTH} {height}" width="100%" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'font-family="{FONT}" font-size="12">',
        f'<title id="{ident}-title">{text(title)}</title>',
        f'<desc id="{ident}-desc">People who were sent, opened, clicked and answered, per step; '
        "machine opens and clicks (image proxies, link scanners) in a lighter shade, not counted "
        "in rates.</desc>",
        _legend(),
    ]
    if not steps:
        out.append(f'<text x="0" y="{TOP + 20}" fill="#616e7c">Nothing sent yet.</text>')
    for index, step in enumerate(steps):
        out.append(_step(step, TOP + index * group, scale))
    out.append("</svg>")
    return Markup("\n".join(out))


def _legend() -> str:
    return (
        '<g class="legend">'
        '<rect x="0" y="6" width="12" height="12" fill="#2563eb"/><text x="18" y="16">people</text>'
        '<rect x="80" y="6" width="12" height="12" fill="#2563eb" '
        f'fill-opacity="{MACHINE_OPACITY}"/><text x="98" y="16">machines (not in rates)</text>'
        "</g>"
    )


def _step(step: FunnelStep, top: int, scale: int) -> str:
    name = text(step.label)
    parts = [
        f'<g class="step" data-step="{name}">',
        f'<text x="0" y="{top + 14}" '
        f'font-weight="bold">{text(step.label, 48)}<title>{name}</title></text>',
    ]
    for row, (metric, label, colour) in enumerate(BARS):
        y = top + HEADING + row * ROW
        value = step.count(metric)
        width = _width(value, scale)
        share = "" if metric == "sent" else _percent(value, step.sent)
        parts.append(
            f'<text x="{LABEL - 8}" y="{y + BAR - 1}" text-anchor="end" '
            f'fill="#52606d">{label}</text>'
        )
        parts.append(
            f'<rect class="bar human {metric}" x="{LABEL}" y="{y}" width="{width}" '
            f'height="{BAR}" fill="{colour}"><title>{name}: {label} {value:,}{share}</title></rect>'
        )
        end = LABEL + width
        caption = f"{value:,}{share}"
        machine_metric = MACHINE.get(metric)
        if machine_metric:
            machine = step.count(machine_metric)
            extra = _width(machine, scale)
            parts.append(
                f'<rect class="bar machine {metric}" x="{end}" y="{y}" width="{extra}" '
                f'height="{BAR}" fill="{colour}" fill-opacity="{MACHINE_OPACITY}">'
                f"<title>{name}: {label} by machines {machine:,} (not counted in "
                "rates)</title></rect>"
            )
            end += extra
            if machine:
                caption += f' <tspan fill="#9aa5b1">+ {machine:,} machine</tspan>'
        parts.append(f'<text x="{end + 6}" y="{y + BAR - 1}" fill="#1f2933">{caption}</text>')
    parts.append("</g>")
    return "".join(parts)


def _width(value: int, scale: int) -> float:
    """Bar length: proportional, and at least a sliver for any count above zero."""
    if value <= 0:
        return 0
    return round(max(value / scale * BAR_MAX, 1.5), 1)


# ---------------------------------------------------------------------------- lines over time

PALETTE = ("#2563eb", "#059669", "#d97706", "#7c3aed", "#dc2626", "#0891b2", "#4b5563", "#db2777")
"""Colours of the lines, in order."""

PLOT_LEFT = 48
PLOT_TOP = 34
PLOT_HEIGHT = 200
PLOT_BOTTOM = 40
"""Room under the plot for the period labels."""


@dataclass(frozen=True)
class Series:
    """One line: a value (or None: no data) per x position."""

    label: str
    values: tuple[float | None, ...]


def lines(
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    description: str,
    low: float,
    high: float,
    unit: str = "",
    chart_id: str = "lines",
    zero: bool = False,
) -> Markup:
    """A line chart of ``series`` over ``x_labels`` (evenly spaced), the y axis from ``low``
    to ``high``; each line a ``<g class="series">`` with a ``<polyline>`` and a dot per point
    (whose ``<title>`` gives the value); a gap where a value is None. ``zero`` draws the
    zero line (NPS)."""
    ident = re.sub(r"[^A-Za-z0-9_-]", "", chart_id) or "chart"
    legend_rows = -(-len(series) // 4) if series else 0
    top = PLOT_TOP + max(legend_rows - 1, 0) * 18
    height = top + PLOT_HEIGHT + PLOT_BOTTOM
    width = WIDTH - PLOT_LEFT - 20
    span = (high - low) or 1.0
    count = len(x_labels)

    def x(i: int) -> float:
        return round(PLOT_LEFT + (width * (i + 0.5) / count if count else 0), 1)

    def y(value: float) -> float:
        return round(top + PLOT_HEIGHT * (1 - (min(max(value, low), high) - low) / span), 1)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{ident}" viewBox="0 0 '
        f'{WIDTH} {height}" width="100%" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'font-family="{FONT}" font-size="12">',
        f'<title id="{ident}-title">{text(title)}</title>',
        f'<desc id="{ident}-desc">{text(description)}</desc>',
    ]
    for index, item in enumerate(series):
        lx, ly = (index % 4) * 180, 6 + (index // 4) * 18
        out.append(
            f'<rect x="{lx}" y="{ly}" width="12" height="12" '
            f'fill="{PALETTE[index % len(PALETTE)]}"/><text x="{lx + 18}" '
            f'y="{ly + 10}">{text(item.label, 24)}</text>'
        )
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        level = low + span * fraction
        gy = y(level)
        out.append(
            f'<line x1="{PLOT_LEFT}" x2="{PLOT_LEFT + width}" y1="{gy}" y2="{gy}" '
            'stroke="#e4e7eb"/>'
        )
        out.append(
            f'<text x="{PLOT_LEFT - 6}" y="{gy + 4}" text-anchor="end" '
            f'fill="#616e7c">{level:g}{text(unit)}</text>'
        )
    if zero and low < 0 < high:
        out.append(
            f'<line class="zero" x1="{PLOT_LEFT}" x2="{PLOT_LEFT + width}" y1="{y(0)}" '
            f'y2="{y(0)}" stroke="#9aa5b1" stroke-dasharray="4 3"/>'
        )
    step = max(1, -(-count // 12))  # at most about 12 labels
    for i, label in enumerate(x_labels):
        if i % step == 0:
            out.append(
                f'<text x="{x(i)}" y="{top + PLOT_HEIGHT + 16}" text-anchor="middle" '
                f'fill="#616e7c">{text(label, 12)}</text>'
            )
    if not count or not series:
        out.append(
            f'<text x="{PLOT_LEFT + 10}" y="{top + PLOT_HEIGHT / 2}" fill="#616e7c">No data '
            "yet.</text>"
        )
    for index, item in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        parts = [f'<g class="series" data-series="{text(item.label)}">']
        run: list[str] = []
        for i, value in enumerate(item.values[:count]):
            if value is None:
                if len(run) > 1:
                    parts.append(
                        f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                        f'points="{" ".join(run)}"/>'
                    )
                run = []
                continue
            run.append(f"{x(i)},{y(value)}")
            parts.append(
                f'<circle class="point" cx="{x(i)}" cy="{y(value)}" r="3" '
                f'fill="{colour}"><title>{text(item.label)} {text(x_labels[i])}: '
                f"{value:.1f}{text(unit)}</title></circle>"
            )
        if len(run) > 1:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                f'points="{" ".join(run)}"/>'
            )
        parts.append("</g>")
        out.append("".join(parts))
    out.append("</svg>")
    return Markup("\n".join(out))
