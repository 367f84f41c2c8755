// One run: summary, actions, timeline, graph, steps (inputs and outputs as the API gives them,
// already redacted), history and model usage; live through the run's event stream.

import { get, post, subscribe, canOperate } from "./api.js";
import { h, clear, fmtTime, fmtDuration, fmtCost, fmtInt, toMs, jsonBlock, statusBadge, badge, actionButton } from "./dom.js";
import { timeline } from "./timeline.js";
import { drawGraph } from "./graph.js";
import { jsonEditor } from "./form.js";
import { feedbackSection } from "./feedback.js";
import { dialog, flash, reportError, liveDot, section } from "./ui.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "dead"]);

export async function renderRun(root, [runId]) {
  const live = liveDot();
  let run = await get(`/runs/${encodeURIComponent(runId)}`);
  let selected = null;
  let seen = JSON.stringify(run);
  let timelineBox = null;
  let allRows = false;
  const drawTimeline = () => {
    const width = Math.max(720, (root.clientWidth || 1200) - 36);
    const onShowAll = () => { allRows = true; drawTimeline(); };
    clear(timelineBox).append(timeline(run, { onSelect: (st) => select(st.step_key), width, maxRows: allRows ? Infinity : undefined, onShowAll }));
  };
  const body = h("div.run-page");
  root.append(body);
  const feedback = feedbackSection(runId); // one element, moved into each redraw

  const draw = () => {
    clear(body);
    body.append(header(run, live), actions(run, reload));
    timelineBox = h("div#timeline");
    drawTimeline();
    body.append(section("Timeline", timelineBox));
    const statusOf = (id) => {
      const st = (run.steps || []).filter((x) => x.name === id || x.step_key === id).pop();
      return st ? st.status : null;
    };
    body.append(section("Graph", drawGraph(run.graph, { statusOf, onSelect: (id) => select(id) })));
    body.append(section("Steps", steps(run, selected, select)));
    if ((run.reviews || []).length) body.append(section("Reviews", runReviews(run)));
    body.append(h("div.three-col", {}, section("Input", jsonBlock(run.input)), section(run.error_info || run.error ? "Error" : "Output",
      run.error_info || run.error ? errorBlock(run.error_info || run.error, tracebackOf(run)) : jsonBlock(run.output)), usage(run)));
    body.append(feedback);
    body.append(section("History", history(run)));
  };
  const select = (key) => {
    selected = key;
    draw();
    const row = body.querySelector(`[data-step-detail="${CSS.escape(key)}"]`) || body.querySelector(`[data-step-row="${CSS.escape(key)}"]`);
    if (row) row.scrollIntoView({ block: "center" });
  };
  // Events come in bursts (a step, its record, the run's status): read the run at the first,
  // and once more after the read in flight for those that came meanwhile.
  let reading = false;
  let again = false;
  async function refresh() {
    if (reading) { again = true; return; }
    reading = true;
    try {
      do { again = false; await reload(); } while (again);
    } finally { reading = false; }
  }
  async function reload() {
    try {
      const next = await get(`/runs/${encodeURIComponent(runId)}`);
      const text = JSON.stringify(next);
      // Nothing new: only the clock moved, so only the timeline is drawn again (a redraw
      // of the page would close what the reader opened and move what they point at).
      if (text === seen) { drawTimeline(); return; }
      run = next;
      seen = text;
      if (TERMINAL.has(run.status)) { stop(); live.set("ended"); }
      draw();
    } catch (err) {
      reportError(err);
    }
  }
  draw();
  // An ended run changes no more (a retry or a replay is a new run): no stream for it.
  let stop = () => {};
  const follow = () => {
    if (TERMINAL.has(run.status)) { live.set("ended"); return; }
    stop = subscribe(`/events/runs/${encodeURIComponent(runId)}`, (event) => {
      // The event says the run's status: show it at once, then read the rest.
      const status = event.data && event.data.status;
      const badgeBox = body.querySelector("#run-status");
      if (status && badgeBox && status !== run.status) clear(badgeBox).append(statusBadge(status));
      refresh();
    }, { onState: live.set });
  };
  follow();
  // A run still going: its clock moves on its own, and a kind of event this page does not
  // know by name would not reach it, so read it again now and then.
  const tick = setInterval(() => { if (!TERMINAL.has(run.status) && !document.hidden) refresh(); }, 5000);
  return () => { stop(); clearInterval(tick); };
}

