// A run's feedback: what happened after it (GET /feedback?run_id=), and a small form for
// operators (POST /runs/<id>/feedback; who gives it is the session's principal).

import { get, post, canOperate } from "./api.js";
import { h, clear, fmtTime } from "./dom.js";
import { flash, reportError, section } from "./ui.js";

/** The run page's feedback section; built once per page, it keeps its own state across redraws. */
export function feedbackSection(runId) {
  const list = h("div#feedback-list", {}, h("p.muted", {}, "Loading…"));
  const box = section("Feedback", list);
  const load = async () => {
    try {
      const items = await get("/feedback", { run_id: runId, limit: 200 });
      clear(list).append(items.length ? table(items) : h("p.muted", {}, "No feedback on this run yet."));
    } catch (err) {
      clear(list).append(h("p.muted", {}, `Feedback could not be read: ${err.detail || err.message || err}`));
    }
  };
  if (canOperate()) box.append(form(runId, load));
  load();
  return box;
}

function table(items) {
  return h("table.table.compact#feedback", {},
    h("thead", {}, h("tr", {}, ["time", "by", "outcome", "score", "label", "step"].map((t) => h("th", {}, t)))),
    h("tbody", {}, items.map((f) => h("tr.feedback-row", { dataset: { feedbackId: f.feedback_id } },
      h("td", {}, fmtTime(f.at)), h("td", {}, f.by), h("td", {}, f.outcome ?? "—"),
      h("td.num", {}, f.score ?? "—"), h("td", {}, f.label ?? "—"), h("td.mono", {}, f.step ?? "—")))));
}

function form(runId, reload) {
  const outcome = h("input#feedback-outcome", { type: "text", maxlength: 200, placeholder: "defaulted, repaid…" });
  const score = h("input#feedback-score", { type: "number", step: "any", placeholder: "0 … 1" });
  const label = h("input#feedback-label", { type: "text", maxlength: 200, placeholder: "corrected…" });
  const step = h("input#feedback-step", { type: "text", maxlength: 500, placeholder: "optional" });
  const error = h("p.form-error", { role: "alert" });
  const submit = h("button.btn.primary", { type: "submit" }, "Add feedback");
  const el = h("form#feedback-form.feedback-form", {},
    h("label", {}, "Outcome", outcome), h("label", {}, "Score", score), h("label", {}, "Label", label),
    h("label", {}, "Step", step), submit, error);
  el.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const body = {};
    if (outcome.value.trim()) body.outcome = outcome.value.trim();
    if (score.value.trim()) body.score = Number(score.value);
    if (label.value.trim()) body.label = label.value.trim();
    if (step.value.trim()) body.step = step.value.trim();
    if (body.outcome === undefined && body.score === undefined && body.label === undefined) {
      error.textContent = "Give an outcome, a score or a label.";
      return;
    }
    submit.disabled = true;
    try {
      await post(`/runs/${encodeURIComponent(runId)}/feedback`, body);
      for (const input of [outcome, score, label, step]) input.value = "";
      flash("Feedback recorded");
      await reload();
    } catch (err) {
      reportError(err);
    } finally {
      submit.disabled = false;
    }
  });
  return el;
}
