// The review inbox: items by priority with SLA clocks counting down, what the model produced and
// its confidence, approve / reject with a reason / edit with a validated form and its diff, who
// else must approve, escalations; keyboard shortcuts; live through the inbox's event stream.

import { get, post, canDecide, currentSession } from "./api.js";
import { h, clear, fmtTime, fmtAgo, fmtDuration, toMs, jsonBlock, badge, statusBadge, emptyState } from "./dom.js";
import { schemaForm, diff, diffView } from "./form.js";
import { dialog, flash, reportError, liveDot, reviewStream } from "./ui.js";

const PRIORITY = { urgent: 0, high: 1, normal: 2, low: 3 };
const SHORTCUTS = [["j / ↓", "next item"], ["k / ↑", "previous item"], ["a", "approve"], ["r", "reject (asks for a reason)"],
  ["e", "edit the payload, then approve"], ["c", "claim"], ["o", "open the run"], ["?", "this help"], ["Esc", "close a dialog"]];

export function order(items) {
  return [...items].sort((a, b) => (PRIORITY[a.priority] ?? 2) - (PRIORITY[b.priority] ?? 2)
    || (toMs(a.due_at) ?? Infinity) - (toMs(b.due_at) ?? Infinity)
    || (toMs(a.created_at) ?? 0) - (toMs(b.created_at) ?? 0));
}

/** Roles (or the number of people) still needed before the item is approved. */
export function stillNeeded(item) {
  const approvals = item.approvals || [];
  const req = item.required_roles && item.required_roles.length ? item.required_roles
    : Array.isArray(item.required_approvals) ? item.required_approvals : [];
  const have = new Set(approvals.map((a) => a.role));
  const roles = req.filter((r) => !have.has(r));
  const count = typeof item.required_approvals === "number" ? item.required_approvals : item.min_approvals || 1;
  const people = Math.max(0, count - approvals.length);
  return { roles, people };
}

export function slaClock(item) {
  const el = h("span.sla", { dataset: { due: toMs(item.due_at) ?? "", created: toMs(item.created_at) ?? "" } });
  updateClock(el);
  return el;
}

function updateClock(el) {
  const due = Number(el.dataset.due) || null;
  if (!due) { el.textContent = "no SLA"; el.className = "sla none"; return; }
  const left = due - Date.now();
  const created = Number(el.dataset.created) || due - 3600_000;
  const fraction = left / Math.max(due - created, 1);
  el.textContent = left >= 0 ? `${fmtDuration(left)} left` : `overdue ${fmtDuration(-left)}`;
  el.className = `sla ${left < 0 ? "over" : fraction < 0.25 ? "soon" : "ok"}`;
  el.title = `due ${fmtTime(due)}`;
}

function confidenceView(conf) {
  if (conf === undefined || conf === null) return null;
  const v = Math.max(0, Math.min(1, Number(conf)));
  const tier = v >= 0.8 ? "ok" : v >= 0.5 ? "warn" : "bad";
  const fill = h("span.meter-fill", { class: ["meter-fill", `m-${tier}`] });
  fill.style.width = `${Math.round(v * 100)}%`;
  return h("span.confidence", { title: `model confidence ${v.toFixed(2)}` }, h("span.meter", {}, fill), ` ${v.toFixed(2)}`);
}