function header(run, live) {
  const started = toMs(run.created_at);
  const ended = TERMINAL.has(run.status) ? toMs(run.updated_at) : Date.now();
  return h("div.page-head.run-head", {},
    h("div", {},
      h("div.crumbs", {}, h("a", { href: "#/runs" }, "Runs"), " / ", h("a", { href: `#/runs?workflow=${encodeURIComponent(run.workflow)}` }, run.workflow)),
      h("h1.mono", {}, run.run_id)),
    h("div.facts", {},
      h("span#run-status", {}, statusBadge(run.status)),
      h("span", { title: `version ${run.version}` }, `${run.workflow} @ ${String(run.version).slice(0, 12)}`),
      h("span", { title: fmtTime(run.created_at) }, `started ${fmtTime(run.created_at)}`),
      h("span", {}, `took ${started && ended ? fmtDuration(ended - started) : "—"}`),
      run.queue && run.queue !== "default" ? h("span", {}, `queue ${run.queue}`) : null,
      run.wait_reason && run.status === "waiting" ? badge(`waiting on ${run.wait_reason}`, "wait") : null,
      run.parent_run_id ? h("span", {}, "replay of ", h("a.mono", { href: `#/runs/${encodeURIComponent(run.parent_run_id)}` }, run.parent_run_id.slice(0, 12))) : null,
      live.el));
}

function actions(run, reload) {
  if (!canOperate()) return h("div.actions.muted", {}, "Read-only: your roles do not allow actions on runs.");
  const id = encodeURIComponent(run.run_id);
  const done = (label) => async (answer) => {
    flash(`${label}: ${answer && answer.run_id ? answer.run_id : run.run_id}`);
    if (answer && answer.run_id && answer.run_id !== run.run_id) location.hash = `#/runs/${encodeURIComponent(answer.run_id)}`;
    else await reload();
  };
  const bar = h("div.actions");
  if (!TERMINAL.has(run.status)) {
    bar.append(actionButton("Cancel", async () => {
      const reason = h("input#cancel-reason", { type: "text", placeholder: "why (recorded in the history)" });
      const confirm = h("button.btn.danger", { type: "button" }, "Cancel the run");
      const close = dialog("Cancel this run?", h("div.form", {}, h("label", { for: "cancel-reason" }, "Reason"), reason, confirm));
      confirm.addEventListener("click", async () => {
        try { await done("Cancelled")(await post(`/runs/${id}/cancel`, reason.value ? { reason: reason.value } : {})); close(); } catch (err) { reportError(err); }
      });
    }, { cls: "danger" }));
  }
  const waitingOn = run.status === "waiting" && /^signal:/.test(run.wait_reason || "") ? run.wait_reason.slice("signal:".length) : null;
  if (waitingOn && !/^(review|queue):/.test(waitingOn)) bar.append(actionButton("Send signal…", async () => signalDialog(run, waitingOn, done("Signalled")), { cls: "primary" }));
  if (run.status === "waiting") bar.append(actionButton("Resume now", async () => { try { await done("Resumed")(await post(`/runs/${id}/resume`)); } catch (err) { reportError(err); } }));
  if (["failed", "dead", "cancelled"].includes(run.status)) {
    bar.append(actionButton("Retry", async () => { try { await done("Retried")(await post(`/runs/${id}/retry`)); } catch (err) { reportError(err); } }));
  }
  if (TERMINAL.has(run.status)) bar.append(actionButton("Replay from a step…", async () => replayDialog(run, `/runs/${id}/replay`, done("Replayed")), { cls: "primary" }));
  return bar;
}

/** Deliver the signal a run waits for (``ctx.wait(key)``) with a JSON value. */
function signalDialog(run, key, after) {
  const keyInput = h("input#signal-key", { type: "text", value: key });
  const editor = jsonEditor(null, { id: "signal-value", rows: 6 });
  const go = h("button.btn.primary#signal-go", { type: "submit" }, "Send");
  const form = h("form.form", {}, h("p.muted", {}, "The run waits for this signal; its value (JSON) is what the wait returns. A signal is delivered once."),
    h("label", { for: "signal-key" }, "Key"), keyInput, h("label", { for: "signal-value" }, "Value (JSON)"), editor.el, go);
  const close = dialog("Send a signal", form, { wide: true });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const read = editor.read();
    if (!read.ok) return;
    go.disabled = true;
    try { await after(await post(`/runs/${encodeURIComponent(run.run_id)}/signals`, { key: keyInput.value, value: read.value })); close(); } catch (err) { reportError(err); } finally { go.disabled = false; }
  });
}

