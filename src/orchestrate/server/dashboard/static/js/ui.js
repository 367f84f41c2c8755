// Messages, dialogs and shared page parts.

import { ApiError } from "./api.js";
import { h, clear } from "./dom.js";

/** Show a message at the top of the page (errors stay until dismissed). */
export function flash(message, kind = "info") {
  const box = document.getElementById("flash");
  clear(box);
  box.className = `flash flash-${kind}`;
  box.append(h("span", {}, message), h("button.link", { type: "button", onclick: () => { box.hidden = true; } }, "dismiss"));
  box.hidden = false;
  if (kind !== "error") {
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => { box.hidden = true; }, 6000);
  }
}

/** Report an error of an action in one line, as the API gave it. */
export function reportError(err) {
  if (err instanceof ApiError) flash(`${err.status === 403 ? "Not allowed" : err.title || "Error"}: ${err.detail || err.message}`, "error");
  else flash(String(err && err.message ? err.message : err), "error");
}


/** Open a modal dialog around `body`; returns the function that closes it (Escape does too). */
export function dialog(title, body, { wide = false } = {}) {
  const panel = h("div.dialog", { role: "dialog", "aria-modal": "true", "aria-label": title, class: ["dialog", wide && "wide"] },
    h("div.dialog-head", {}, h("h2", {}, title), h("button.link.close", { type: "button", "aria-label": "close" }, "✕")),
    body);
  const backdrop = h("div.backdrop", {}, panel);
  const close = () => { backdrop.remove(); document.removeEventListener("keydown", onKey, true); };
  const onKey = (e) => { if (e.key === "Escape") { e.stopPropagation(); close(); } };
  panel.querySelector(".close").addEventListener("click", close);
  backdrop.addEventListener("click", (e) => { if (e.target === backdrop) close(); });
  document.addEventListener("keydown", onKey, true);
  document.body.append(backdrop);
  const first = panel.querySelector("textarea, input, select, button.primary");
  if (first) first.focus();
  return close;
}

/** The "live" indicator of a view fed by server-sent events. */
export function liveDot() {
  const dot = h("span.live", { title: "live updates" }, "connecting");
  return { el: dot, set: (state) => { dot.textContent = state; dot.className = `live live-${state}`; } };
}

export function section(title, ...children) {
  return h("section.card", {}, h("h2", {}, title), ...children);
}

let reviewStreamState = "connecting";

/** The state of the inbox's event stream ("live", "reconnecting"...), shared by the views. */
export const reviewStream = () => reviewStreamState;
export const setReviewStream = (state) => { reviewStreamState = state; };

export { clear };
