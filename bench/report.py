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
        if not found or (ours is None and not any(self.ours in r.extra.get("vs", {}) for r in found)):
            measured = any(k in rows for k in self.peers)
            result["note"] = "peer not installed" if measured else "not measured in this run"
            return result
        # Ours as timed in the same rounds as the peer when it was (same moments, same
        # machine state): the median of per-round quotients; else the quotient of the rows.
        # The peer's configuration that comes closest to us is the one reported: the
        # strictest comparison.
        rated = [_rated(ours, r, self.ours, self.measure) for r in found]
        best = min(rated, key=lambda t: t["times"] if t["times"] is not None else float("inf"))
        result.update(best)
        return result


def _rated(ours: Row | None, peer: Row, key: str, measure: str) -> dict[str, Any]:
    beside = peer.extra.get("vs", {}).get(key)
    theirs = peer.overhead_per_step_us if measure == "overhead" else peer.per_step_us
    if beside:
        return {
            "peer": peer.key,
            "ours_us": beside["ours_overhead_per_step_us"],
            "peer_us": theirs,
            "times": beside["times_ours"],
            "times_q1": beside["times_ours_q1"],
            "times_q3": beside["times_ours_q3"],
            "rounds": beside["rounds"],
            "ours_from": "the same rounds as the peer",
        }
    mine = float("inf")
    if ours is not None and ours.skipped is None:
        value = ours.overhead_per_step_us if measure == "overhead" else ours.per_step_us
        mine = float(value) if value is not None else mine
    times = round(theirs / mine, 2) if theirs is not None and 0 < mine < float("inf") else None
    return {"peer": peer.key, "ours_us": mine, "peer_us": theirs, "times": times, "ours_from": key}


_LG_SYNC = ("langgraph.memory.sync",)
_BURR_SYNC = ("burr.memory.sync", "burr.memory.sync_reused")


def _in_memory(ours: str, what: str) -> tuple[Comparison, Comparison]:
    return (
        Comparison(f"{what} vs LangGraph sync invoke (overhead per step)", ours, _LG_SYNC, "overhead"),
        Comparison(f"{what} vs Burr sync (overhead per step)", ours, _BURR_SYNC, "overhead"),
    )


COMPARISONS = (
    *_in_memory("ours.memory.async", "async steps"),
    *_in_memory("ours.memory.def", "def steps, no timeout"),
    *_in_memory("ours.memory.def_timeout", "def steps with a timeout (graph)"),
    *_in_memory("ours.memory.def_fn_timeout", "def steps with a timeout (durable function)"),
    Comparison(
        "0.5 KB dict, def steps vs LangGraph sync invoke",
        "ours.memory.payload_def",
        ("langgraph.memory.payload",),
        "overhead",
    ),
    Comparison("0.5 KB dict, def steps vs Burr sync", "ours.memory.payload_def", ("burr.memory.payload",), "overhead"),
    Comparison(
        "10 KB dict, def steps vs LangGraph sync invoke",
        "ours.memory.payload_def",
        ("langgraph.memory.payload10k",),
        "overhead",
    ),
    Comparison(
        "10 KB dict, def steps vs Burr sync", "ours.memory.payload_def", ("burr.memory.payload10k",), "overhead"
    ),
    Comparison(
        "async steps vs LangGraph async ainvoke (overhead per step)",
        "ours.memory.async",
        ("langgraph.memory.async",),
        "overhead",
    ),
    Comparison(
        "async steps vs LangGraph with InMemorySaver (overhead per step)",
        "ours.memory.async",
        ("langgraph.inmemorysaver.sync",),
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


def _extra(key: str, name: str) -> Callable[[dict[str, Row], list[dict[str, Any]]], float | None]:
    def figure(rows: dict[str, Row], comparisons: list[dict[str, Any]]) -> float | None:
        row = rows.get(key)
        value = None if row is None or row.skipped else row.extra.get(name)
        return None if value is None else float(value)

    return figure


def _comparison_targets() -> list[Target]:
    bounds = {
        "async steps": (15, 3),
        "def steps, no timeout": (15, 3),
        "def steps with a timeout (graph)": (7, 1),
        "def steps with a timeout (durable function)": (7, 1),
    }
    found: list[Target] = []
    for what, (langgraph, burr) in bounds.items():
        found.append(
            Target(
                f"{what}: overhead below LangGraph sync invoke's",
                _times(f"{what} vs LangGraph sync invoke (overhead per step)"),
                langgraph,
                True,
                "x",
            )
        )
        found.append(
            Target(
                f"{what}: overhead below Burr's", _times(f"{what} vs Burr sync (overhead per step)"), burr, True, "x"
            )
        )
    for size in ("0.5 KB", "10 KB"):
        found.append(
            Target(
                f"{size} dict: overhead below LangGraph sync invoke's",
                _times(f"{size} dict, def steps vs LangGraph sync invoke"),
                10,
                True,
                "x",
            )
        )
        found.append(
            Target(f"{size} dict: overhead below Burr's", _times(f"{size} dict, def steps vs Burr sync"), 5, True, "x")
        )
    return found


TARGETS = (
    *_comparison_targets(),
    Target("SQLite (synchronous=FULL) cost per step / bare insert+commit", _ratio("ours.sqlite.full"), 1.3, False, "x"),
    Target(
        "SQLite (synchronous=NORMAL) cost per step / bare insert+commit", _ratio("ours.sqlite.normal"), 1.3, False, "x"
    ),
    Target(
        "SQLite (FULL), durable function / bare insert+commit", _ratio("ours.sqlite.full.durable_fn"), 1.3, False, "x"
    ),
    Target(
        "PostgreSQL one run at a time: cost per step / bare INSERT", _ratio("ours.postgres.sequential"), 1.3, False, "x"
    ),
    Target(
        "100 concurrent runs: aggregate cost per step / per-commit floor",
        _ratio("ours.sqlite.full.concurrent"),
        1.0,
        False,
        "x (below the floor)",
    ),
    Target("1,000-way map: time per child / asyncio.gather", _ratio("ours.memory.map"), 5, False, "x"),
    Target(
        "durable Map of 100 items on SQLite: commits per wave",
        _extra("ours.sqlite.map", "commits_per_wave"),
        3,
        False,
        "",
    ),
    Target("durable Map on SQLite: cost per item / batched insert floor", _ratio("ours.sqlite.map"), 3, False, "x"),
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


def _spread(c: dict[str, Any]) -> str:
    """The interquartile range of a comparison's per-round quotients, and how many rounds."""
    if c.get("times_q1") is None:
        return ""
    return f" [IQR {c['times_q1']}-{c['times_q3']}, {c['rounds']} rounds]"


def _details(row: Row) -> str:
    if row.skipped:
        return f"skipped: {row.skipped}"
    parts = [f"{k}={v}" for k, v in row.extra.items() if k != "vs"]  # "vs": in the comparisons
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
                f"{c['times']}x{_spread(c)} (ours {c['ours_us']:.2f} µs, {c['peer']} {c['peer_us']:.2f} µs)"
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
            out.append(
                f"| {c['name']} | {c['ours_us']:.2f} | {c['peer']} | {c['peer_us']:.2f} | {c['times']}x{_spread(c)} |"
            )
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
