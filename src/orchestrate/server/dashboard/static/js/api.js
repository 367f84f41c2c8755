// The JSON API under /api/v1: the session cookie authenticates; the CSRF token, kept only in
// this module's memory (never in storage), goes with every unsafe request.

const BASE = "/api/v1";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

let csrf = null;
let session = null;

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

export function currentSession() {
  return session;
}

export async function request(method, path, body, { query } = {}) {
  let url = path.startsWith("/") && !path.startsWith(BASE) ? BASE + path : path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
    }
    const qs = params.toString();
    if (qs) url += (url.includes("?") ? "&" : "?") + qs;
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (UNSAFE.has(method) && csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : await response.text();
  if (!response.ok) {
    const problem = data && typeof data === "object" ? data : {};
    let detail = problem.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    const err = new ApiError(response.status, problem.title || response.statusText, detail || problem.title);
    if (response.status === 401 && !path.endsWith("/session")) window.dispatchEvent(new CustomEvent("orchestrate:unauthorized"));
    throw err;
  }
  return data;
}

export const get = (path, query) => request("GET", path, undefined, { query });
export const post = (path, body = {}) => request("POST", path, body);

export async function loadSession() {
  try {
    session = await request("GET", "/session");
    csrf = session.csrf || null;
    return session;
  } catch (err) {
    session = null;
    csrf = null;
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return null;
    throw err;
  }
}

export async function signIn(token) {
  const answer = await request("POST", "/session", { token });
  csrf = answer.csrf || null;
  return loadSession();
}

export async function signOut() {
  try { await request("DELETE", "/session"); } finally { session = null; csrf = null; }
}

export function hasRole(...roles) {
  const mine = (session && session.roles) || [];
  return roles.some((r) => mine.includes(r));
}

export const canOperate = () => hasRole("operator", "admin");

/** May the signed-in principal decide this review item? (The server decides; this only hides buttons.) */
export function canDecide(item) {
  const mine = (session && session.roles) || [];
  if (mine.includes("admin")) return true;
  const wanted = [...(item.roles || []), ...(item.required_roles || [])];
  if (wanted.length) return wanted.some((r) => mine.includes(r));
  return mine.some((r) => r !== "viewer");
}

const STREAM_EVENTS = new Set([
  "message", "created", "decided", "approval", "sla_warning", "escalated", "expired", "cancelled", "claimed",
  "attempt_crashed", "replay_started", "replayed", "signal_received", "timer_set", "wait_started",
  "review_approval_recorded", "review_auto_approved", "review_cancelled", "review_claimed", "review_created",
  "review_decided", "review_escalated", "review_expired", "review_sla_warning", "review_notify_failed",
  "run_attempt_crashed", "run_cancelled", "run_created", "run_dead", "run_ended", "run_execution_error",
  "run_failed", "run_parked", "run_recovered", "run_released", "run_resumed", "run_succeeded", "run_waiting",
  "step_attempt_failed", "step_failed", "step_fallback", "step_ok", "step_recorded", "step_retried", "step_retry",
  "step_routed", "step_skipped", "step_started", "step_succeeded", "step_thread_released", "step_thread_stuck",
  "step_threads_exhausted",
]);

/**
 * Subscribe to a server-sent event stream. EventSource sends the session cookie and, when it
 * reconnects, the Last-Event-ID header, so the server resumes where the stream stopped.
 * Returns a function that closes the stream.
 */
export function subscribe(path, onEvent, { onState } = {}) {
  const url = BASE + path;
  let source = null;
  let closed = false;
  let retry = null;
  // EventSource only delivers named events to listeners of that name: every name the
  // streams use (history kinds for a run, short names for the inbox) is listed here.
  const kinds = [...STREAM_EVENTS];
  const open = () => {
    if (closed) return;
    source = new EventSource(url, { withCredentials: true });
    source.onopen = () => onState && onState("live");
    source.onerror = () => {
      onState && onState("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. a 401 or a 5xx): try again later, resuming from the last id.
        clearTimeout(retry);
        retry = setTimeout(open, 3000);
      }
    };
    for (const kind of kinds) {
      source.addEventListener(kind, (e) => {
        let data = e.data;
        try { data = JSON.parse(e.data); } catch { /* plain text */ }
        onEvent({ type: e.type, id: e.lastEventId, data });
      });
    }
  };
  open();
  return () => {
    closed = true;
    clearTimeout(retry);
    if (source) source.close();
  };
}
