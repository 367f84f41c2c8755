// Simple SVG charts drawn here: horizontal bars and a stacked column series over time.

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
