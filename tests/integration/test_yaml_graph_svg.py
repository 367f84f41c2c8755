"""``orchestrate graph --format svg|png``: a valid, self-contained picture of every kind of node."""

from __future__ import annotations

import re
import shutil
import struct
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate.cli._svg import render_svg
from orchestrate.cli.main import cli

SVG = "{http://www.w3.org/2000/svg}"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "yaml"

FLOW = """
name: everything
steps:
  - step: classify
    call: builtins:str
  - branch: route
    on: classify
    routes:
      refund: {step: refund, call: builtins:str}
      "a & <b>": {step: escaped, call: builtins:str}
    default: done
  - parallel: checks
    steps:
      - {step: identity, call: builtins:str}
      - {step: fraud, call: builtins:str}
  - map: each_doc
    each: {step: ocr, call: builtins:str}
  - loop: refine
    until: value == "ok"
    max_iterations: 3
    steps:
      - {step: improve, call: builtins:str}
  - step: approve
    call: builtins:str
    gate: {roles: [lead], timeout: 1h}
  - step: done
    call: builtins:str
error_handler: {step: report, call: builtins:str}
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "everything.yaml"
    path.write_text(textwrap.dedent(FLOW))
    return path


def _texts(root: ET.Element) -> list[str]:
    return [" ".join(" ".join(t.itertext()).split()) for t in root.iter(f"{SVG}text")]


def test_every_node_kind_is_drawn_in_a_valid_svg(flow: Path) -> None:
    result = invoke("graph", str(flow), "--format", "svg")
    assert result.exit_code == 0, result.output
    root = ET.fromstring(result.output)
    assert root.tag == f"{SVG}svg"
    assert root.findtext(f"{SVG}title", "").startswith("workflow everything (version ")
    texts = " | ".join(_texts(root))
    for expected in (
        "start: everything",
        "step classify",
        "branch route on classify",
        "refund",
        "a & <b>",  # escaped in the file, read back as written
        "parallel checks",
        "merge as list",
        "map each_doc",
        "each item",
        "reduce list",
        'loop refine until value == "ok" (at most 3)',
        "again",
        "step approve",
        "end",
        "any step fails",
    ):
        assert expected in texts, expected
    nodes = {g.get("id"): g.get("class") for g in root.iter(f"{SVG}g") if (g.get("class") or "").startswith("node")}
    assert len(nodes) == 18  # start, end, handler, 9 steps and branch/fork/join/map/reduce/loop heads
    gates = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node gate"]
    assert len(gates) == 1 and "step approve" in "".join(gates[0].itertext())
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "node diamond"]) == 1
    dashed = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge dashed"]
    assert {" ".join("".join(g.itertext()).split()) for g in dashed} >= {"again", "any step fails"}


def test_the_svg_needs_nothing_from_outside(flow: Path) -> None:
    text = invoke("graph", str(flow), "--format", "svg").output
    assert "<image" not in text and "@import" not in text and "href" not in text.replace("url(#arrow)", "")
    assert re.findall(r"https?://[^\"' ]+", text) == ["http://www.w3.org/2000/svg"]  # the namespace only


def test_arrows_point_down_except_the_ways_back(flow: Path) -> None:
    root = ET.fromstring(invoke("graph", str(flow), "--format", "svg").output)
    for edge in root.iter(f"{SVG}g"):
        if edge.get("class") != "edge":
            continue
        path = edge.find(f"{SVG}path")
        assert path is not None
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.get("d", ""))]
        assert numbers[-1] > numbers[1], path.get("d")  # ends lower than it starts


def test_boxes_do_not_overlap(flow: Path) -> None:
    root = ET.fromstring(invoke("graph", str(flow), "--format", "svg").output)
    boxes = []
    for rect in root.iter(f"{SVG}rect"):
        if rect.get("width", "").endswith("%"):
            continue  # the background
        x, y, w, h = (float(rect.get(k, "0")) for k in ("x", "y", "width", "height"))
        boxes.append((x, y, x + w, y + h))
    node_boxes = [b for b in boxes if b[3] - b[1] > LINE]
    for i, a in enumerate(node_boxes):
        for b in node_boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


LINE = 17.0  # taller than one edge label's background: node boxes only


def test_output_file_and_the_shipped_examples(tmp_path: Path) -> None:
    for example in ("loans.yaml", "moderation.yaml", "support_router.yaml"):
        out = tmp_path / f"{example}.svg"
        result = invoke("graph", str(EXAMPLES / example), "--format", "svg", "-o", str(out))
        assert result.exit_code == 0, result.output
        ET.parse(out)
    assert "step decide" in " ".join(_texts(ET.parse(tmp_path / "loans.yaml.svg").getroot()))


def test_png_needs_an_output_file(flow: Path) -> None:
    result = CliRunner().invoke(cli, ["graph", str(flow), "--format", "png"])
    assert result.exit_code == 2
    assert "--output" in result.output


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed")
def test_png_through_headless_chromium(flow: Path, tmp_path: Path) -> None:
    out = tmp_path / "graph.png"
    result = invoke("graph", str(flow), "--format", "png", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    svg = ET.fromstring(invoke("graph", str(flow), "--format", "svg").output)
    assert (width, height) == (int(svg.get("width", "0")), int(svg.get("height", "0")))


def test_a_single_node_graph() -> None:
    root = ET.fromstring(render_svg([("n0", "start: x", "circle")], [], title="x"))
    assert _texts(root) == ["start: x"]
