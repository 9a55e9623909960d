"""A journey's steps drawn as a flowchart: inline SVG made on the server, no script.

:func:`layout` is pure: from a parsed journey (:mod:`campaigns.journeys.model`) it places
each step as a box in one column, in the file's order, and routes the flow between them:
an arrow down to the next step, and every jump (a branch's arm or ``otherwise``, a date wait
that skips the step after it) along a lane of its own to the right, labelled with its
condition. Lanes are shared by jumps whose spans do not overlap, so lines never cross a
label. An ``exit`` step ends its path; a journey that runs off its last step ends in an
"End" box; the goal is a box of its own beside the start.

:func:`render` draws a layout with each step's live counts
(:class:`campaigns.insight.flow.StepCounts`): waiting there now, sent, converted, and the
messages held now with their reasons. Each box is a link to the page of who is at the step.
Every text is escaped; a label too long for its place is cut with an ellipsis and the whole
text kept in a ``<title>`` that browsers show on hover.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from markupsafe import Markup

from campaigns.insight.flow import StepCounts
from campaigns.journeys.durations import format_duration
from campaigns.journeys.model import (
    BranchStep,
    ExitStep,
    Journey,
    Step,
    WaitUntilDateStep,
    WaitUntilStep,
)
from campaigns.web.charts import FONT, text

BOX_W = 300
BOX_H = 74
ROW = 112
"""From the top of one box to the top of the next."""
LEFT = 20
TOP = 20
LANE = 190
"""Width of one lane of jumps: room for its label."""
LABEL_COLUMNS = 26
"""Display columns of an edge label before it is cut (the full text is its tooltip)."""
END = "__end__"
"""The id of the "End" box (step ids are letters, digits and ``_``, never this)."""
GOAL = "__goal__"


@dataclass(frozen=True)
class Node:
    """One box: a step (``kind`` its type, or ``best_of email/task``), the end, or the goal."""

    id: str
    kind: str
    label: str
    x: int
    y: int
    w: int = BOX_W
    h: int = BOX_H

    @property
    def is_step(self) -> bool:
        return self.id not in (END, GOAL)


@dataclass(frozen=True)
class Edge:
    """One arrow from a box to another; ``lane`` is None for the straight arrow down to the
    next box, else the lane (0 the nearest) a jump runs along."""

    source: str
    target: str
    label: str = ""
    lane: int | None = None


@dataclass(frozen=True)
class Layout:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def kind_of(step: Step) -> str:
    """What a step is, as its box says it: its type, or the channels it picks the best of."""
    if step.best_of:
        return f"best of {'/'.join(step.best_of)}"
    return step.type.value.replace("_", " ")


def _wait_label(config: WaitUntilStep) -> str:
    signal = config.signal.replace("_", " ")
    return f"{signal} {config.target} or after {format_duration(config.timeout)}"


def _exits(journey: Journey, index: int) -> list[tuple[str, str]]:
    """(target id, label) of every way out of the step at ``index``."""
    steps = journey.steps
    step = steps[index]
    after = steps[index + 1].id if index + 1 < len(steps) else END
    config = step.config
    if isinstance(config, ExitStep):
        return [(END, f"exit: {config.reason}")]
    if isinstance(config, BranchStep):
        arms = [(arm.goto, f"if {arm.condition}") for arm in config.arms]
        return [*arms, (config.otherwise or after, "otherwise")]
    if isinstance(config, WaitUntilStep):
        return [(after, _wait_label(config))]
    if isinstance(config, WaitUntilDateStep) and config.if_past == "skip":
        beyond = steps[index + 2].id if index + 2 < len(steps) else END
        return [(after, ""), (beyond, f"{config.date} passed: skip")]
    return [(after, "")]


def layout(journey: Journey) -> Layout:
    """Place a journey's steps and route the flow between them (pure: no database)."""
    steps = journey.steps
    row_of = {step.id: i for i, step in enumerate(steps)}
    row_of[END] = len(steps)
    wanted: list[tuple[str, str, str]] = []
    for i, step in enumerate(steps):
        for target, label in _exits(journey, i):
            if (step.id, target, label) not in wanted:
                wanted.append((step.id, target, label))
    ends = any(target == END for _, target, _ in wanted)
    jumps = sorted(
        (e for e in wanted if row_of[e[1]] != row_of[e[0]] + 1),
        key=lambda e: (row_of[e[1]] - row_of[e[0]], row_of[e[0]]),
    )
    lanes: list[list[tuple[int, int]]] = []
    lane_of: dict[tuple[str, str, str], int] = {}
    for edge in jumps:  # shortest first: each on the nearest lane where it overlaps nothing
        span = (row_of[edge[0]], row_of[edge[1]])
        for number, taken in enumerate(lanes):
            if all(span[1] <= a or span[0] >= b for a, b in taken):
                taken.append(span)
                lane_of[edge] = number
                break
        else:
            lanes.append([span])
            lane_of[edge] = len(lanes) - 1
    edges = tuple(Edge(s, t, label, lane_of.get((s, t, label))) for s, t, label in wanted)
    nodes = [
        Node(step.id, kind_of(step), step.id, LEFT, TOP + i * ROW) for i, step in enumerate(steps)
    ]
    if ends:
        nodes.append(Node(END, "end", "End", LEFT, TOP + len(steps) * ROW, h=40))
    width = LEFT + BOX_W + 30 + max(len(lanes), 1) * LANE
    if journey.goal is not None:
        within = f" within {format_duration(journey.goal.within)}" if journey.goal.within else ""
        goal_x = width
        nodes.append(Node(GOAL, "goal", f"{journey.goal.event}{within}", goal_x, TOP, w=220, h=58))
        width = goal_x + 220 + LEFT
    rows = len(steps) + (1 if ends else 0)
    height = TOP + max(rows, 1) * ROW
    return Layout(tuple(nodes), edges, width, height)


