// The workflow drawn as a graph (left to right, in layers), with the path the run took.

import { s, h } from "./dom.js";

const W = 190;
const H = 38;
const GAP_X = 60;
const GAP_Y = 22;
const PAD = 16;

/** Layers by longest path from the sources, ignoring edges that close a cycle (loops). */
function layout(nodes, edges) {
  const ids = nodes.map((n) => n.id);
  const out = new Map(ids.map((id) => [id, []]));
  for (const e of edges) if (out.has(e.source) && out.has(e.target)) out.get(e.source).push(e.target);
  const back = new Set();
  const state = new Map();
  const visit = (id) => {
    state.set(id, 1);
    for (const t of out.get(id)) {
      if (state.get(t) === 1) back.add(`${id}\u0000${t}`);
      else if (!state.get(t)) visit(t);
    }
    state.set(id, 2);
  };
  const indeg = new Map(ids.map((id) => [id, 0]));
  for (const e of edges) if (indeg.has(e.target) && e.source !== e.target) indeg.set(e.target, indeg.get(e.target) + 1);
  for (const id of ids.filter((i) => indeg.get(i) === 0)) if (!state.get(id)) visit(id);
  for (const id of ids) if (!state.get(id)) visit(id);
  const forward = edges.filter((e) => out.has(e.source) && out.has(e.target) && e.source !== e.target && !back.has(`${e.source}\u0000${e.target}`));
  const layer = new Map(ids.map((id) => [id, 0]));
  for (let changed = true, guard = 0; changed && guard < ids.length + 1; guard++) {
    changed = false;
    for (const e of forward) {
      if (layer.get(e.target) < layer.get(e.source) + 1) { layer.set(e.target, layer.get(e.source) + 1); changed = true; }
    }
  }
  const columns = [];
  for (const id of ids) (columns[layer.get(id)] ||= []).push(id);
  // One pass of barycentres keeps children next to their parents.
  const pos = new Map();
  columns.forEach((col, c) => {
    if (c > 0) {
      const parentsOf = (id) => forward.filter((e) => e.target === id).map((e) => pos.get(e.source)).filter((v) => v !== undefined);
      col.sort((a, b) => avg(parentsOf(a)) - avg(parentsOf(b)));
    }
    col.forEach((id, i) => pos.set(id, i));
  });
  const tallest = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const place = new Map();
  columns.forEach((col, c) => {
    const offset = ((tallest - col.length) * (H + GAP_Y)) / 2;
    col.forEach((id, i) => place.set(id, { x: PAD + c * (W + GAP_X), y: PAD + offset + i * (H + GAP_Y) }));
  });
  return { place, back, width: PAD * 2 + columns.length * (W + GAP_X) - GAP_X, height: PAD * 2 + tallest * (H + GAP_Y) - GAP_Y + (back.size ? 34 : 0) };
}

const STEP_LABEL = /^(step|map|loop|branch|parallel|subworkflow) (\S+)/;

/** The step a node stands for: its `step` field, or the name its label starts with. */
function stepOf(node) {
  if (node.step) return String(node.step);
  const found = STEP_LABEL.exec(String(node.label || ""));
  return found ? found[2] : null;
}

function avg(values) {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0;
}

/**
 * Draw `graph` ({nodes, edges, path}); `statusOf(id)` gives a node's step status (or null);
 * `onSelect(id)` is called when a node is clicked.
 */
export function drawGraph(graph, { statusOf = () => null, onSelect } = {}) {
  const nodes = (graph && graph.nodes) || [];
  const edges = (graph && graph.edges) || [];
  if (!nodes.length) return h("p.muted", {}, "This workflow has no graph to draw (a durable function runs the steps its code asks for).");
  const path = (graph.path || []).map(String);
  const taken = new Set(path);
  const takenEdges = new Set();
  for (let i = 1; i < path.length; i++) takenEdges.add(`${path[i - 1]}\u0000${path[i]}`);
  const { place, back, width, height } = layout(nodes, edges);
  const svg = s("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "workflow graph" });
  svg.append(s("defs", {},
    s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" })),
    s("marker", { id: "arrow-taken", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow taken" }))));
  for (const e of edges) {
    const a = place.get(e.source);
    const b = place.get(e.target);
    if (!a || !b) continue;
    const key = `${e.source}\u0000${e.target}`;
    const isTaken = takenEdges.has(key);
    let d;
    let lx;
    let ly;
    if (back.has(key) || e.source === e.target) {
      // A loop goes back under the nodes.
      const x1 = a.x + W / 2;
      const x2 = b.x + W / 2;
      const yb = Math.max(a.y, b.y) + H + 26;
      d = `M${x1},${a.y + H} C${x1},${yb} ${x2},${yb} ${x2},${b.y + H + 2}`;
      lx = (x1 + x2) / 2;
      ly = yb - 4;
    } else {
      const x1 = a.x + W;
      const y1 = a.y + H / 2;
      const x2 = b.x - 2;
      const y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      d = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
      lx = mx;
      ly = (y1 + y2) / 2 - 4;
    }
    svg.append(s("path", { d, class: `edge${isTaken ? " taken" : ""}`, "marker-end": `url(#${isTaken ? "arrow-taken" : "arrow"})`, "data-edge": `${e.source}->${e.target}` }));
    if (e.label) svg.append(s("text", { x: lx, y: ly, class: "edge-label", "text-anchor": "middle" }, String(e.label).slice(0, 28)));
  }
  for (const n of nodes) {
    const p = place.get(n.id);
    const step = stepOf(n);
    const status = statusOf(step || n.id);
    const cls = ["node", `k-${n.kind || "step"}`, taken.has(n.id) ? "taken" : "untaken", status ? `st-${status}` : ""].filter(Boolean).join(" ");
    const g = s("g", { class: cls, "data-node": n.id, transform: `translate(${p.x},${p.y})`, tabindex: onSelect ? 0 : undefined });
    const full = String(n.label || n.id);
    const label = step || full;
    g.append(s("rect", { width: W, height: H, rx: ["gate", "review", "terminal", "start", "end"].includes(n.kind) ? 18 : 6 }),
      s("text", { x: W / 2, y: H / 2 + 4, "text-anchor": "middle" }, label.length > 27 ? `${label.slice(0, 26)}…` : label),
      s("title", {}, `${full} (${n.kind || "step"})${status ? `: ${status}` : ""}${taken.has(n.id) ? " — on the path taken" : ""}`));
    if (n.kind && !["step", "terminal", "start", "end"].includes(n.kind)) g.append(s("text", { x: 6, y: 11, class: "node-kind" }, n.kind));
    if (onSelect) g.addEventListener("click", () => onSelect(step || n.id));
    g.dataset.step = step || "";
    svg.append(g);
  }
  return h("div.scroll", {}, svg);
}
