// Simple SVG charts drawn here: horizontal bars, a stacked column series over time, and lines over windows.

import { s, h, fmtCost } from "./dom.js";

const PALETTE = 8; // colours c0..c7 in app.css

/** Horizontal bars: rows [{label, value, note}] scaled to the largest value. */
export function barChart(rows, { format = fmtCost, width = 520, label = "chart" } = {}) {
  if (!rows.length) return h("p.muted", {}, "Nothing to show yet.");
  const bar = 20;
  const gap = 8;
  const left = 170;
  const right = 90;
  const max = Math.max(...rows.map((r) => r.value), 1e-12);
  const height = rows.length * (bar + gap) + gap;
  const svg = s("svg", { class: "chart bars", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  rows.forEach((r, i) => {
    const y = gap + i * (bar + gap);
    const w = Math.max(((width - left - right) * r.value) / max, r.value > 0 ? 2 : 0);
    svg.append(
      s("text", { x: left - 8, y: y + bar / 2 + 4, "text-anchor": "end", class: "axis-label" }, r.label.length > 24 ? `${r.label.slice(0, 23)}…` : r.label),
      s("rect", { x: left, y, width: w, height: bar, rx: 3, class: `c${i % PALETTE}` }, s("title", {}, `${r.label}: ${format(r.value)}${r.note ? ` (${r.note})` : ""}`)),
      s("text", { x: left + w + 6, y: y + bar / 2 + 4, class: "value" }, format(r.value)));
  });
  return svg;
}

/** Stacked columns over time: buckets [{label, parts: {series: value}}]. */
export function stackedColumns(buckets, { format = fmtCost, width = 720, height = 220, label = "chart" } = {}) {
  if (!buckets.length) return h("p.muted", {}, "Nothing to show yet.");
  const series = [...new Set(buckets.flatMap((b) => Object.keys(b.parts)))];
  const left = 60;
  const bottom = 26;
  const top = 10;
  const plotH = height - bottom - top;
  const totals = buckets.map((b) => Object.values(b.parts).reduce((a, v) => a + v, 0));
  const max = Math.max(...totals, 1e-12);
  const slot = (width - left - 10) / buckets.length;
  const colW = Math.max(4, Math.min(40, slot * 0.7));
  const svg = s("svg", { class: "chart columns", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  for (let i = 0; i <= 3; i++) {
    const v = (max * i) / 3;
    const y = top + plotH - (plotH * i) / 3;
    svg.append(s("line", { x1: left, x2: width - 10, y1: y, y2: y, class: "grid" }), s("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis-label" }, format(v)));
  }
  buckets.forEach((b, i) => {
    const x = left + i * slot + (slot - colW) / 2;
    let y = top + plotH;
    series.forEach((name, k) => {
      const v = b.parts[name] || 0;
      if (!v) return;
      const hgt = (plotH * v) / max;
      y -= hgt;
      svg.append(s("rect", { x, y, width: colW, height: Math.max(hgt, 1), class: `c${k % PALETTE}` }, s("title", {}, `${b.label} · ${name}: ${format(v)}`)));
    });
    if (buckets.length <= 14 || i % Math.ceil(buckets.length / 14) === 0) {
      svg.append(s("text", { x: x + colW / 2, y: height - 8, "text-anchor": "middle", class: "axis-label" }, b.label));
    }
  });
  const legend = h("div.legend", {}, series.map((name, k) => h("span", {}, s("svg", { width: 12, height: 12 }, s("rect", { width: 12, height: 12, rx: 2, class: `c${k % PALETTE}` })), ` ${name}`)));
  return h("div", {}, svg, legend);
}

/**
 * A small line chart of values over windows: series [{name, values: [number|null]}] sharing the
 * x axis (one point per window, oldest first). A missing value leaves a gap in its line.
 */
export function lineChart(series, { format = (v) => String(v), width = 300, height = 120, label = "chart", min = 0, max: ceiling } = {}) {
  const count = Math.max(0, ...series.map((x) => x.values.length));
  const known = series.flatMap((x) => x.values.filter((v) => v !== null && v !== undefined && Number.isFinite(v)));
  if (!count || !known.length) return h("p.muted", {}, "No data in these windows.");
  const left = 46;
  const right = 8;
  const pad = 8;
  const bottom = 18;
  const hi = ceiling ?? Math.max(...known, min + 1e-9);
  const lo = Math.min(min, ...known);
  const span = hi - lo || 1;
  const plotW = width - left - right;
  const plotH = height - pad - bottom;
  const x = (i) => left + (count === 1 ? plotW / 2 : (plotW * i) / (count - 1));
  const y = (v) => pad + plotH - (plotH * (v - lo)) / span;
  const svg = s("svg", { class: "chart lines", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  for (const v of [lo, hi]) {
    svg.append(s("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid" }),
      s("text", { x: left - 5, y: y(v) + 4, "text-anchor": "end", class: "axis-label" }, format(v)));
  }
  svg.append(s("text", { x: left, y: height - 4, class: "axis-label" }, "oldest"),
    s("text", { x: width - right, y: height - 4, "text-anchor": "end", class: "axis-label" }, "newest"));
  series.forEach((one, k) => {
    let path = "";
    let pen = false;
    one.values.forEach((v, i) => {
      if (v === null || v === undefined || !Number.isFinite(v)) { pen = false; return; }
      path += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = true;
    });
    if (path) svg.append(s("path", { d: path.trim(), class: `line l${k % PALETTE}` }));
    one.values.forEach((v, i) => {
      if (v === null || v === undefined || !Number.isFinite(v)) return;
      svg.append(s("circle", { cx: x(i), cy: y(v), r: 2.5, class: `c${k % PALETTE}` }, s("title", {}, `${one.name}, window ${i + 1}: ${format(v)}`)));
    });
  });
  if (series.length < 2) return svg;
  const legend = h("div.legend", {}, series.map((one, k) => h("span", {}, s("svg", { width: 12, height: 12 }, s("rect", { width: 12, height: 12, rx: 2, class: `c${k % PALETTE}` })), ` ${one.name}`)));
  return h("div", {}, svg, legend);
}
