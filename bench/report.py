"""Comparisons, targets, the printed table and the result files (JSON and markdown).

The targets are those of the performance issue; each is a ratio computed from rows of
the same run, never an absolute time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.harness import Row

OURS_MEMORY = "ours.memory.async"
OURS_DURABLE = "ours.sqlite.full"


@dataclass(frozen=True)
class Comparison:
    """How many times a peer's per-step figure is ours (above 1: we are cheaper)."""

    name: str
    ours: str
    peers: tuple[str, ...]
    measure: str
    """``overhead`` (per-step overhead over the plain chain) or ``cost`` (total per step)."""

    def compute(self, rows: dict[str, Row]) -> dict[str, Any]:
        ours = rows.get(self.ours)
        found = [rows[k] for k in self.peers if k in rows and rows[k].skipped is None]
        result: dict[str, Any] = {"name": self.name, "ours": self.ours, "measure": self.measure, "times": None}
        if ours is None or ours.skipped is not None or not found:
            measured = ours is not None and any(k in rows for k in self.peers)
            result["note"] = "peer not installed" if measured else "not measured in this run"
            return result
        # Ours as timed beside the peer in the peer's process when it was (same moment,
        # same machine state), else from our own group; the peer's configuration that
        # comes closest to us is the one reported: the strictest comparison.
        triples = [(_figure(ours, self.measure, beside=r), _figure(r, self.measure), r) for r in found]
        rated = [(_peer_times(mine, theirs, r), mine, theirs, r) for mine, theirs, r in triples]
        times, mine, theirs, best = min(rated, key=lambda t: t[0] if t[0] is not None else float("inf"))
        result.update(
            peer=best.key,
            ours_us=round(mine, 3),
            peer_us=theirs,
            times=times,
            ours_from="beside the peer" if "ours_overhead_per_step_us" in best.extra else self.ours,
        )
        return result


def _peer_times(mine: float, theirs: float, peer: Row) -> float | None:
    """The peer's figure over ours: the median of neighbouring ratios when timed side by side."""
    if "times_ours" in peer.extra:
        return float(peer.extra["times_ours"])
    return round(theirs / mine, 2) if mine > 0 else None


def _figure(row: Row, measure: str, *, beside: Row | None = None) -> float:
    if beside is not None and measure == "overhead" and "ours_overhead_per_step_us" in beside.extra:
        return float(beside.extra["ours_overhead_per_step_us"])
    value = row.overhead_per_step_us if measure == "overhead" else row.per_step_us
    return float(value if value is not None else "inf")


COMPARISONS = (
    Comparison(
        "ours vs LangGraph (in memory, overhead per step)",
        OURS_MEMORY,
        ("langgraph.memory.sync", "langgraph.memory.async"),
        "overhead",
    ),
    Comparison(
        "ours vs LangGraph with InMemorySaver (overhead per step)",
        OURS_MEMORY,
        ("langgraph.inmemorysaver.sync",),
        "overhead",
    ),
    Comparison(
        "ours vs Burr (in memory, overhead per step)",
        OURS_MEMORY,
        ("burr.memory.sync", "burr.memory.sync_reused", "burr.memory.async"),
        "overhead",
    ),
    Comparison(
        "ours vs DBOS (SQLite, durable cost per step)", OURS_DURABLE, ("dbos.sqlite.async", "dbos.sqlite.sync"), "cost"
    ),
    Comparison(
        "ours vs LangGraph SqliteSaver, durability='sync' (durable cost per step)",
        OURS_DURABLE,
        ("langgraph.sqlite.sync_durability",),
        "cost",
    ),
    Comparison("ours vs Burr SQLitePersister (durable cost per step)", OURS_DURABLE, ("burr.sqlite.sync",), "cost"),
)


@dataclass(frozen=True)
class Target:
    """A target of the issue: a figure of this run and the bound it must meet."""

    name: str
    figure: Callable[[dict[str, Row], list[dict[str, Any]]], float | None]
    bound: float
    at_least: bool
    unit: str

    def check(self, rows: dict[str, Row], comparisons: list[dict[str, Any]]) -> dict[str, Any]:
        value = self.figure(rows, comparisons)
        met = None if value is None else (value >= self.bound if self.at_least else value <= self.bound)
        wanted = f"{'>=' if self.at_least else '<='} {self.bound:g}{self.unit}"
        return {"name": self.name, "value": value, "wanted": wanted, "met": met}


def _ratio(key: str) -> Callable[[dict[str, Row], list[dict[str, Any]]], float | None]:
    def figure(rows: dict[str, Row], comparisons: list[dict[str, Any]]) -> float | None:
        row = rows.get(key)
        return None if row is None or row.skipped else row.ratio

    return figure


def _times(name: str) -> Callable[[dict[str, Row], list[dict[str, Any]]], float | None]:
    def figure(rows: dict[str, Row], comparisons: list[dict[str, Any]]) -> float | None:
        found = next((c for c in comparisons if c["name"] == name), None)
        return None if found is None else found["times"]

    return figure


TARGETS = (
    Target("in-memory overhead per step lower than LangGraph's", _times(COMPARISONS[0].name), 10, True, "x"),
    Target("in-memory overhead per step lower than Burr's", _times(COMPARISONS[2].name), 3, True, "x"),
    Target("SQLite (synchronous=FULL) cost per step / bare insert+commit", _ratio("ours.sqlite.full"), 1.5, False, "x"),
    Target(
        "100 concurrent runs: aggregate cost per step / per-commit floor",
        _ratio("ours.sqlite.full.concurrent"),
        1.0,
        False,
        "x (below the floor)",
    ),
    Target("1,000-way map: time per child / asyncio.gather", _ratio("ours.memory.map"), 5, False, "x"),
)


