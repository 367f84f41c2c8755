// A run's timeline: its steps as bars on the run's time axis, with retries, timeouts, fallbacks,
// flags, cache hits, parks and waits on people drawn where they happened.

import { s, h, toMs, fmtDuration, fmtTime } from "./dom.js";

const ROW = 26;
const LABEL = 170;
const AXIS = 24;
const MAX_ROWS = 200;
const FLAGS = 230; // room right of the plot for the longest bar's flags
const RESUMES = /^(run_resumed|run_recovered|step_started|run_(succeeded|failed|cancelled|dead|ended))$/;
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "dead"]);

function eventsOf(run) {
  return (run.events || []).map((e) => ({ ...e, ms: toMs(e.at), data: e.detail && typeof e.detail === "object" ? e.detail : e.data || {} }))
    .filter((e) => e.ms !== null);
}

/** Intervals the run spent parked: [{start, end, reason, human}]. */
export function waits(run, endMs) {
  const out = [];
  let open = null;
  for (const e of eventsOf(run)) {
    if (e.kind === "run_waiting" || e.kind === "run_parked") {
      if (!open) {
        const reason = String(e.data.reason || e.description || "");
        open = { start: e.ms, reason, human: /review|queue:|human/.test(reason) };
      }
    } else if (open && RESUMES.test(e.kind)) {
      out.push({ ...open, end: e.ms });
      open = null;
    }
  }
  if (open) out.push({ ...open, end: endMs });
  return out;
}

function stepFlags(step, events) {
  const meta = step.meta || {};
  const flags = [];
  const attempts = Number(step.attempts || 1);
  if (attempts > 1) flags.push(["retry", `${attempts} attempts`]);
  const errors = [...(meta.attempt_log || []).map((a) => a.error), step.error && (step.error.name || step.error.type)].filter(Boolean);
  if (errors.some((e) => /timeout/i.test(String(e)))) flags.push(["timeout", "timed out"]);
  const fallback = step.fallback || meta.fallback || meta.fallback_reason;
  if (fallback) flags.push(["fallback", `fallback${typeof step.fallback === "string" ? `: ${step.fallback}` : ""}`]);
  if (meta.flag) flags.push(["flag", `flag: ${meta.flag}`]);
  if (meta.cached) flags.push(["cached", "cached"]);
  if (step.status === "skipped") flags.push(["skipped", "skipped"]);
  if (events.some((e) => e.kind.startsWith("review_"))) flags.push(["human", "review"]);
  return flags;
}

/**
 * Draw the timeline of `run` (a RunView). `onSelect(step)` is called when a bar is clicked.
 * Returns an element (an SVG inside a scrolling box, with a legend).
 */
