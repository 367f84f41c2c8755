// Runs: filters (workflow, status, time, text) kept in the URL, live status by polling the page.

import { get, post, canOperate } from "./api.js";
import { h, clear, fmtTime, fmtAgo, fmtDuration, toMs, statusBadge, emptyState } from "./dom.js";
import { jsonEditor } from "./form.js";
import { dialog, flash, liveDot, reportError } from "./ui.js";

const STATUSES = ["pending", "running", "waiting", "succeeded", "failed", "cancelled", "dead"];
const TIMES = [["", "any time"], ["3600", "last hour"], ["86400", "last 24 hours"], ["604800", "last 7 days"], ["2592000", "last 30 days"]];
const REFRESH_MS = 2000;

export async function renderRuns(root, _params, query) {
  const filters = {
    workflow: query.get("workflow") || "",
    status: query.get("status") || "",
    window: query.get("window") || "",
    q: query.get("q") || "",
  };
  const live = liveDot();
  const workflowSelect = h("select#f-workflow", { name: "workflow" }, h("option", { value: "" }, "all workflows"));
  const statusSelect = h("select#f-status", { name: "status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  const windowSelect = h("select#f-window", { name: "window" }, TIMES.map(([v, label]) => h("option", { value: v }, label)));
  const text = h("input#f-q", { type: "search", name: "q", placeholder: "run id, workflow or error text", value: filters.q });
  statusSelect.value = filters.status;
  windowSelect.value = filters.window;

  const form = h("form#run-filters.filters", {},
    h("label", {}, "Workflow", workflowSelect), h("label", {}, "Status", statusSelect),
    h("label", {}, "Started", windowSelect), h("label.grow", {}, "Search", text),
    h("button.btn", { type: "submit" }, "Filter"));
  const apply = () => {
    const q = new URLSearchParams();
    for (const [k, el] of [["workflow", workflowSelect], ["status", statusSelect], ["window", windowSelect], ["q", text]]) {
      if (el.value) q.set(k, el.value);
    }
    const next = `#/runs${q.toString() ? `?${q}` : ""}`;
    if (location.hash !== next) location.hash = next;
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); apply(); });
  for (const el of [workflowSelect, statusSelect, windowSelect]) el.addEventListener("change", apply);

  const body = h("tbody");
  const more = h("button.btn", { type: "button", hidden: true }, "Load more");
  const table = h("table#runs.table", {},
    h("thead", {}, h("tr", {}, ["Run", "Workflow", "Status", "Started", "Duration", "Error"].map((t) => h("th", {}, t)))),
    body);
  const counter = h("span.muted");
  let workflows = [];
  const startButton = canOperate() ? h("button.btn.primary#start-run", { type: "button", onclick: () => startDialog(workflows, filters.workflow) }, "Start a run…") : null;
  root.append(
    h("div.page-head", {}, h("h1", {}, "Runs"), counter, live.el, h("span.spacer"), startButton),
    form,
    h("div.card.flush", {}, table),
    h("div.center", {}, more));

  get("/workflows").then((data) => {
    const items = Array.isArray(data) ? data : data.items || [];
    workflows = items;
    const names = [...new Set(items.map((w) => w.name || w.workflow))].filter(Boolean).sort();
    for (const n of names) workflowSelect.append(h("option", { value: n }, n));
    if (filters.workflow && !names.includes(filters.workflow)) workflowSelect.append(h("option", { value: filters.workflow }, filters.workflow));
    workflowSelect.value = filters.workflow;
  }).catch(() => {
    if (filters.workflow) workflowSelect.append(h("option", { value: filters.workflow }, filters.workflow));
    workflowSelect.value = filters.workflow;
  });

  const apiQuery = () => ({
    workflow: filters.workflow,
    status: filters.status,
    q: filters.q,
    since: filters.window ? Math.floor(Date.now() / 1000 - Number(filters.window)) : "",
    limit: 50,
  });

  let rows = [];
  let cursor = null;
  let extraPages = false;
  const draw = () => {
    clear(body);
    if (!rows.length) {
      body.append(h("tr", {}, h("td", { colSpan: 6 }, emptyState("No runs match these filters."))));
    }
    for (const run of rows) body.append(runRow(run));
    counter.textContent = `${rows.length}${cursor ? "+" : ""} shown`;
    more.hidden = !cursor;
  };
  const load = async () => {
    const page = await get("/runs", apiQuery());
    rows = page.items || [];
    cursor = page.next_cursor || null;
    draw();
  };
  more.addEventListener("click", async () => {
    const page = await get("/runs", { ...apiQuery(), cursor });
    rows = rows.concat(page.items || []);
    cursor = page.next_cursor || null;
    extraPages = true;
    draw();
  });
  await load();
  live.set("live");
  // No stream covers every run: refresh the first page while it is what the reader sees.
  const timer = setInterval(async () => {
    if (extraPages || document.hidden) return;
    try { await load(); live.set("live"); } catch { live.set("reconnecting"); }
  }, REFRESH_MS);
  return () => clearInterval(timer);
}

function runRow(run) {
  const started = toMs(run.created_at);
  const ended = ["succeeded", "failed", "cancelled", "dead"].includes(run.status) ? toMs(run.updated_at) : Date.now();
  const error = run.error && typeof run.error === "object" ? `${run.error.name || run.error.type || ""}: ${run.error.message || ""}` : run.error || "";
  const tr = h("tr.run-row", { dataset: { runId: run.run_id, status: run.status } },
    h("td.mono", {}, h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.run_id.slice(0, 12))),
    h("td", {}, run.workflow, run.version ? h("span.muted.version", { title: `version ${run.version}` }, ` ${run.version.slice(0, 7)}`) : null),
    h("td", {}, statusBadge(run.status)),
    h("td", { title: fmtTime(run.created_at) }, fmtAgo(run.created_at)),
    h("td", {}, started && ended ? fmtDuration(ended - started) : "—"),
    h("td.error-cell", { title: error }, error));
  tr.addEventListener("click", (e) => {
    if (e.target.tagName !== "A") location.hash = `#/runs/${encodeURIComponent(run.run_id)}`;
  });
  return tr;
}

/** Start a run of a registered workflow with an input checked as JSON, and open it. */
function startDialog(workflows, preferred) {
  const names = [...new Set(workflows.map((w) => w.name))].sort();
  if (!names.length) { flash("This server has no workflow to start.", "warn"); return; }
  const choose = h("select#start-workflow", {}, names.map((n) => h("option", { value: n }, n)));
  if (names.includes(preferred)) choose.value = preferred;
  const editor = jsonEditor({}, { id: "start-input", rows: 8 });
  const key = h("input#start-key", { type: "text", placeholder: "optional: the same key never starts a second run" });
  const go = h("button.btn.primary#start-go", { type: "submit" }, "Start");
  const form = h("form.form", {}, h("label", { for: "start-workflow" }, "Workflow"), choose,
    h("label", { for: "start-input" }, "Input (JSON)"), editor.el, h("label", { for: "start-key" }, "Idempotency key"), key, go);
  const close = dialog("Start a run", form, { wide: true });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const read = editor.read();
    if (!read.ok) return;
    const body = { workflow: choose.value, input: read.value };
    if (key.value.trim()) body.idempotency_key = key.value.trim();
    go.disabled = true;
    try {
      const run = await post("/runs", body);
      close();
      location.hash = `#/runs/${encodeURIComponent(run.run_id)}`;
    } catch (err) { reportError(err); } finally { go.disabled = false; }
  });
}