export async function renderReviews(root, [selectedId], query) {
  const status = query.get("status") || "pending";
  const live = liveDot();
  const mineOnly = query.get("mine") === "1";
  const mineQuery = mineOnly ? "&mine=1" : "";
  const mineBox = h("input#mine-only", { type: "checkbox", checked: mineOnly });
  mineBox.addEventListener("change", () => { location.hash = `#/reviews?status=${status}${mineBox.checked ? "&mine=1" : ""}`; });
  const filters = h("div.tabs", {}, ["pending", "approved", "rejected", "escalated", "expired", "all"].map((s) =>
    h("a", { href: `#/reviews?status=${s}${mineQuery}`, class: ["tab", s === status && "active"] }, s)),
  h("span.spacer"), h("label.inline.mine", {}, mineBox, " only items I may decide"));
  const list = h("ol#inbox.inbox-list", { "aria-label": "review items" });
  const detail = h("div#review-detail.review-detail.card");
  root.append(
    h("div.page-head", {}, h("h1", {}, "Review inbox"), live.el, h("button.link#help-button", { type: "button", onclick: () => help() }, "Keyboard: ?")),
    filters,
    h("div.inbox", {}, h("div.card.flush.inbox-col", {}, list), detail));

  let items = [];
  let current = selectedId || null;

  const load = async () => {
    const page = await get("/reviews", { status: status === "all" ? "all" : status, limit: 200 });
    items = order((page.items || []).filter((i) => !mineOnly || canDecide(i)));
    if (!items.some((i) => i.review_id === current)) current = items.length ? items[0].review_id : null;
    drawList();
    await drawDetail();
  };

  const drawList = () => {
    clear(list);
    if (!items.length) list.append(h("li", {}, emptyState(status === "pending" ? "Nothing waits for a decision. New items appear here as they arrive." : "No items.")));
    for (const item of items) {
      const need = stillNeeded(item);
      const li = h("li.inbox-item", {
        class: ["inbox-item", item.review_id === current && "selected", `p-${item.priority}`],
        dataset: { reviewId: item.review_id, level: item.level || 0 }, tabindex: 0,
        onclick: () => { current = item.review_id; drawList(); drawDetail(); },
      },
      h("div.row", {}, badge(item.priority, `p-${item.priority}`), h("strong", {}, item.workflow), h("span.muted", {}, ` · ${item.gate || item.step_key || ""}`),
        h("span.spacer"), item.status === "pending" ? slaClock(item) : statusBadge(item.status)),
      h("div.row.small", {},
        confidenceView(item.confidence),
        item.escalated || item.level > 0 ? badge(`escalated${item.level ? ` ×${item.level}` : ""}`, "bad") : null,
        (item.roles || []).length ? h("span.muted", {}, (item.roles || []).join(", ")) : h("span.muted", {}, "anyone"),
        item.claimed_by ? h("span.muted", {}, ` · claimed by ${item.claimed_by}`) : null,
        need.roles.length && item.status === "pending" ? h("span.muted", {}, ` · needs ${need.roles.join(" + ")}`) : null,
        h("span.spacer"), h("span.muted", { title: fmtTime(item.created_at) }, fmtAgo(item.created_at))));
      list.append(li);
    }
  };

  const selectedItem = () => items.find((i) => i.review_id === current) || null;

  const drawDetail = async () => {
    clear(detail);
    const summary = selectedItem();
    if (!summary) { detail.append(emptyState("Select an item.")); return; }
    let item = summary;
    try { item = await get(`/reviews/${encodeURIComponent(summary.review_id)}`); } catch { /* the summary will do */ }
    if (item.review_id !== current) return;
    const need = stillNeeded(item);
    const approvals = item.approvals || [];
    const mine = canDecide(item) && item.status === "pending";
    detail.append(
      h("div.detail-head", {},
        h("div", {}, h("h2", {}, `${item.workflow} · ${item.gate || item.step_key || "review"}`),
          h("div.muted.mono", {}, item.review_id, " · run ", h("a", { href: `#/runs/${encodeURIComponent(item.run_id)}` }, item.run_id.slice(0, 12)))),
        h("div.right", {}, badge(item.priority, `p-${item.priority}`), " ", item.status === "pending" ? slaClock(item) : statusBadge(item.status))),
      h("dl.facts-grid", {},
        h("dt", {}, "Confidence"), h("dd", {}, confidenceView(item.confidence) || h("span.muted", {}, "not given")),
        h("dt", {}, "Who may decide"), h("dd", {}, (item.roles || []).length ? item.roles.join(", ") : "anyone"),
        h("dt", {}, "Still needed"), h("dd#still-needed", {}, item.status !== "pending" ? "—"
          : need.roles.length ? `approval of ${need.roles.join(" and ")}`
            : need.people > 1 ? `${need.people} more approvals, from different people`
              : `one decision${(item.roles || []).length ? ` by ${item.roles.join(" or ")}` : ""}`),
        h("dt", {}, "Approvals"), h("dd#approvals", {}, approvals.length ? approvals.map((a) => h("div", {}, `${a.by} (${a.role || "no role"}) ${a.outcome || "approved"} ${fmtAgo(a.at)}${a.comment ? ` — “${a.comment}”` : ""}`)) : "none yet"),
        item.claimed_by ? h("dt", {}, "Claimed by") : null, item.claimed_by ? h("dd", {}, item.claimed_by) : null,
        h("dt", {}, "Created"), h("dd", {}, fmtTime(item.created_at)),
        item.due_at ? h("dt", {}, "Due") : null, item.due_at ? h("dd", {}, fmtTime(item.due_at)) : null,
        item.escalated || item.level > 0 || item.parent_id ? h("dt", {}, "Escalation") : null,
        item.escalated || item.level > 0 || item.parent_id ? h("dd", {}, `level ${item.level ?? "?"}${item.parent_id ? ` (from ${item.parent_id})` : ""}${item.escalated_to ? ` → ${item.escalated_to}` : ""}`) : null,
        item.decision || item.decided_by ? h("dt", {}, "Decision") : null,
        item.decision || item.decided_by ? h("dd#decision", {}, decisionText(item)) : null),
      h("h3", {}, item.reviews === "input" ? "What the step will act on" : "What the model produced"),
      jsonBlock(item.payload, "json payload"),
      runContext(item));
    if (item.status === "pending") {
      if (mine) {
        detail.append(h("div.actions.sticky", {},
          h("button.btn.ok#approve", { type: "button", onclick: () => approve(item) }, "Approve ", h("kbd", {}, "a")),
          h("button.btn.danger#reject", { type: "button", onclick: () => reject(item) }, "Reject ", h("kbd", {}, "r")),
          item.allow_edit === false ? null : h("button.btn#edit", { type: "button", onclick: () => edit(item) }, "Edit ", h("kbd", {}, "e")),
          h("button.btn.link#claim", { type: "button", onclick: () => claim(item) }, "Claim ", h("kbd", {}, "c"))));
      } else {
        const who = currentSession();
        detail.append(h("p.muted.actions", {}, `Your roles (${((who && who.roles) || []).join(", ") || "none"}) cannot decide this item.`));
      }
    }
  };

  const after = (verb) => async (answer) => {
    flash(`${verb} ${answer && answer.review_id ? answer.review_id : ""}${answer && answer.status === "pending" ? " — more approvals needed" : ""}`);
    await load();
  };
  const approve = (item) => {
    const comment = h("input#approve-comment", { type: "text", placeholder: "optional" });
    const go = h("button.btn.ok.primary#approve-go", { type: "submit" }, "Approve");
    const form = h("form.form", {}, h("p", {}, `Approve ${item.workflow} · ${item.gate || ""} as it is.`), h("label", { for: "approve-comment" }, "Comment"), comment, go);
    const close = dialog("Approve", form);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      go.disabled = true;
      try { await after("Approved")(await post(`/reviews/${encodeURIComponent(item.review_id)}/approve`, comment.value ? { comment: comment.value } : {})); close(); } catch (err) { reportError(err); } finally { go.disabled = false; }
    });
  };
  const reject = (item) => {
    const reason = h("textarea#reject-reason", { rows: 3, "aria-required": "true", placeholder: "what is wrong (recorded, and given to the run)" });
    const go = h("button.btn.danger.primary#reject-go", { type: "submit" }, "Reject");
    const err = h("p.form-error", { role: "alert" });
    const form = h("form.form", {}, h("label", { for: "reject-reason" }, "Reason (required)"), reason, err, go);
    const close = dialog("Reject", form);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!reason.value.trim()) { err.textContent = "A rejection needs a reason."; reason.focus(); return; }
      go.disabled = true;
      try { await after("Rejected")(await post(`/reviews/${encodeURIComponent(item.review_id)}/reject`, { reason: reason.value.trim() })); close(); } catch (e2) { reportError(e2); } finally { go.disabled = false; }
    });
  };
  const edit = (item) => {
    const editor = schemaForm(item.schema, item.payload);
    const changes = h("div#edit-diff");
    const refresh = () => {
      const read = editor.read();
      clear(changes).append(read.ok ? diffView(diff(item.payload, read.value)) : h("p.muted", {}, "Fix the fields above to see the change."));
      return read;
    };
    const comment = h("input#edit-comment", { type: "text", placeholder: "optional" });
    const go = h("button.btn.ok.primary#edit-go", { type: "submit" }, "Save edit and approve");
    const form = h("form.form", {}, h("p.muted", {}, item.schema ? "The form follows the payload's schema; it is checked before it is sent." : "No schema: edit the JSON; it is checked before it is sent."),
      editor.el, h("h3", {}, "Change"), changes, h("label", { for: "edit-comment" }, "Comment"), comment, go);
    form.addEventListener("input", () => { clearTimeout(refresh.t); refresh.t = setTimeout(refresh, 150); });
    form.addEventListener("change", refresh);
    const close = dialog("Edit and approve", form, { wide: true });
    refresh();
    editor.focus();
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const read = refresh();
      if (!read.ok) return;
      go.disabled = true;
      const body = { payload: read.value };
      if (comment.value) body.comment = comment.value;
      try { await after("Edited and approved")(await post(`/reviews/${encodeURIComponent(item.review_id)}/edit`, body)); close(); } catch (err) { reportError(err); } finally { go.disabled = false; }
    });
  };
  const claim = async (item) => {
    try { await post(`/reviews/${encodeURIComponent(item.review_id)}/claim`); flash(`Claimed ${item.review_id}`); await load(); } catch (err) { reportError(err); }
  };
  const help = () => dialog("Keyboard shortcuts", h("table.table.compact#shortcuts", {}, h("tbody", {}, SHORTCUTS.map(([k, what]) => h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, what))))));

  const move = (delta) => {
    if (!items.length) return;
    const i = Math.max(0, items.findIndex((x) => x.review_id === current));
    current = items[Math.min(items.length - 1, Math.max(0, i + delta))].review_id;
    drawList();
    drawDetail();
    const el = list.querySelector(`[data-review-id="${CSS.escape(current)}"]`);
    if (el) el.scrollIntoView({ block: "nearest" });
  };
  const onKey = (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (document.querySelector(".backdrop")) return;
    const tag = (e.target && e.target.tagName) || "";
    if (["INPUT", "TEXTAREA", "SELECT"].includes(tag)) return;
    const item = selectedItem();
    const pendingMine = item && item.status === "pending" && canDecide(item);
    const keys = {
      j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
      "?": help,
      a: () => pendingMine && approve(item), r: () => pendingMine && reject(item),
      e: () => pendingMine && item.allow_edit !== false && edit(item), c: () => pendingMine && claim(item),
      o: () => item && (location.hash = `#/runs/${encodeURIComponent(item.run_id)}`),
    };
    const act = keys[e.key];
    if (act) { e.preventDefault(); act(); }
  };
  document.addEventListener("keydown", onKey);

  await load();
  // Read the inbox at the first event of a burst, and once more for those that came meanwhile.
  let reading = false;
  let again = false;
  const refresh = async () => {
    if (reading) { again = true; return; }
    reading = true;
    try {
      do { again = false; await load(); } while (again);
    } catch (err) { reportError(err); } finally { reading = false; }
  };
  const onEvent = (e) => {
    const event = e.detail || {};
    const kind = (event.data && (event.data.kind || event.data.event)) || event.type || "";
    const id = (event.data && event.data.review_id) || "an item";
    if (/sla_warning/.test(kind)) flash(`SLA warning: ${id} is due soon`, "warn");
    if (/escalat/.test(kind)) flash(`Escalated: ${id}`, "warn");
    refresh();
  };
  const onState = (e) => live.set(e.detail);
  window.addEventListener("orchestrate:review-event", onEvent);
  window.addEventListener("orchestrate:review-stream", onState);
  live.set(reviewStream());
  const clock = setInterval(() => { for (const el of root.querySelectorAll(".sla[data-due]")) updateClock(el); }, 1000);
  return () => {
    window.removeEventListener("orchestrate:review-event", onEvent);
    window.removeEventListener("orchestrate:review-stream", onState);
    clearInterval(clock);
    document.removeEventListener("keydown", onKey);
  };
}

