// Small DOM helpers: elements are built node by node, so no value is ever parsed as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

/** h("div.card#id", {attrs / onclick / dataset}, ...children) */
export function h(spec, attrs, ...children) {
  const [tag, ...rest] = spec.split(/(?=[.#])/);
  const el = document.createElement(tag || "div");
  for (const part of rest) {
    if (part.startsWith(".")) el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  apply(el, attrs);
  append(el, children);
  return el;
}

/** s("rect", {x, y, width, ...}) — an SVG element; attributes only, never style. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function apply(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = Array.isArray(v) ? v.filter(Boolean).join(" ") : v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** A time from the API (POSIX seconds or an ISO string) in milliseconds, or null. */
export function toMs(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value > 1e12 ? value : value * 1000;
  const n = Number(value);
  if (!Number.isNaN(n)) return toMs(n);
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : t;
}

export function fmtTime(value) {
  const ms = toMs(value);
  if (ms === null) return "—";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  const neg = ms < 0;
  let v = Math.abs(ms);
  let out;
  if (v < 1000) out = `${Math.round(v)} ms`;
  else if (v < 60_000) out = `${(v / 1000).toFixed(v < 10_000 ? 2 : 1)} s`;
  else if (v < 3_600_000) out = `${Math.floor(v / 60_000)}m ${String(Math.floor((v % 60_000) / 1000)).padStart(2, "0")}s`;
  else if (v < 86_400_000) out = `${Math.floor(v / 3_600_000)}h ${String(Math.floor((v % 3_600_000) / 60_000)).padStart(2, "0")}m`;
  else out = `${Math.floor(v / 86_400_000)}d ${Math.floor((v % 86_400_000) / 3_600_000)}h`;
  return neg ? `-${out}` : out;
}

export function fmtAgo(value) {
  const ms = toMs(value);
  if (ms === null) return "—";
  const d = Date.now() - ms;
  return d >= 0 ? `${fmtDuration(d)} ago` : `in ${fmtDuration(-d)}`;
}

export function fmtCost(v) {
  const n = Number(v || 0);
  if (n === 0) return "$0";
  return n < 0.01 ? `$${n.toFixed(5)}` : `$${n.toFixed(n < 10 ? 4 : 2)}`;
}

export function fmtInt(v) {
  return Number(v || 0).toLocaleString("en-US");
}

/** A JSON value shown as indented text in a <pre>. */
export function jsonBlock(value, cls = "json") {
  let text;
  if (value === undefined) text = "—";
  else {
    try { text = JSON.stringify(value, null, 2); } catch { text = String(value); }
  }
  return h("pre", { class: cls }, text);
}

export function badge(text, kind = "") {
  return h("span", { class: ["badge", kind && `b-${kind}`] }, text);
}

export function statusBadge(status) {
  return h("span", { class: ["status", `st-${status}`], title: status }, status || "?");
}

/** A button that disables itself while its async action runs. */
export function actionButton(label, action, { cls = "", title, key } = {}) {
  const b = h("button", { type: "button", class: ["btn", cls], title, dataset: key ? { key } : undefined }, label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await action(); } finally { b.disabled = false; }
  });
  return b;
}

export function emptyState(text) {
  return h("div.empty", {}, text);
}
