"""A workflow's graph drawn as SVG: a layered, top-down layout with no external resources.

The boxes and arrows are those of :class:`~orchestrate.cli.yaml_commands.FlowGraph`
(what the Mermaid and DOT renderers print). The layout is the classic layered one:

1. the edges that close a cycle (a loop's way back, a jump to an earlier step) are set
   aside, found by a depth-first walk from the start;
2. every node goes on the layer of its longest path from the start over the others, so
   an arrow always points down;
3. a few sweeps order each layer by the mean position of its neighbours in the layer
   above, then below (the barycentre heuristic), which removes most crossings;
4. each layer is centred; arrows are Bézier curves from a box's bottom to the next one's
   top, and the set-aside edges run back up along the right-hand side, dashed.

Text is escaped, long labels wrap over several lines, and the file carries its own
styles and arrowhead: it renders the same in a browser, an editor or an image tool.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from orchestrate.errors import InvalidInputError

Edge = tuple[str, str, str, bool]  # (from, to, label, dashed)

CHAR_WIDTH = 7.2  # px per character of the 12 px sans-serif text, a little generous
LINE_HEIGHT = 16.0
WRAP = 34  # characters per line of a node's label
PAD_X, PAD_Y = 12.0, 8.0
GAP_X, GAP_Y = 36.0, 56.0
MARGIN = 24.0

STYLE = """
text { font-family: Helvetica, Arial, sans-serif; font-size: 12px; fill: #1f2933; }
.node rect, .node polygon, .node ellipse { stroke: #52606d; stroke-width: 1.2; }
.box rect { fill: #e8f1fb; }
.round rect { fill: #f0f4f8; }
.diamond polygon { fill: #fff4d6; }
.circle ellipse { fill: #e3f8e8; }
.gate polygon { fill: #fde8e8; stroke: #b83232; }
.edge path { fill: none; stroke: #52606d; stroke-width: 1.2; }
.edge.dashed path { stroke-dasharray: 5 4; }
.edge-label rect { fill: #ffffff; opacity: 0.9; }
.edge-label text { font-size: 11px; fill: #3e4c59; }
"""


@dataclass
class _Box:
    ident: str
    lines: list[str]
    shape: str
    layer: int = 0
    order: float = 0.0
    x: float = 0.0  # centre
    y: float = 0.0  # top
    width: float = 0.0
    height: float = 0.0


def _wrap(label: str) -> list[str]:
    return textwrap.wrap(label, WRAP, break_long_words=True, break_on_hyphens=False) or [""]


def _size(box: _Box) -> None:
    text_width = max(len(line) for line in box.lines) * CHAR_WIDTH
    text_height = len(box.lines) * LINE_HEIGHT
    if box.shape == "diamond":  # the text sits in the diamond's middle half
        box.width, box.height = text_width * 1.5 + 2 * PAD_X, text_height * 1.6 + 2 * PAD_Y
    elif box.shape == "circle":
        box.width, box.height = text_width + 4 * PAD_X, text_height + 3 * PAD_Y
    elif box.shape == "gate":
        box.width, box.height = text_width + 4 * PAD_X, text_height + 2 * PAD_Y
    else:
        box.width, box.height = text_width + 2 * PAD_X, text_height + 2 * PAD_Y


def _back_edges(boxes: dict[str, _Box], edges: Sequence[Edge], root: str) -> set[int]:
    """Indexes of the edges that close a cycle, by a depth-first walk from ``root``."""
    out: dict[str, list[tuple[int, str]]] = {ident: [] for ident in boxes}
    for i, (source, target, _, _) in enumerate(edges):
        out[source].append((i, target))
    back: set[int] = set()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for start in [root, *boxes]:
        if start in state:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            node, position = stack[-1]
            if position == len(out[node]):
                state[node] = 2
                stack.pop()
                continue
            stack[-1] = (node, position + 1)
            index, target = out[node][position]
            if state.get(target) == 1:
                back.add(index)
            elif target not in state:
                state[target] = 1
                stack.append((target, 0))
    return back


def _layers(boxes: dict[str, _Box], forward: Sequence[Edge]) -> list[list[_Box]]:
    incoming: dict[str, list[str]] = {ident: [] for ident in boxes}
    for source, target, _, _ in forward:
        incoming[target].append(source)
    done: dict[str, int] = {}

    def layer(ident: str) -> int:
        # Iterative longest path: the forward edges form a DAG.
        stack = [ident]
        while stack:
            node = stack[-1]
            waiting = [p for p in incoming[node] if p not in done]
            if waiting:
                stack.extend(waiting)
                continue
            stack.pop()
            done[node] = max((done[p] + 1 for p in incoming[node]), default=0)
        return done[ident]

    for ident, box in boxes.items():
        box.layer = layer(ident)
    rows: list[list[_Box]] = [[] for _ in range(max(b.layer for b in boxes.values()) + 1)]
    for index, box in enumerate(boxes.values()):
        box.order = float(index)
        rows[box.layer].append(box)
    return rows


def _order(rows: list[list[_Box]], boxes: dict[str, _Box], forward: Sequence[Edge]) -> None:
    above: dict[str, list[str]] = {ident: [] for ident in boxes}
    below: dict[str, list[str]] = {ident: [] for ident in boxes}
    for source, target, _, _ in forward:
        above[target].append(source)
        below[source].append(target)
    for sweep in range(4):
        neighbours, sequence = (above, rows[1:]) if sweep % 2 == 0 else (below, rows[-2::-1])
        for row in sequence:
            for box in row:
                linked = [boxes[n].order for n in neighbours[box.ident]]
                if linked:
                    box.order = sum(linked) / len(linked)
            row.sort(key=lambda b: b.order)
            for position, box in enumerate(row):
                box.order = float(position)


def _place(rows: list[list[_Box]]) -> tuple[float, float]:
    widths = [sum(b.width for b in row) + GAP_X * (len(row) - 1) for row in rows]
    total = max(widths)
    y = MARGIN
    for row, width in zip(rows, widths, strict=True):
        x = MARGIN + (total - width) / 2
        height = max(b.height for b in row)
        for box in row:
            box.x, box.y = x + box.width / 2, y + (height - box.height) / 2
            x += box.width + GAP_X
        y += height + GAP_Y
    return total + 2 * MARGIN, y - GAP_Y + MARGIN


def _shape(box: _Box) -> str:
    left, top, w, h = box.x - box.width / 2, box.y, box.width, box.height
    if box.shape == "diamond":
        cx, cy = box.x, top + h / 2
        points = f"{cx:.1f},{top:.1f} {left + w:.1f},{cy:.1f} {cx:.1f},{top + h:.1f} {left:.1f},{cy:.1f}"
        return f'<polygon points="{points}"/>'
    if box.shape == "gate":  # a hexagon: a checkpoint people pass
        cut = 2 * PAD_X
        points = " ".join(
            f"{px:.1f},{py:.1f}"
            for px, py in (
                (left + cut, top),
                (left + w - cut, top),
                (left + w, top + h / 2),
                (left + w - cut, top + h),
                (left + cut, top + h),
                (left, top + h / 2),
            )
        )
        return f'<polygon points="{points}"/>'
    if box.shape == "circle":
        return f'<ellipse cx="{box.x:.1f}" cy="{top + h / 2:.1f}" rx="{w / 2:.1f}" ry="{h / 2:.1f}"/>'
    radius = 14 if box.shape == "round" else 3
    return f'<rect x="{left:.1f}" y="{top:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{radius}"/>'


def _text(lines: Sequence[str], cx: float, cy: float, *, css: str = "") -> str:
    first = cy - (len(lines) - 1) * LINE_HEIGHT / 2
    spans = "".join(
        f'<tspan x="{cx:.1f}" y="{first + i * LINE_HEIGHT:.1f}">{escape(line)}</tspan>' for i, line in enumerate(lines)
    )
    klass = f' class="{css}"' if css else ""
    return f'<text{klass} text-anchor="middle" dominant-baseline="central">{spans}</text>'


def _edge(
    source: _Box, target: _Box, label: str, dashed: bool, back: bool, right: float, via: Sequence[_Box] = ()
) -> str:
    if back:  # up along the right-hand side, into the target's right edge
        x1, y1 = source.x + source.width / 2, source.y + source.height / 2
        x2, y2 = target.x + target.width / 2, target.y + target.height / 2
        bend = max(x1, x2) + GAP_X + (y1 - y2) * 0.08
        bend = min(bend, right - 4)
        d = f"M{x1:.1f},{y1:.1f} C{bend:.1f},{y1:.1f} {bend:.1f},{y2:.1f} {x2 + 2:.1f},{y2:.1f}"
        mid = (bend - 6, (y1 + y2) / 2)
    else:
        x1, y1 = source.x, source.y + source.height
        x2, y2 = target.x, target.y
        if y2 <= y1:  # same layer (an error handler beside the start): from the side
            x1, y1 = source.x + source.width / 2, source.y + source.height / 2
            x2, y2 = target.x - target.width / 2, target.y + target.height / 2
            d = f"M{x1:.1f},{y1:.1f} L{x2 - 2:.1f},{y2:.1f}"
        else:
            points = [(x1, y1), *((p.x, p.y) for p in via), (x2, y2 - 2)]
            d = f"M{x1:.1f},{y1:.1f}"
            for (ax, ay), (bx, by) in itertools.pairwise(points):
                span = (by - ay) / 2
                d += f" C{ax:.1f},{ay + span:.1f} {bx:.1f},{by - span:.1f} {bx:.1f},{by:.1f}"
            x2, y2 = points[1]
        mid = ((x1 + x2) / 2, (y1 + y2) / 2)
    css = "edge dashed" if dashed or back else "edge"
    parts = [f'<g class="{css}"><path d="{d}" marker-end="url(#arrow)"/>']
    if label:
        lines = _wrap(label)
        width = max(len(line) for line in lines) * CHAR_WIDTH * 0.92 + 8
        height = len(lines) * LINE_HEIGHT
        parts.append(
            f'<g class="edge-label"><rect x="{mid[0] - width / 2:.1f}" y="{mid[1] - height / 2:.1f}" '
            f'width="{width:.1f}" height="{height:.1f}" rx="3"/>{_text(lines, mid[0], mid[1])}</g>'
        )
    parts.append("</g>")
    return "".join(parts)


def render_svg(nodes: Sequence[tuple[str, str, str]], edges: Sequence[Edge], *, title: str) -> str:
    """The graph as an SVG document.

    Args:
        nodes: ``(id, label, shape)``, shape one of ``box``, ``round``, ``diamond``,
            ``circle``, ``gate``; the first node is the start.
        edges: ``(from, to, label, dashed)``.
        title: the document's title (shown by viewers, read by screen readers).
    """
    boxes = {ident: _Box(ident, _wrap(label), shape) for ident, label, shape in nodes}
    for box in boxes.values():
        _size(box)
    back = _back_edges(boxes, edges, nodes[0][0])
    forward = [edge for i, edge in enumerate(edges) if i not in back]
    rows = _layers(boxes, forward)
    # An arrow across several layers passes through a point on each layer between, placed
    # and ordered like a node, so that it goes around the boxes instead of through them.
    via: dict[int, list[_Box]] = {}
    segments: list[Edge] = []
    for i, (source, target, label, dashed) in enumerate(edges):
        if i in back:
            continue
        chain = [source]
        for layer in range(boxes[source].layer + 1, boxes[target].layer):
            point = _Box(f"{source}>{target}#{layer}", [""], "via", layer=layer, width=8.0)
            point.order = boxes[source].order
            boxes[point.ident] = point
            rows[layer].append(point)
            via.setdefault(i, []).append(point)
            chain.append(point.ident)
        chain.append(target)
        segments += [(a, b, label, dashed) for a, b in itertools.pairwise(chain)]
    _order(rows, boxes, segments)
    width, height = _place(rows)
    width += GAP_X * 2 if back else 0  # room for the ways back
    body = [
        _edge(boxes[s], boxes[t], lab, dash, i in back, width, via.get(i, []))
        for i, (s, t, lab, dash) in enumerate(edges)
    ]
    for box in boxes.values():
        if box.shape == "via":
            continue
        body.append(
            f'<g class="node {box.shape}" id={quoteattr(box.ident)}>{_shape(box)}'
            f"{_text(box.lines, box.x, box.y + box.height / 2)}</g>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img">'
        f"<title>{escape(title)}</title>"
        f"<style>{STYLE}</style>"
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#52606d"/></marker></defs>'
        f'<rect width="100%" height="100%" fill="#ffffff"/>{"".join(body)}</svg>\n'
    )


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def svg_to_png(svg: str, *, timeout_seconds: float = 60.0) -> bytes:
    """Render ``svg`` to PNG with a headless Chromium (or Chrome) found on ``PATH``.

    Raises:
        InvalidInputError: no browser is installed, or it failed to draw the picture.
    """
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if browser is None:
        raise InvalidInputError(
            "--format png needs Chromium or Chrome on PATH (apt install chromium); "
            "or write --format svg and convert it (rsvg-convert -o graph.png graph.svg)"
        )
    head = svg.split(">", 1)[0]
    width = int(float(head.split('width="', 1)[1].split('"', 1)[0]))
    height = int(float(head.split('height="', 1)[1].split('"', 1)[0]))
    with tempfile.TemporaryDirectory(prefix="orchestrate-graph-") as folder:
        page, picture = Path(folder) / "graph.html", Path(folder) / "graph.png"
        page.write_text(
            "<!doctype html><html><head><style>html,body{margin:0;padding:0;background:#fff}</style></head>"
            f"<body>{svg}</body></html>",
            encoding="utf-8",
        )
        command = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            f"--user-data-dir={Path(folder) / 'profile'}",
            f"--window-size={width},{height}",
            f"--screenshot={picture}",
            page.as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout_seconds, check=False)
        except subprocess.TimeoutExpired:
            raise InvalidInputError(f"{browser} did not draw the graph within {timeout_seconds:g}s") from None
        if done.returncode != 0 or not picture.is_file():
            last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
            raise InvalidInputError(f"{browser} could not draw the graph (exit {done.returncode}): {last}")
        return picture.read_bytes()