function decisionText(item) {
  const d = item.decision && typeof item.decision === "object" ? item.decision : { outcome: item.decision };
  const outcome = d.outcome || item.status;
  const by = d.by || item.decided_by || "nobody";
  const reason = d.reason || item.reason;
  return `${outcome} by ${by}${d.role ? ` (${d.role})` : ""}${d.at ? ` ${fmtAgo(d.at)}` : ""}${reason ? ` — “${reason}”` : ""}`;
}

/** The run behind an item, read when the reviewer opens it: its input and the steps so far. */
function runContext(item) {
  const body = h("div.context");
  const box = h("details#run-context", {}, h("summary", {}, "The run so far: its input and steps"), body);
  box.addEventListener("toggle", async () => {
    if (!box.open || body.childElementCount) return;
    try {
      const run = await get(`/runs/${encodeURIComponent(item.run_id)}`);
      body.append(
        h("h3", {}, "Input"), jsonBlock(run.input),
        h("h3", {}, "Steps"),
        h("ol.context-steps", {}, (run.steps || []).map((st) => h("li", {}, h("span.mono", {}, st.step_key), " ", statusBadge(st.status),
          st.meta && st.meta.model && st.meta.model.model ? h("span.muted", {}, ` ${st.meta.model.model}`) : null))),
        h("a", { href: `#/runs/${encodeURIComponent(item.run_id)}` }, "Open the run"));
    } catch (err) {
      body.append(h("p.form-error", {}, err.message || String(err)));
    }
  });
  return box;
}