/** Pick the step to replay from and edit the input it will get; `url` is the replay route. */
export function replayDialog(run, url, after) {
  const stepKeys = [...new Set((run.steps || []).map((st) => st.step_key))];
  const choose = h("select#replay-step", {}, h("option", { value: "" }, "the start (a new run with the same input)"),
    stepKeys.map((k) => h("option", { value: k }, k)));
  const failed = (run.steps || []).find((st) => st.status === "failed");
  if (failed) choose.value = failed.step_key;
  const editInput = h("input#replay-edit", { type: "checkbox" });
  const editor = jsonEditor(run.input, { id: "replay-input", rows: 10 });
  editor.el.hidden = true;
  editInput.addEventListener("change", () => { editor.el.hidden = !editInput.checked; if (editInput.checked) editor.focus(); });
  const go = h("button.btn.primary#replay-go", { type: "button" }, "Replay");
  const close = dialog("Replay", h("div.form", {},
    h("p.muted", {}, "Steps recorded before the chosen one are reused; the chosen step and everything after it run again in a new run."),
    h("label", { for: "replay-step" }, "From step"), choose,
    h("label.inline", {}, editInput, " Change the run's input"), editor.el, go), { wide: true });
  go.addEventListener("click", async () => {
    const body = {};
    if (choose.value) body.from_step = choose.value;
    if (editInput.checked) {
      const read = editor.read();
      if (!read.ok) return;
      body.input = read.value;
    }
    go.disabled = true;
    try { await after(await post(url, body)); close(); } catch (err) { reportError(err); } finally { go.disabled = false; }
  });
}

function usage(run) {
  const u = run.usage || {};
  const models = Object.entries(u.by_model || {});
  return section("Model usage and cost",
    h("div.kpis", {},
      kpi("tokens in", fmtInt(u.tokens_in)), kpi("tokens out", fmtInt(u.tokens_out)), kpi("cost", fmtCost(u.cost))),
    models.length
      ? h("table.table.compact", {}, h("thead", {}, h("tr", {}, ["model", "tokens in", "tokens out", "cost"].map((t, i) => h("th", { class: i ? "num" : "" }, t)))),
        h("tbody", {}, models.map(([m, v]) => h("tr", {}, h("td.mono", {}, m), h("td.num", {}, fmtInt(v.tokens_in)), h("td.num", {}, fmtInt(v.tokens_out)), h("td.num", {}, fmtCost(v.cost))))))
      : h("p.muted", {}, "No model calls recorded."));
}

function kpi(label, value) {
  return h("div.kpi", {}, h("div.kpi-value", {}, value), h("div.kpi-label", {}, label));
}

/** The traceback of a run's error: the run's own, else the failed step's (where it is kept). */
export function tracebackOf(run) {
  const own = (run.error_info || run.error || {}).traceback;
  if (own) return own;
  const failed = (run.steps || []).filter((st) => st.status === "failed" && st.error && st.error.traceback).pop();
  return failed ? failed.error.traceback : null;
}

function errorBlock(info, traceback = null) {
  if (!info || typeof info !== "object") return jsonBlock(info);
  return h("div.error-detail", {},
    h("p", {}, h("strong", {}, info.name || info.type || "Error"), info.step ? ` in step ${info.step}` : "", ": ", info.message || ""),
    info.traceback || traceback ? tracebackDetails(info.traceback || traceback) : null);
}

/** A folded traceback that opens on its innermost frames, where the error was raised. */
function tracebackDetails(text) {
  const pre = h("pre.traceback", {}, text);
  const box = h("details", {}, h("summary", {}, "Traceback"), pre);
  box.addEventListener("toggle", () => { if (box.open) pre.scrollTop = pre.scrollHeight; });
  return box;
}