export function timeline(run, { onSelect, width = 960, maxRows = MAX_ROWS, onShowAll } = {}) {
  const recorded = (run.steps || []).filter((st) => toMs(st.started_at) !== null);
  // A map over thousands of items would draw a page-high chart: the first rows, and a way to the rest.
  const steps = recorded.slice(0, maxRows);
  const events = eventsOf(run);
  const created = toMs(run.created_at) ?? Math.min(...steps.map((st) => toMs(st.started_at)));
  const lastKnown = Math.max(created, toMs(run.updated_at) || 0, ...steps.map((st) => toMs(st.finished_at) || 0), ...events.map((e) => e.ms));
  const end = TERMINAL.has(run.status) ? lastKnown : Math.max(lastKnown, Date.now());
  const span = Math.max(end - created, 1);
  const plot = width - LABEL - FLAGS;
  const x = (ms) => LABEL + ((ms - created) / span) * plot;
  const parked = waits(run, end);
  const rows = 1 + steps.length;
  const height = AXIS + rows * ROW + 8;
  const svg = s("svg", { class: "timeline", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": `timeline of run ${run.run_id}` });

  // Axis: five ticks over the run's span.
  for (let i = 0; i <= 4; i++) {
    const t = created + (span * i) / 4;
    const tx = x(t);
    svg.append(s("line", { x1: tx, x2: tx, y1: AXIS - 4, y2: height, class: "grid" }),
      s("text", { x: tx, y: 14, class: "tick", "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, `+${fmtDuration(t - created)}`));
  }

  // The run's own row: its whole span, and the time it spent parked.
  let y = AXIS;
  svg.append(s("text", { x: 4, y: y + 17, class: "row-label strong" }, "run"),
    s("rect", { x: x(created), y: y + 5, width: Math.max(x(end) - x(created), 2), height: ROW - 10, rx: 3, class: `bar run st-${run.status}` },
      s("title", {}, `${run.status}: ${fmtDuration(end - created)}`)));
  for (const w of parked) {
    const cls = w.human ? "park human" : "park";
    svg.append(s("rect", { x: x(w.start), y: y + 3, width: Math.max(x(w.end) - x(w.start), 3), height: ROW - 6, rx: 3, class: cls, "data-kind": w.human ? "human-wait" : "park" },
      s("title", {}, `${w.human ? "waiting for people" : "parked"} (${w.reason || "timer"}) for ${fmtDuration(w.end - w.start)} from ${fmtTime(w.start)}`)));
  }
  y += ROW;

  for (const step of steps) {
    const start = toMs(step.started_at);
    const finish = toMs(step.finished_at) ?? end;
    const mine = events.filter((e) => e.step_key === step.step_key);
    const flags = stepFlags(step, mine);
    const g = s("g", { class: "step-row", "data-step": step.step_key, tabindex: 0, role: "button" });
    const label = step.step_key.length > 24 ? `${step.step_key.slice(0, 23)}…` : step.step_key;
    g.append(s("text", { x: 4, y: y + 17, class: "row-label" }, label));
    const bw = Math.max(x(finish) - x(start), 3);
    g.append(s("rect", { x: x(start), y: y + 5, width: bw, height: ROW - 10, rx: 3, class: `bar st-${step.status}${flags.some(([k]) => k === "fallback") ? " fallback" : ""}` },
      s("title", {}, `${step.step_key}: ${step.status}, ${fmtDuration(finish - start)}${flags.length ? ` — ${flags.map((f) => f[1]).join(", ")}` : ""}`)));
    // Failed attempts as ticks where they happened, or spread over the bar when only counted.
    const failures = mine.filter((e) => /attempt_failed|retried|retry/.test(e.kind));
    const log = (step.meta && step.meta.attempt_log) || [];
    if (failures.length) {
      for (const e of failures) g.append(s("path", { d: `M${x(e.ms) - 4},${y + 3} l8,0 l-4,7 z`, class: "mark retry" }, s("title", {}, `${e.kind}: ${e.description || ""}`)));
    } else if (log.length) {
      log.forEach((a, i) => {
        const tx = x(start) + (bw * (i + 1)) / (log.length + 1);
        g.append(s("path", { d: `M${tx - 4},${y + 3} l8,0 l-4,7 z`, class: "mark retry" }, s("title", {}, `attempt ${a.attempt}: ${a.error} (${fmtDuration(a.ms)})`)));
      });
    }
    for (const e of mine.filter((ev) => ev.kind === "step_fallback")) {
      g.append(s("path", { d: `M${x(e.ms)},${y + 4} l5,9 l-5,9 l-5,-9 z`, class: "mark fallback" }, s("title", {}, `fallback: ${e.description || ""}`)));
    }
    let fx = x(start) + bw + 6;
    for (const [kind, text] of flags) {
      const t = s("text", { x: fx, y: y + 17, class: `flag f-${kind}` }, text);
      g.append(t);
      fx += text.length * 6.2 + 10;
    }
    if (onSelect) {
      g.addEventListener("click", () => onSelect(step));
      g.addEventListener("keydown", (e) => { if (e.key === "Enter") onSelect(step); });
    }
    svg.append(g);
    y += ROW;
  }

  const legend = h("div.legend", {},
    [["st-succeeded", "succeeded"], ["st-failed", "failed"], ["st-skipped", "skipped"], ["fallback", "fallback taken"],
      ["park human", "waiting for people"], ["park", "parked (timer)"], ["retry", "failed attempt"]]
      .map(([cls, text]) => h("span", {}, s("svg", { width: 14, height: 10 }, s("rect", { width: 14, height: 10, rx: 2, class: `bar ${cls}` })), ` ${text}`)));
  if (!steps.length) return h("div", {}, h("p.muted", {}, "No step has run yet."), h("div.scroll", {}, svg), legend);
  const more = recorded.length > steps.length
    ? h("p.muted", {}, `The first ${steps.length} of ${recorded.length} steps. `,
      onShowAll ? h("button.link#timeline-all", { type: "button", onclick: onShowAll }, "Draw them all") : null)
    : null;
  return h("div", {}, h("div.scroll", {}, svg), more, legend);
}
