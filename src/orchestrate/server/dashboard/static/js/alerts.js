// Alerts & quality: the monitors' alerts (firing, acknowledged, resolved) with Acknowledge for
// operators, and a step's health per window of executions as small charts (GET /alerts,
// POST /alerts/<id>/acknowledge, GET /steps/<step>/stats).

import { get, post, canOperate } from "./api.js";
import { h, clear, fmtTime, fmtAgo, emptyState, statusBadge, badge, actionButton } from "./dom.js";
import { lineChart } from "./charts.js";
import { flash, reportError, section } from "./ui.js";

const STATES = [["", "all states"], ["firing", "firing"], ["acknowledged", "acknowledged"], ["resolved", "resolved"]];
const WINDOWS = ["10", "20", "50", "100", "500"];
const WINDOW_COUNT = 12;

const pct = (v) => `${(v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0)}%`;
const ms = (v) => (v >= 1000 ? `${(v / 1000).toFixed(v >= 10_000 ? 0 : 1)} s` : `${Math.round(v)} ms`);
const num = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3));

export async function renderAlerts(root, _params, query) {
  const state = query.get("state") || "";
  const workflow = query.get("workflow") || "";
  const window = WINDOWS.includes(query.get("window")) ? query.get("window") : "100";
  let step = query.get("step") || "";

  const stateSelect = h("select#alert-state", {}, STATES.map(([v, l]) => h("option", { value: v }, l)));
  stateSelect.value = state;
  const wfSelect = h("select#quality-workflow", {}, h("option", { value: "" }, "all workflows"));
  const stepInput = h("input#quality-step", { type: "text", list: "quality-steps", placeholder: "step name", value: step, spellcheck: "false" });
  const steps = h("datalist#quality-steps");
  const winSelect = h("select#quality-window", {}, WINDOWS.map((v) => h("option", { value: v }, `${v} executions`)));
  winSelect.value = window;
  const apply = () => {
    const q = new URLSearchParams();
    if (stateSelect.value) q.set("state", stateSelect.value);
    if (wfSelect.value) q.set("workflow", wfSelect.value);
    if (stepInput.value.trim()) q.set("step", stepInput.value.trim());
    q.set("window", winSelect.value);
    location.hash = `#/alerts?${q}`;
  };
  for (const el of [stateSelect, wfSelect, winSelect, stepInput]) el.addEventListener("change", apply);

  const alertsBox = h("div#alerts-box");
  const qualityTitle = h("h2#quality-title", {}, "Step quality");
  const qualityBox = h("div#quality");
  root.append(
    h("div.page-head", {}, h("h1", {}, "Alerts & quality"),
      h("span.muted", {}, "What the monitors found, and each step's health over its recent executions.")),
    h("div.filters", {}, h("label", {}, "Alerts", stateSelect), h("label", {}, "Workflow", wfSelect),
      h("label", {}, "Step", stepInput, steps), h("label", {}, "Window", winSelect)),
    section("Alerts", alertsBox),
    h("section.card", {}, qualityTitle, qualityBox));

  get("/workflows").then((data) => {
    const list = Array.isArray(data) ? data : data.items || [];
    for (const n of [...new Set(list.map((w) => w.name))].sort()) wfSelect.append(h("option", { value: n }, n));
    wfSelect.value = workflow;
    const names = new Set();
    for (const wf of list) for (const node of (wf.graph && wf.graph.nodes) || []) if (!workflow || wf.name === workflow) names.add(node.id);
    for (const n of [...names].sort()) steps.append(h("option", { value: n }));
  }).catch(() => {});

  let seen = null;
  const loadAlerts = async () => {
    const items = await get("/alerts", { state, workflow, limit: 200 });
    const text = JSON.stringify(items);
    if (text === seen) return items;
    seen = text;
    clear(alertsBox).append(items.length ? alertsTable(items, loadAlerts) : emptyState(state ? `No ${state} alerts.` : "No alerts: the monitors found nothing abnormal."));
    return items;
  };
  const items = await loadAlerts();
  // With no step chosen, show the step of the newest alert that watches one.
  if (!step) step = (items.find((a) => a.step) || {}).step || "";
  if (step) {
    qualityTitle.textContent = `Quality of ${step}`;
    await drawQuality(qualityBox, step, { workflow, window });
  } else {
    qualityBox.append(h("p.muted", {}, "Choose a step to see its latency, error, fallback and escalation rates and its confidence per window."));
  }
  const tick = setInterval(() => { if (!document.hidden) loadAlerts().catch(() => {}); }, 5000);
  return () => clearInterval(tick);
}