function stepMeta(step) {
  const meta = step.meta || {};
  const model = meta.model && typeof meta.model === "object" ? meta.model : null;
  const bits = [];
  if (model) bits.push(badge(`${model.model || model.name || "model"}${model.cost ? ` ${fmtCost(model.cost)}` : ""}`, "model"));
  else if (typeof meta.model === "string") bits.push(badge(meta.model, "model"));
  const conf = meta.confidence ?? (model && model.confidence);
  if (conf !== undefined && conf !== null) bits.push(badge(`confidence ${Number(conf).toFixed(2)}`, Number(conf) >= 0.8 ? "ok" : Number(conf) >= 0.5 ? "warn" : "bad"));
  if (Number(step.attempts) > 1) bits.push(badge(`${step.attempts} attempts`, "warn"));
  if (step.fallback || meta.fallback_reason) bits.push(badge(`fallback ${step.fallback || ""}`.trim(), "fallback"));
  if (meta.flag) bits.push(badge(`flag ${meta.flag}`, "flag"));
  if (meta.cached) bits.push(badge("cached", "ok"));
  return bits;
}

function steps(run, selected, select) {
  const list = run.steps || [];
  if (!list.length) return h("p.muted", {}, "No step recorded yet.");
  const rows = [];
  for (const st of list) {
    const start = toMs(st.started_at);
    const end = toMs(st.finished_at);
    const open = selected === st.step_key || selected === st.name;
    rows.push(h("tr.step-row", { class: ["step-row", open && "selected"], dataset: { stepRow: st.step_key }, onclick: () => select(open ? null : st.step_key) },
      h("td.mono", {}, st.step_key), h("td", {}, statusBadge(st.status)), h("td", {}, start && end ? fmtDuration(end - start) : "—"),
      h("td", {}, stepMeta(st))));
    if (open) {
      const meta = { ...(st.meta || {}) };
      rows.push(h("tr.step-detail", { dataset: { stepDetail: st.step_key } }, h("td", { colSpan: 4 },
        h("div.three-col", {},
          h("div", {}, h("h3", {}, st.error ? "Error" : "Output"), st.error ? errorBlock(st.error) : jsonBlock(st.output)),
          h("div", {}, h("h3", {}, "Attempts"), attemptsView(st)),
          h("div", {}, h("h3", {}, "Metadata"), jsonBlock(meta))))));
    }
  }
  return h("table.table#steps", {}, h("thead", {}, h("tr", {}, ["step", "status", "took", ""].map((t) => h("th", {}, t)))), h("tbody", {}, rows));
}

function attemptsView(st) {
  const log = (st.meta && st.meta.attempt_log) || [];
  if (!log.length) return h("p.muted", {}, `${st.attempts || 1} attempt${Number(st.attempts) > 1 ? "s" : ""}`);
  return h("ol.attempts", {}, log.map((a) => h("li", {}, `attempt ${a.attempt}: ${a.error || "ok"}${a.ms !== undefined ? ` after ${fmtDuration(a.ms)}` : ""}`)));
}

function history(run) {
  const events = run.events || [];
  if (!events.length) return h("p.muted", {}, "No history.");
  const t0 = toMs(run.created_at);
  return h("table.table.compact#history", {}, h("thead", {}, h("tr", {}, ["time", "+", "event", "step", "what"].map((t) => h("th", {}, t)))),
    h("tbody", {}, events.map((e) => h("tr", { dataset: { kind: e.kind } },
      h("td.nowrap", {}, fmtTime(e.at)), h("td.num", {}, t0 ? fmtDuration(toMs(e.at) - t0) : ""),
      h("td", {}, h("span", { class: ["kind", `k-${String(e.kind).split("_")[0]}`] }, e.kind)), h("td.mono", {}, e.step_key || ""),
      h("td", {}, e.description || (e.detail && Object.keys(e.detail).length ? JSON.stringify(e.detail) : ""))))));
}

function runReviews(run) {
  return h("table.table.compact#run-reviews", {}, h("thead", {}, h("tr", {}, ["item", "gate", "status", "priority", "roles", "decided"].map((t) => h("th", {}, t)))),
    h("tbody", {}, run.reviews.map((r) => h("tr", {},
      h("td.mono", {}, h("a", { href: `#/reviews/${encodeURIComponent(r.review_id)}?status=all` }, r.review_id)),
      h("td", {}, r.gate), h("td", {}, statusBadge(r.status)), h("td", {}, badge(r.priority, `p-${r.priority}`)),
      h("td", {}, (r.roles || []).join(", ") || "anyone"),
      h("td", {}, r.decision ? `${r.decision} by ${r.decided_by || "?"}${r.reason ? ` — ${r.reason}` : ""}` : "—")))));
}
