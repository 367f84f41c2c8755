"""A small SVG line chart of the fraud step's drift score, drawn by hand (no plotting library).

The chart shows the score per run, the drift threshold, when the inputs shifted, the span
during which the alert held (loans routed to people), and when the reference was re-baselined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 760, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 20, 34, 46


@dataclass(frozen=True)
class Marks:
    """What happened when, in runs: the shift, the alert's span and the re-baselining."""

    runs: int
    threshold: float
    shift_at: int
    fired_at: int | None
    resolved_at: int | None
    rebaselined_at: int | None


def _ticks(top: float) -> list[float]:
    step = next(s for s in (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0) if top / s <= 6)
    return [round(i * step, 6) for i in range(int(top / step) + 1)]


def drift_svg(points: Sequence[tuple[int, float]], marks: Marks, *, title: str) -> str:
    """The chart as an SVG document.

    Args:
        points: ``(run index, drift score)``, in run order.
        marks: the shift, the alert and the re-baselining.
        title: the chart's title.
    """
    top = max([marks.threshold * 1.5, *(score for _, score in points)]) * 1.05
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(run: float) -> float:
        return LEFT + run / max(marks.runs, 1) * plot_w

    def y(score: float) -> float:
        return TOP + plot_h - score / top * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="20" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    if marks.fired_at is not None:
        end = marks.resolved_at if marks.resolved_at is not None else marks.runs
        out.append(
            f'<rect x="{x(marks.fired_at):.1f}" y="{TOP}" width="{x(end) - x(marks.fired_at):.1f}" '
            f'height="{plot_h}" fill="#f8d7da" opacity="0.7"><title>alert firing: loans routed to review</title></rect>'
        )
        out.append(
            f'<text x="{x(marks.fired_at):.1f}" y="{TOP - 4}" fill="#a12622">alert firing: loans to review</text>'
        )
    for tick in _ticks(top):
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eeeeee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for run in range(0, marks.runs + 1, max(100, marks.runs // 8 // 100 * 100)):
        out.append(f'<text x="{x(run):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{run}</text>')
    out.append(
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(marks.threshold):.1f}" y2="{y(marks.threshold):.1f}" '
        'stroke="#d9534f" stroke-dasharray="6 4"/>'
    )
    out.append(
        f'<text x="{LEFT + plot_w - 4}" y="{y(marks.threshold) - 5:.1f}" text-anchor="end" fill="#d9534f">'
        f"threshold {marks.threshold:g}</text>"
    )
    for at, label, colour in (
        (marks.shift_at, "inputs shift (2022 → 2023)", "#555555"),
        (marks.rebaselined_at, "v5 deployed, re-baselined", "#2a7ab8"),
    ):
        if at is None:
            continue
        out.append(
            f'<line x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
            f'stroke="{colour}" stroke-dasharray="2 3"/>'
        )
        out.append(f'<text x="{x(at) + 4:.1f}" y="{TOP + plot_h - 6}" fill="{colour}">{escape(label)}</text>')
    segments: list[list[tuple[int, float]]] = []
    for run, score in points:  # a gap in the runs (a re-baselined window filling) breaks the line
        if segments and run - segments[-1][-1][0] <= 60:
            segments[-1].append((run, score))
        else:
            segments.append([(run, score)])
    for segment in segments:
        coords = " ".join(f"{x(run):.1f},{y(score):.1f}" for run, score in segment)
        out.append(f'<polyline points="{coords}" fill="none" stroke="#1f4e79" stroke-width="1.6"/>')
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999999"/>'
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle">run</text>'
        f'<text x="14" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2:.1f})">drift score (PSI)</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"