# ---------------------------------------------------------------------------- drawing


def render(
    drawn: Layout,
    counts: Mapping[str, StepCounts],
    link: Callable[[str], str],
    *,
    title: str,
    converted: int | None = None,
) -> Markup:
    """The SVG of ``drawn``: each step's box with its counts (``counts`` by step id) and a
    link to ``link(step id)``; ``converted`` is the journey's total, shown in the goal box."""
    ident = "flowchart"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart flowchart" id="{ident}" '
        f'viewBox="0 0 {drawn.width} {drawn.height}" width="100%" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" font-family="{FONT}" font-size="12">',
        f'<title id="{ident}-title">{text(title)}</title>',
        f'<desc id="{ident}-desc">Each box is a step with how many are waiting there now, '
        "how many of its messages were sent, are held now (and why), and how many who "
        "passed it reached the goal. Arrows are the flow; a jump is labelled with its "
        "condition.</desc>",
        '<defs><marker id="flow-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#64748b"/></marker></defs>',
    ]
    out += [_edge(drawn, edge) for edge in drawn.edges]
    for node in drawn.nodes:
        if node.is_step:
            out.append(_step_box(node, counts.get(node.id, StepCounts()), link(node.id)))
        else:
            out.append(_other_box(node, converted))
    out.append("</svg>")
    return Markup("\n".join(out))


def _edge(drawn: Layout, edge: Edge) -> str:
    source, target = drawn.node(edge.source), drawn.node(edge.target)
    attrs = (
        f'class="edge" data-from="{text(edge.source)}" data-to="{text(edge.target)}" '
        'fill="none" stroke="#64748b" stroke-width="1.5" marker-end="url(#flow-arrow)"'
    )
    if edge.lane is None:
        x = source.x + source.w // 2
        y1, y2 = source.y + source.h, target.y
        line = f'<path d="M{x},{y1} L{x},{y2}" {attrs}/>'
        label_x, label_y = x + 8, (y1 + y2) // 2 + 4
    else:
        lane_x = source.x + source.w + 30 + edge.lane * LANE
        y1, y2 = source.y + source.h // 2, target.y + target.h // 2
        right = source.x + source.w
        line = f'<path d="M{right},{y1} L{lane_x},{y1} L{lane_x},{y2} L{right},{y2}" {attrs}/>'
        label_x, label_y = lane_x + 6, y1 + 16
    if not edge.label:
        return line
    label = (
        f'<text class="edge-label" x="{label_x}" y="{label_y}" fill="#334155">'
        f"<title>{text(edge.label)}</title>{text(edge.label, LABEL_COLUMNS)}</text>"
    )
    return f"<g>{line}{label}</g>"


def _held_line(counts: StepCounts) -> str:
    if not counts.held:
        return "nothing held"
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in counts.held_by_reason())
    return f"{counts.held:,} held: {reasons}"


def _step_box(node: Node, counts: StepCounts, href: str) -> str:
    held = _held_line(counts)
    return (
        f'<a href="{text(href)}" class="step-link">'
        f'<g class="step" data-step="{text(node.id)}" data-waiting="{counts.waiting}" '
        f'data-sent="{counts.sent}" data-converted="{counts.converted}" '
        f'data-held="{counts.held}">'
        f"<title>{text(node.kind)} {text(node.id)}: {counts.waiting:,} waiting now, "
        f"{counts.sent:,} sent, {counts.converted:,} converted; {text(held)}</title>"
        f'<rect x="{node.x}" y="{node.y}" width="{node.w}" height="{node.h}" rx="6" '
        'fill="#f8fafc" stroke="#2563eb" stroke-width="1.5"/>'
        f'<text x="{node.x + 10}" y="{node.y + 18}" fill="#64748b" class="kind">'
        f"{text(node.kind, 16)}</text>"
        f'<text x="{node.x + 110}" y="{node.y + 18}" font-weight="600" fill="#0f172a" '
        f'class="name">{text(node.label, 28)}</text>'
        f'<text x="{node.x + 10}" y="{node.y + 40}" fill="#0f172a">'
        f'<tspan class="waiting">{counts.waiting:,}</tspan> waiting · '
        f'<tspan class="sent">{counts.sent:,}</tspan> sent · '
        f'<tspan class="converted">{counts.converted:,}</tspan> converted</text>'
        f'<text x="{node.x + 10}" y="{node.y + 60}" class="held" '
        f'fill="{"#b45309" if counts.held else "#64748b"}">{text(held, 46)}</text>'
        "</g></a>"
    )


def _other_box(node: Node, converted: int | None) -> str:
    if node.id == END:
        return (
            f'<g class="end"><rect x="{node.x}" y="{node.y}" width="{node.w}" '
            f'height="{node.h}" rx="20" fill="#e2e8f0" stroke="#64748b"/>'
            f'<text x="{node.x + node.w // 2}" y="{node.y + 25}" text-anchor="middle" '
            'fill="#0f172a">End</text></g>'
        )
    reached = f"{converted:,} reached it" if converted is not None else ""
    return (
        f'<g class="goal" data-converted="{converted or 0}"><title>Goal: {text(node.label)}'
        f"</title>"
        f'<rect x="{node.x}" y="{node.y}" width="{node.w}" height="{node.h}" rx="6" '
        'fill="#ecfdf5" stroke="#059669" stroke-width="1.5"/>'
        f'<text x="{node.x + 10}" y="{node.y + 20}" fill="#065f46" font-weight="600">'
        f"Goal: {text(node.label, 26)}</text>"
        f'<text x="{node.x + 10}" y="{node.y + 42}" fill="#065f46">{reached}</text></g>'
    )