function alertsTable(items, reload) {
  const operator = canOperate();
  return h("table.table.compact#alerts", {},
    h("thead", {}, h("tr", {}, ["state", "monitor", "step", "workflow", "reason", "value", "since", "action", ""].map((t, i) => h("th", { class: i === 5 ? "num" : "" }, t)))),
    h("tbody", {}, items.map((a) => h("tr.alert-row", { dataset: { alertId: a.alert_id, state: a.state } },
      h("td", {}, statusBadge(a.state)),
      h("td.mono", { title: a.alert_id }, a.monitor, a.incident > 1 ? h("span.muted", {}, ` #${a.incident}`) : null),
      h("td.mono", {}, a.step ? h("a", { href: `#/alerts?${new URLSearchParams({ step: a.step, workflow: a.workflow })}` }, a.step) : "—"),
      h("td", {}, a.workflow),
      h("td.alert-reason", {}, a.reason),
      h("td.num", {}, a.value === null || a.value === undefined ? "—" : num(a.value)),
      h("td", { title: fmtTime(a.fired_at) }, fmtAgo(a.fired_at),
        a.acked_by ? h("div.muted", { title: fmtTime(a.acked_at) }, `acknowledged by ${a.acked_by}`) : null,
        a.resolved_at ? h("div.muted", { title: fmtTime(a.resolved_at) }, `resolved ${fmtAgo(a.resolved_at)}`) : null),
      h("td", {}, a.action ? badge(a.diverting ? `${a.action} (holding)` : a.action, a.diverting ? "warn" : "") : "—"),
      h("td", {}, operator && !a.acked_by && a.state !== "resolved" ? actionButton("Acknowledge", async () => {
        try {
          const done = await post(`/alerts/${encodeURIComponent(a.alert_id)}/acknowledge`);
          flash(`Alert ${done.monitor} acknowledged${done.action ? `: ${done.step} no longer takes its ${done.action}` : ""}`);
          await reload();
        } catch (err) { reportError(err); }
      }, { cls: "ack" }) : null)))));
}

async function drawQuality(box, step, { workflow, window }) {
  let stats;
  try {
    stats = await get(`/steps/${encodeURIComponent(step)}/stats`, { workflow, window, windows: WINDOW_COUNT });
  } catch (err) {
    box.append(h("div.error-box", {}, err.detail || String(err)));
    return;
  }
  if (!stats.length) {
    box.append(h("p.muted", {}, `No executions of ${step} recorded${workflow ? ` in ${workflow}` : ""}.`));
    return;
  }
  const last = stats[stats.length - 1];
  const total = stats.reduce((n, w) => n + w.executions, 0);
  const pick = (key) => stats.map((w) => w[key]);
  const chart = (id, title, series, options) => h("div", { id }, h("h3", {}, title), lineChart(series, { label: `${step}: ${title}`, width: 380, ...options }));
  box.append(
    h("div.kpis", {},
      kpi(last.latency_p95_ms === null ? "—" : ms(last.latency_p95_ms), "p95 latency, newest window"),
      kpi(pct(last.error_rate), "error rate"),
      kpi(pct(last.fallback_rate), "fallback rate"),
      kpi(pct(last.escalation_rate), "escalation rate"),
      kpi(last.confidence_mean === null ? "—" : last.confidence_mean.toFixed(2), "mean confidence"),
      kpi(String(total), `executions in ${stats.length} window${stats.length === 1 ? "" : "s"} of ${window}`)),
    h("div.quality-charts", {},
      chart("chart-latency", "latency p50 / p95", [{ name: "p50", values: pick("latency_p50_ms") }, { name: "p95", values: pick("latency_p95_ms") }], { format: ms }),
      chart("chart-errors", "error rate", [{ name: "errors", values: pick("error_rate") }], { format: pct, max: 1 }),
      chart("chart-fallbacks", "fallback rate", [{ name: "fallbacks", values: pick("fallback_rate") }], { format: pct, max: 1 }),
      chart("chart-escalations", "escalation rate", [{ name: "escalations", values: pick("escalation_rate") }], { format: pct, max: 1 }),
      chart("chart-confidence", "mean confidence", [{ name: "confidence", values: pick("confidence_mean") }], { format: (v) => v.toFixed(2), max: 1 })));
}

function kpi(value, label) {
  return h("div.kpi", {}, h("div.kpi-value", {}, value), h("div.kpi-label", {}, label));
}