def evaluate(rows: list[Row]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Comparisons with peers and the targets' verdicts."""
    by_key = {row.key: row for row in rows}
    comparisons = [c.compute(by_key) for c in COMPARISONS]
    targets = [t.check(by_key, comparisons) for t in TARGETS]
    return comparisons, targets


# rendering -------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _details(row: Row) -> str:
    if row.skipped:
        return f"skipped: {row.skipped}"
    parts = [f"{k}={v}" for k, v in row.extra.items()]
    if row.note:
        parts.append(row.note)
    return "; ".join(parts)


HEADER = ("measurement", "system", "per step µs", "floor µs", "overhead µs", "ratio", "details")


def table_rows(rows: list[Row]) -> list[tuple[str, ...]]:
    return [
        (
            row.key,
            row.system,
            _num(row.per_step_us, 2),
            _num(row.floor_per_step_us, 2),
            _num(row.overhead_per_step_us, 2),
            "-" if row.ratio is None else f"{row.ratio:g}x",
            _details(row),
        )
        for row in rows
    ]


def text_table(rows: list[Row], comparisons: list[dict[str, Any]], targets: list[dict[str, Any]]) -> str:
    """The table printed at the end of a run."""
    body = table_rows(rows)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(HEADER[:-1])]
    lines = [
        "  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(HEADER, widths, strict=False)))
        + "  details"
    ]
    for r in body:
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))]
        lines.append("  ".join(cells) + "  " + r[-1])
    lines.append("")
    lines.append("comparisons (peer's per-step figure / ours; above 1: we are cheaper):")
    for c in comparisons:
        lines.append(
            f"  {c['name']}: "
            + (
                f"{c['times']}x (ours {c['ours_us']:.2f} µs, {c['peer']} {c['peer_us']:.2f} µs)"
                if c["times"] is not None
                else c.get("note", "-")
            )
        )
    lines.append("")
    lines.append("targets:")
    for t in targets:
        verdict = {True: "MET", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"  [{verdict}] {t['name']}: {_num(t['value'], 2)} (wanted {t['wanted']})")
    return "\n".join(lines)


def markdown(
    rows: list[Row], comparisons: list[dict[str, Any]], targets: list[dict[str, Any]], meta: dict[str, Any]
) -> str:
    """The results as a markdown page (also pasted into ``docs/benchmarks.md``)."""
    machine = meta["machine"]
    out = [f"# Benchmark results ({'quick smoke' if meta['quick'] else 'full run'}, {meta['finished_at']})", ""]
    out.append(machine_markdown(machine))
    out += ["", "## Measurements", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in table_rows(rows)]
    out += [
        "",
        "## Comparisons",
        "",
        "| comparison | ours µs | peer (cheapest configuration) | peer µs | times |",
        "|---|---|---|---|---|",
    ]
    for c in comparisons:
        if c["times"] is None:
            out.append(f"| {c['name']} | - | {c.get('note', '-')} | - | - |")
        else:
            out.append(f"| {c['name']} | {c['ours_us']:.2f} | {c['peer']} | {c['peer_us']:.2f} | {c['times']}x |")
    out += ["", "## Targets", "", "| target | value | wanted | verdict |", "|---|---|---|---|"]
    for t in targets:
        verdict = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        out.append(f"| {t['name']} | {_num(t['value'], 2)} | {t['wanted']} | {verdict} |")
    out += ["", f"Total time: {meta['duration_s']:.0f} s."]
    return "\n".join(out) + "\n"


def machine_markdown(machine: dict[str, Any]) -> str:
    disk = machine["disk"]
    kind = {True: "rotational (as reported)", False: "SSD/NVMe"}.get(disk.get("rotational"), "unknown kind")
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    return "\n".join(
        [
            "| machine | |",
            "|---|---|",
            f"| CPU | {machine['cpu']} |",
            f"| cores | {machine['cores']} |",
            f"| memory | {machine['memory_gib']} GiB |",
            f"| disk | {disk.get('device')} ({disk.get('filesystem')}, {disk.get('size_gib')} GiB, {kind}) |",
            f"| OS | {machine['os']} |",
            f"| Python | {machine['python']} ({machine['python_implementation']}) |",
            f"| SQLite | {machine['sqlite']} |",
            f"| packages | {packages} |",
            f"| load average at start | {machine.get('load_average')} |",
        ]
    )


def write(
    directory: str,
    rows: list[Row],
    comparisons: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    meta: dict[str, Any],
) -> tuple[str, str]:
    """Write ``results.json`` and ``results.md`` (and a timestamped copy of the JSON)."""
    os.makedirs(directory, exist_ok=True)
    document = {
        "meta": meta,
        "machine": meta["machine"],
        "results": [r.to_dict() for r in rows],
        "comparisons": comparisons,
        "targets": targets,
    }
    json_path = os.path.join(directory, "results.json")
    text = json.dumps(document, indent=2, ensure_ascii=False)
    with open(json_path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    stamp = meta["finished_at"].replace(":", "").replace("-", "")
    with open(os.path.join(directory, f"results-{stamp}.json"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    md_path = os.path.join(directory, "results.md")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(markdown(rows, comparisons, targets, meta))
    return json_path, md_path
