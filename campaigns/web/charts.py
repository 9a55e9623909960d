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


# ---------------------------------------------------------------------------- health

BAND_COLOURS = {"red": "#dc2626", "yellow": "#d97706", "green": "#059669", "none": "#9aa5b1"}
BAND_NAMES = {"red": "red", "yellow": "yellow", "green": "green", "none": "not scored"}


@dataclass(frozen=True)
class Layer:
    """One measure's contribution (points of the score) per day, stacked under the score."""

    label: str
    values: tuple[float | None, ...]


def _svg_open(ident: str, height: int, title: str, description: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{ident}" viewBox="0 0 '
        f'{WIDTH} {height}" width="100%" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'font-family="{FONT}" font-size="12">',
        f'<title id="{ident}-title">{text(title)}</title>',
        f'<desc id="{ident}-desc">{text(description)}</desc>',
    ]


def health_trend(
    days: Sequence[str],
    scores: Sequence[float | None],
    layers: Sequence[Layer],
    thresholds: Sequence[tuple[str, float]],
    *,
    title: str = "Health over time",
    chart_id: str = "health-trend",
) -> Markup:
    """The health score per day (0-100) as a line over each measure's contribution as stacked
    areas, with the bands' thresholds as dashed lines labelled at the right, and a legend.
    The score line is ``<g class="score">`` with a dot per day (its ``<title>`` gives the
    score); each area a ``<path class="layer">``; each threshold a ``<line class="threshold">``;
    the latest score is written beside the line's end."""
    ident = re.sub(r"[^A-Za-z0-9_-]", "", chart_id) or "chart"
    entries = [("score", "#1f2933")] + [
        (layer.label, PALETTE[i % len(PALETTE)]) for i, layer in enumerate(layers)
    ]
    legend_rows = -(-len(entries) // 4)
    top = PLOT_TOP + (legend_rows - 1) * 18
    height = top + PLOT_HEIGHT + PLOT_BOTTOM
    width = WIDTH - PLOT_LEFT - 70  # room at the right for the thresholds' and the score's labels
    count = len(days)
    latest = next((s for s in reversed(scores) if s is not None), None)
    description = (
        f"Health score per day over {count} days"
        + (f", {latest:.0f} on the latest day" if latest is not None else "")
        + "; the coloured areas are each measure's contribution to the score; dashed lines are "
        "where the bands start ("
        + ", ".join(f"{BAND_NAMES.get(b, b)} from {v:g}" for b, v in thresholds)
        + ")."
    )
    out = _svg_open(ident, height, title, description)

    def x(i: int) -> float:
        return round(PLOT_LEFT + (width * (i + 0.5) / count if count else 0), 1)

    def y(value: float) -> float:
        return round(top + PLOT_HEIGHT * (1 - min(max(value, 0.0), 100.0) / 100.0), 1)

    out.append('<g class="legend">')
    for index, (label, colour) in enumerate(entries):
        lx, ly = (index % 4) * 180, 6 + (index // 4) * 18
        shape = (
            f'<line x1="{lx}" x2="{lx + 12}" y1="{ly + 6}" y2="{ly + 6}" stroke="{colour}" '
            'stroke-width="3"/>'
            if index == 0
            else f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}" '
            'fill-opacity="0.55"/>'
        )
        out.append(f'{shape}<text x="{lx + 18}" y="{ly + 10}">{text(label, 24)}</text>')
    out.append("</g>")
    for level in (0, 25, 50, 75, 100):
        gy = y(level)
        out.append(
            f'<line x1="{PLOT_LEFT}" x2="{PLOT_LEFT + width}" y1="{gy}" y2="{gy}" '
            'stroke="#e4e7eb"/>'
            f'<text x="{PLOT_LEFT - 6}" y="{gy + 4}" text-anchor="end" '
            f'fill="#616e7c">{level}</text>'
        )
    if not count:
        out.append(
            f'<text x="{PLOT_LEFT + 10}" y="{top + PLOT_HEIGHT / 2}" fill="#616e7c">No health '
            "scores yet.</text></svg>"
        )
        return Markup("\n".join(out))
    base = [0.0] * count
    for index, layer in enumerate(layers):
        colour = PALETTE[index % len(PALETTE)]
        upper = [base[i] + max(layer.values[i] or 0.0, 0.0) for i in range(count)]
        if any(upper[i] > base[i] for i in range(count)):
            forward = " ".join(f"{x(i)},{y(upper[i])}" for i in range(count))
            back = " ".join(f"{x(i)},{y(base[i])}" for i in reversed(range(count)))
            out.append(
                f'<path class="layer" data-measure="{text(layer.label)}" d="M{forward} L{back} Z" '
                f'fill="{colour}" fill-opacity="0.55" stroke="none"><title>{text(layer.label)}: '
                f"{layer.values[-1] or 0:.1f} points on the latest day</title></path>"
            )
        base = upper
    for band, value in thresholds:
        ty = y(value)
        colour = BAND_COLOURS.get(band, "#616e7c")
        out.append(
            f'<line class="threshold" data-band="{text(band)}" x1="{PLOT_LEFT}" '
            f'x2="{PLOT_LEFT + width}" y1="{ty}" y2="{ty}" stroke="{colour}" '
            f'stroke-dasharray="5 4"/><text x="{PLOT_LEFT + width + 4}" y="{ty + 4}" '
            f'fill="{colour}">{text(BAND_NAMES.get(band, band))} {value:g}</text>'
        )
    step = max(1, -(-count // 10))
    for i, label in enumerate(days):
        if i % step == 0:
            out.append(
                f'<text x="{x(i)}" y="{top + PLOT_HEIGHT + 16}" text-anchor="middle" '
                f'fill="#616e7c">{text(label[5:] if len(label) == 10 else label, 12)}</text>'
            )
    parts = ['<g class="score">']
    run: list[str] = []
    for i, score in enumerate(scores[:count]):
        if score is None:
            if len(run) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="#1f2933" stroke-width="2.5" '
                    f'points="{" ".join(run)}"/>'
                )
            run = []
            continue
        run.append(f"{x(i)},{y(score)}")
        parts.append(
            f'<circle class="point" cx="{x(i)}" cy="{y(score)}" r="2.5" fill="#1f2933">'
            f"<title>{text(days[i])}: score {score:.1f}</title></circle>"
        )
    if len(run) > 1:
        parts.append(
            f'<polyline fill="none" stroke="#1f2933" stroke-width="2.5" points="{" ".join(run)}"/>'
        )
    parts.append("</g>")
    out.append("".join(parts))
    if latest is not None:
        last = max(i for i, s in enumerate(scores[:count]) if s is not None)
        out.append(
            f'<text class="latest" x="{x(last) + 6}" y="{y(latest) - 6}" font-weight="bold" '
            f'fill="#1f2933">{latest:.0f}</text>'
        )
    out.append("</svg>")
    return Markup("\n".join(out))


def band_bars(
    by_group: Sequence[tuple[str, dict[str, int]]],
    *,
    title: str = "Health bands per tier",
    chart_id: str = "bands-by-tier",
) -> Markup:
    """One horizontal bar per group (tier), split into its accounts per band, red first;
    each part a ``<rect class="part {band}">`` with its count written inside or beside it,
    and the group's total at the end."""
    ident = re.sub(r"[^A-Za-z0-9_-]", "", chart_id) or "chart"
    bands = ("red", "yellow", "green", "none")
    row = 28
    height = TOP + max(len(by_group), 1) * row + 10
    scale = max([1, *(sum(counts.values()) for _, counts in by_group)])
    total_accounts = sum(sum(c.values()) for _, c in by_group)
    description = (
        f"Accounts per tier split by health band, {total_accounts:,} accounts in all: "
        + (
            "; ".join(
                f"{group or 'no tier'}: "
                + ", ".join(f"{counts.get(b, 0):,} {BAND_NAMES[b]}" for b in bands if counts.get(b))
                for group, counts in by_group
            )
            or "none"
        )
    )
    out = _svg_open(ident, height, title, description)
    out.append('<g class="legend">')
    for index, band in enumerate(bands):
        lx = index * 110
        out.append(
            f'<rect x="{lx}" y="6" width="12" height="12" fill="{BAND_COLOURS[band]}"/>'
            f'<text x="{lx + 18}" y="16">{BAND_NAMES[band]}</text>'
        )
    out.append("</g>")
    if not by_group:
        out.append(f'<text x="0" y="{TOP + 16}" fill="#616e7c">No accounts yet.</text>')
    for index, (group, counts) in enumerate(by_group):
        y = TOP + index * row
        name = text(group or "no tier")
        parts = [
            f'<g class="group" data-group="{name}">',
            f'<text x="{LABEL - 8}" y="{y + 15}" text-anchor="end">{text(group or "no tier", 26)}'
            "</text>",
        ]
        left = float(LABEL)
        for band in bands:
            n = counts.get(band, 0)
            if not n:
                continue
            w = max(n / scale * (BAR_MAX + 120), 2.0)
            parts.append(
                f'<rect class="part {band}" x="{left:.1f}" y="{y}" width="{w:.1f}" height="20" '
                f'fill="{BAND_COLOURS[band]}"><title>{name}: {n:,} {BAND_NAMES[band]}'
                "</title></rect>"
            )
            if w >= 8 * len(f"{n:,}") + 6:
                parts.append(
                    f'<text x="{left + w / 2:.1f}" y="{y + 14}" text-anchor="middle" '
                    f'fill="#fff">{n:,}</text>'
                )
            left += w
        parts.append(
            f'<text class="total" x="{left + 6:.1f}" y="{y + 15}" fill="#1f2933">'
            f"{sum(counts.values()):,}</text></g>"
        )
        out.append("".join(parts))
    out.append("</svg>")
    return Markup("\n".join(out))


def band_moves(
    moves: dict[tuple[str, str], int],
    *,
    since: str,
    title: str = "Movement between bands this month",
    chart_id: str = "band-moves",
) -> Markup:
    """A 3x3 matrix: rows the band on ``since`` (the month's first scored day), columns the
    band now; each cell a ``<rect class="cell" data-from data-to>`` shaded by its share of the
    accounts, with its count written in it. The diagonal is the accounts that stayed."""
    ident = re.sub(r"[^A-Za-z0-9_-]", "", chart_id) or "chart"
    bands = ("red", "yellow", "green")
    cell, left, top = 90, 150, 50
    height = top + 3 * cell + 20
    total = sum(moves.values())
    worse = sum(n for (a, b), n in moves.items() if bands.index(b) < bands.index(a))
    better = sum(n for (a, b), n in moves.items() if bands.index(b) > bands.index(a))
    description = (
        f"Accounts by their band on {since} (rows) and now (columns): {total:,} accounts, "
        f"{better:,} moved up, {worse:,} moved down, {total - better - worse:,} stayed. "
        + "; ".join(f"{a} to {b}: {n:,}" for (a, b), n in sorted(moves.items()) if n)
    )
    out = _svg_open(ident, height, title, description)
    out.append(
        f'<text x="{left + 1.5 * cell}" y="16" text-anchor="middle" fill="#616e7c">now</text>'
        f'<text x="10" y="{top + 1.5 * cell}" fill="#616e7c">on {text(since)}</text>'
    )
    for j, band in enumerate(bands):
        out.append(
            f'<text x="{left + j * cell + cell / 2}" y="{top - 10}" text-anchor="middle" '
            f'fill="{BAND_COLOURS[band]}" font-weight="bold">{band}</text>'
            f'<text x="{left - 8}" y="{top + j * cell + cell / 2 + 4}" text-anchor="end" '
            f'fill="{BAND_COLOURS[band]}" font-weight="bold">{band}</text>'
        )
    biggest = max([1, *moves.values()])
    for i, then in enumerate(bands):
        for j, now in enumerate(bands):
            n = moves.get((then, now), 0)
            colour = "#9aa5b1" if i == j else BAND_COLOURS[now]
            opacity = 0.08 + 0.72 * (n / biggest) if n else 0.04
            x, y = left + j * cell, top + i * cell
            out.append(
                f'<rect class="cell" data-from="{then}" data-to="{now}" x="{x}" y="{y}" '
                f'width="{cell - 4}" height="{cell - 4}" fill="{colour}" '
                f'fill-opacity="{opacity:.2f}"><title>{then} to {now}: {n:,} accounts</title>'
                "</rect>"
                f'<text x="{x + (cell - 4) / 2}" y="{y + (cell - 4) / 2 + 5}" text-anchor="middle" '
                f'font-size="15" fill="#1f2933">{n:,}</text>'
            )
    out.append("</svg>")
    return Markup("\n".join(out))
