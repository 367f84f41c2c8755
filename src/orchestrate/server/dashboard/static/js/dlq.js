// The dead-letter queue: each dead run's error and traceback, and replay (from a step, with an
// edited input) for the roles allowed it.

import { get, canOperate } from "./api.js";
import { h, clear, fmtTime, fmtAgo, jsonBlock, emptyState } from "./dom.js";
import { replayDialog, tracebackOf } from "./run.js";
import { flash, reportError } from "./ui.js";

export async function renderDlq(root) {
  const list = h("div#dlq.dlq-list");
  const more = h("button.btn", { type: "button", hidden: true }, "Load more");
  root.append(h("div.page-head", {}, h("h1", {}, "Dead letters"),
    h("span.muted", {}, "Runs whose retries and fallbacks ran out, or whose input was poison. Replay sends one back.")), list, h("div.center", {}, more));
  let cursor = null;
  const load = async (append) => {
    const page = await get("/dlq", { limit: 50, cursor: append ? cursor : undefined });
    const items = page.items || [];
    cursor = page.next_cursor || null;
    more.hidden = !cursor;
    if (!append) clear(list);
    if (!append && !items.length) list.append(emptyState("The dead-letter queue is empty."));
    for (const run of items) list.append(card(run, () => load(false)));
  };
  more.addEventListener("click", () => load(true).catch(reportError));
  await load(false);
}

function card(run, reload) {
  const error = run.error || {};
  const detail = h("div.dlq-detail");
  const box = h("article.card.dlq-item", { dataset: { runId: run.run_id } },
    h("div.row", {},
      h("a.mono", { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.run_id.slice(0, 12)),
      h("strong", {}, run.workflow), h("span.muted", { title: `version ${run.version}` }, ` ${String(run.version).slice(0, 7)}`), h("span.spacer"),
      h("span.muted", { title: fmtTime(run.updated_at) }, `dead ${fmtAgo(run.updated_at)}`)),
    h("p.error-line", {}, h("strong", {}, error.name || error.type || "Error"), error.step ? ` in step ${error.step}` : "", `: ${error.message || ""}`),
    detail);
  const show = h("button.btn.link", { type: "button" }, "Traceback and input");
  show.addEventListener("click", async () => {
    if (detail.childElementCount) { clear(detail); return; }
    try {
      const full = await get(`/runs/${encodeURIComponent(run.run_id)}`);
      const traceback = tracebackOf(full);
      detail.append(
        traceback ? h("pre.traceback", {}, traceback) : h("p.muted", {}, "No traceback was recorded for this error."),
        h("h3", {}, "Input"), jsonBlock(full.input));
      // The innermost frames, where the error was raised, are the ones to see first.
      for (const pre of detail.querySelectorAll("pre.traceback")) pre.scrollTop = pre.scrollHeight;
    } catch (err) { reportError(err); }
  });
  const actions = h("div.actions", {}, show);
  if (canOperate()) {
    const replay = h("button.btn.primary.replay", { type: "button" }, "Replay…");
    replay.addEventListener("click", async () => {
      try {
        const full = await get(`/runs/${encodeURIComponent(run.run_id)}`);
        replayDialog(full, `/dlq/${encodeURIComponent(run.run_id)}/replay`, async (answer) => {
          flash(`Replayed as ${answer.run_id}`);
          location.hash = `#/runs/${encodeURIComponent(answer.run_id)}`;
        });
      } catch (err) { reportError(err); }
    });
    actions.append(replay);
  }
  box.append(actions);
  return box;
}
