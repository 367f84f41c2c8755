// Boot, sign-in and the fragment router (#/runs, #/runs/<id>, #/reviews, #/dlq, #/cost, #/alerts).

import { ApiError, loadSession, signIn, signOut, subscribe, get } from "./api.js";
import { h, clear } from "./dom.js";
import { setReviewStream } from "./ui.js";
import { renderRuns } from "./runs.js";
import { renderRun } from "./run.js";
import { renderReviews } from "./reviews.js";
import { renderDlq } from "./dlq.js";
import { renderCost } from "./cost.js";
import { renderAlerts } from "./alerts.js";

const main = document.getElementById("main");
let cleanup = null;
let inboxStream = null;


const ROUTES = [
  [/^#?\/?$/, () => renderRuns],
  [/^#\/runs$/, () => renderRuns],
  [/^#\/runs\/([^/?]+)$/, () => renderRun],
  [/^#\/reviews(?:\/([^/?]+))?$/, () => renderReviews],
  [/^#\/dlq$/, () => renderDlq],
  [/^#\/cost$/, () => renderCost],
  [/^#\/alerts$/, () => renderAlerts],
];

function splitHash() {
  const [path, query] = (location.hash || "#/runs").split("?");
  return { path, query: new URLSearchParams(query || "") };
}

async function route() {
  if (cleanup) { try { cleanup(); } catch { /* view already gone */ } cleanup = null; }
  const { path, query } = splitHash();
  const match = ROUTES.find(([re]) => re.test(path));
  document.querySelectorAll("#nav a").forEach((a) => {
    a.classList.toggle("active", path.startsWith(`#/${a.dataset.view}`) || (a.dataset.view === "runs" && /^#?\/?$/.test(path)));
  });
  clear(main);
  if (!match) {
    main.append(h("div.empty", {}, "No such page. ", h("a", { href: "#/runs" }, "Back to runs")));
    return;
  }
  const params = path.match(match[0]).slice(1).map((p) => p && decodeURIComponent(p));
  try {
    cleanup = (await match[1]()(main, params, query)) || null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    main.append(h("div.error-box", {}, err instanceof ApiError ? `${err.title}: ${err.detail || ""}` : String(err)));
  }
}

function renderSignIn(message) {
  if (cleanup) { try { cleanup(); } catch { /* ignore */ } cleanup = null; }
  if (inboxStream) { inboxStream(); inboxStream = null; }
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  clear(main);
  const input = h("input#token", { type: "password", name: "token", autocomplete: "off", required: true, placeholder: "API token", spellcheck: "false" });
  const error = h("p.form-error", { role: "alert" }, message || "");
  const form = h("form#sign-in.card.signin", {},
    h("h1", {}, "Sign in"),
    h("p.muted", {}, "Paste an API token (orchestrate tokens create …). The token is exchanged for a session cookie and never stored by this page."),
    h("label", { for: "token" }, "Token"), input, error,
    h("button.btn.primary", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      const session = await signIn(input.value.trim());
      input.value = "";
      if (!session) throw new Error("the server did not open a session");
      showSession(session);
      route();
    } catch (err) {
      error.textContent = err instanceof ApiError ? (err.detail || err.title) : String(err.message || err);
    }
  });
  main.append(form);
  input.focus();
}

function showSession(session) {
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-name").textContent = session.principal;
  document.getElementById("who-roles").textContent = (session.roles || []).join(", ");
  refreshInboxCount();
  // One stream of inbox events per page: the badge and the inbox view share it.
  if (!inboxStream) {
    inboxStream = subscribe("/events/reviews", (event) => {
      refreshInboxCount();
      window.dispatchEvent(new CustomEvent("orchestrate:review-event", { detail: event }));
    }, { onState: (state) => {
      setReviewStream(state);
      window.dispatchEvent(new CustomEvent("orchestrate:review-stream", { detail: state }));
    } });
  }
}

async function refreshInboxCount() {
  const count = document.getElementById("inbox-count");
  try {
    const page = await get("/reviews", { status: "pending", limit: 100 });
    const n = (page.items || []).length;
    count.textContent = n >= 100 ? "100+" : String(n);
    count.hidden = n === 0;
  } catch {
    count.hidden = true;
  }
}

async function boot() {
  document.getElementById("sign-out").addEventListener("click", async () => {
    await signOut().catch(() => {});
    renderSignIn("Signed out.");
  });
  window.addEventListener("orchestrate:unauthorized", () => renderSignIn("Your session ended; sign in again."));
  window.addEventListener("hashchange", () => { if (document.getElementById("nav").hidden === false) route(); });
  let session = null;
  try {
    session = await loadSession();
  } catch (err) {
    clear(main).append(h("div.error-box", {}, `The server did not answer: ${err.message || err}`));
    return;
  }
  if (!session) { renderSignIn(); return; }
  showSession(session);
  route();
}

boot();
