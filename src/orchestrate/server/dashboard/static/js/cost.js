// Cost: tokens and money per workflow and per model, and over time, from GET /usage.

import { get } from "./api.js";
import { h, append, clear, fmtCost, fmtInt, toMs } from "./dom.js";
import { barChart, stackedColumns } from "./charts.js";
import { section } from "./ui.js";

const WINDOWS = [["86400", "last 24 hours"], ["604800", "last 7 days"], ["2592000", "last 30 days"], ["", "all time"]];

function asRows(value, key) {
  if (!value) return [];
  if (Array.isArray(value)) return value.map((r) => ({ ...r, [key]: r[key] ?? r.name ?? "?" }));
  return Object.entries(value).map(([name, v]) => ({ ...v, [key]: name }));
}

function sum(rows, key, field) {
  const out = new Map();
  for (const r of rows) {
    const k = r[key] ?? "?";
    const acc = out.get(k) || { label: String(k), value: 0, tokens_in: 0, tokens_out: 0, runs: 0 };
    acc.value += Number(r[field] || 0);
    acc.tokens_in += Number(r.tokens_in || 0);
    acc.tokens_out += Number(r.tokens_out || 0);
    acc.runs += Number(r.runs || 0);
    out.set(k, acc);
  }
  return [...out.values()].sort((a, b) => b.value - a.value);
}

/** The usage answer in one shape: rows per workflow, per model, and dated rows. */
export function normalise(data) {
  const items = Array.isArray(data) ? data : data.items || data.rows || [];
  const byWorkflow = data.by_workflow ? asRows(data.by_workflow, "workflow") : items.filter((r) => r.workflow !== undefined);
  const byModel = data.by_model ? asRows(data.by_model, "model") : items.filter((r) => r.model !== undefined);
  const dated = (data.series || data.by_day || data.over_time || items).filter((r) => r.day || r.date || r.bucket || r.at);
  return { byWorkflow, byModel, dated, totals: data.totals || data.total || null };
}

export async function renderCost(root, _params, query) {
  const workflow = query.get("workflow") || "";
  const window = query.get("window") ?? "604800";
  const wfSelect = h("select#cost-workflow", {}, h("option", { value: "" }, "all workflows"));
  const winSelect = h("select#cost-window", {}, WINDOWS.map(([v, l]) => h("option", { value: v }, l)));
  winSelect.value = window;
  const apply = () => {
    const q = new URLSearchParams();
    if (wfSelect.value) q.set("workflow", wfSelect.value);
    q.set("window", winSelect.value);
    location.hash = `#/cost?${q}`;
  };
  wfSelect.addEventListener("change", apply);
  winSelect.addEventListener("change", apply);
  const body = h("div");
  root.append(h("div.page-head", {}, h("h1", {}, "Cost"), h("span.muted", {}, "Tokens and cost of model calls, as the steps recorded them.")),
    h("div.filters", {}, h("label", {}, "Workflow", wfSelect), h("label", {}, "Period", winSelect)), body);
  get("/workflows").then((data) => {
    const names = [...new Set((Array.isArray(data) ? data : data.items || []).map((w) => w.name))].sort();
    for (const n of names) wfSelect.append(h("option", { value: n }, n));
    wfSelect.value = workflow;
  }).catch(() => {});

  const since = window ? (Date.now() / 1000 - Number(window)).toFixed(0) : "";
  const data = await get("/usage", { workflow, since });
  const { byWorkflow, byModel, dated: given, totals } = normalise(data || {});
  const dated = given.length || !window ? given : await daily(workflow, Number(window));
  const wf = sum(byWorkflow, "workflow", "cost");
  const models = sum(byModel, "model", "cost");
  const total = totals || { cost: wf.reduce((a, r) => a + r.value, 0), tokens_in: wf.reduce((a, r) => a + r.tokens_in, 0), tokens_out: wf.reduce((a, r) => a + r.tokens_out, 0) };
  append(clear(body), [
    h("div.kpis.card", {},
      h("div.kpi", {}, h("div.kpi-value#cost-total", {}, fmtCost(total.cost)), h("div.kpi-label", {}, "cost")),
      h("div.kpi", {}, h("div.kpi-value", {}, fmtInt(total.tokens_in)), h("div.kpi-label", {}, "tokens in")),
      h("div.kpi", {}, h("div.kpi-value", {}, fmtInt(total.tokens_out)), h("div.kpi-label", {}, "tokens out"))),
    h("div.two-col", {},
      section("Cost per workflow", h("div#chart-workflows", {}, barChart(wf, { label: "cost per workflow" }))),
      section("Cost per model", h("div#chart-models", {}, barChart(models, { label: "cost per model" })))),
    // Shown when the server's answer has dated rows (by_day / series).
    dated.length ? section("Over time", h("div#chart-time", {}, overTime(dated))) : null,
    section("Tokens per model", tokensTable(models))]);
}

/**
 * Cost per model and day, from the usage of the runs created since each day's start: the
 * usage since day d less the usage since day d+1 is day d's. One request per day of a
 * window of at most a week (the server's answer has no dated rows of its own).
 */
async function daily(workflow, windowSeconds) {
  const days = Math.ceil(windowSeconds / 86400);
  if (days > 7) return [];
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  const starts = [];
  for (let i = days - 1; i >= 0; i--) starts.push(midnight.getTime() - i * 86400_000);
  const answers = await Promise.all(starts.map((ms) => get("/usage", { workflow, since: Math.floor(ms / 1000) })));
  const rows = [];
  starts.forEach((ms, i) => {
    const day = localDay(ms);
    rows.push({ day, at: ms / 1000, cost: 0 }); // every day has a column
    const here = answers[i].by_model || {};
    const next = i + 1 < answers.length ? answers[i + 1].by_model || {} : {};
    for (const [model, v] of Object.entries(here)) {
      const cost = Number(v.cost || 0) - Number((next[model] || {}).cost || 0);
      if (cost > 1e-12) rows.push({ day, at: ms / 1000, model, cost });
    }
  });
  return rows;
}

function localDay(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function overTime(rows) {
  const buckets = new Map();
  for (const r of rows) {
    const raw = r.day || r.date || r.bucket || r.at;
    const ms = toMs(raw);
    const label = typeof raw === "string" && !/^\d+(\.\d+)?$/.test(raw) ? raw.slice(5, 10) || raw : ms ? new Date(ms).toISOString().slice(5, 10) : String(raw);
    const b = buckets.get(label) || { label, sort: ms ?? 0, parts: {} };
    buckets.set(label, b);
    if (!Number(r.cost)) continue;
    const series = r.model || r.workflow || "cost";
    b.parts[series] = (b.parts[series] || 0) + Number(r.cost);
  }
  return stackedColumns([...buckets.values()].sort((a, b) => a.sort - b.sort), { label: "cost over time", width: 1240 });
}

function tokensTable(models) {
  if (!models.length) return h("p.muted", {}, "No model calls in this period.");
  return h("table.table.compact", {}, h("thead", {}, h("tr", {}, ["model", "tokens in", "tokens out", "cost"].map((t, i) => h("th", { class: i ? "num" : "" }, t)))),
    h("tbody", {}, models.map((m) => h("tr", {}, h("td.mono", {}, m.label), h("td.num", {}, fmtInt(m.tokens_in)), h("td.num", {}, fmtInt(m.tokens_out)), h("td.num", {}, fmtCost(m.value))))));
}
