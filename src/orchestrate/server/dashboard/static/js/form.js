// Editing a payload: a form built from its JSON schema (or a JSON editor when there is none),
// validated before anything is sent, and the diff of the edit.

import { h } from "./dom.js";

function typeOf(schema) {
  let t = schema && schema.type;
  if (Array.isArray(t)) t = t.find((x) => x !== "null") || t[0];
  if (!t && schema && schema.enum) t = typeof schema.enum[0];
  if (!t && schema && schema.properties) t = "object";
  return t || "any";
}

/** Errors of `value` against the parts of JSON schema a reviewer's form needs. */
export function validate(schema, value, where = "payload") {
  const errors = [];
  if (!schema || typeof schema !== "object") return errors;
  const t = typeOf(schema);
  const nullable = Array.isArray(schema.type) && schema.type.includes("null");
  if (value === null && nullable) return errors;
  const is = {
    string: (v) => typeof v === "string",
    number: (v) => typeof v === "number" && Number.isFinite(v),
    integer: (v) => Number.isInteger(v),
    boolean: (v) => typeof v === "boolean",
    object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
    array: (v) => Array.isArray(v),
    null: (v) => v === null,
    any: () => true,
  };
  if (is[t] && !is[t](value)) { errors.push(`${where}: must be ${t === "integer" ? "a whole number" : `a ${t}`}`); return errors; }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) errors.push(`${where}: must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(", ")}`);
  if (t === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${where}: at least ${schema.minLength} characters`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) errors.push(`${where}: at most ${schema.maxLength} characters`);
    if (schema.pattern) { try { if (!new RegExp(schema.pattern, "u").test(value)) errors.push(`${where}: must match ${schema.pattern}`); } catch { /* a pattern JS cannot read is left to the server */ } }
  }
  if (t === "number" || t === "integer") {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${where}: at least ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${where}: at most ${schema.maximum}`);
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) errors.push(`${where}: more than ${schema.exclusiveMinimum}`);
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) errors.push(`${where}: less than ${schema.exclusiveMaximum}`);
  }
  if (t === "object") {
    for (const key of schema.required || []) if (!(key in value)) errors.push(`${where}.${key}: required`);
    for (const [key, sub] of Object.entries(schema.properties || {})) if (key in value) errors.push(...validate(resolve(sub), value[key], `${where}.${key}`));
    if (schema.additionalProperties === false) {
      for (const key of Object.keys(value)) if (!(key in (schema.properties || {}))) errors.push(`${where}.${key}: not allowed`);
    }
  }
  if (t === "array") {
    if (schema.minItems !== undefined && value.length < schema.minItems) errors.push(`${where}: at least ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errors.push(`${where}: at most ${schema.maxItems} items`);
    if (schema.items) value.forEach((v, i) => errors.push(...validate(resolve(schema.items), v, `${where}[${i}]`)));
  }
  return errors;
}

let root = null;
function resolve(schema) {
  // Local references (#/$defs/X, #/definitions/X), as pydantic writes them.
  if (schema && schema.$ref && root) {
    const parts = schema.$ref.replace(/^#\//, "").split("/");
    let target = root;
    for (const p of parts) target = target && target[p];
    return target || schema;
  }
  if (schema && Array.isArray(schema.anyOf)) {
    const types = schema.anyOf.map((x) => x.type).filter(Boolean);
    const main = schema.anyOf.find((x) => x.type !== "null") || schema.anyOf[0];
    return { ...resolve(main), type: types.includes("null") ? [typeOf(resolve(main)), "null"] : typeOf(resolve(main)), title: schema.title };
  }
  return schema;
}

/** A JSON editor: a textarea validated as JSON (and against `schema` when given). */
export function jsonEditor(value, { schema, rows = 12, id = "payload-json" } = {}) {
  const area = h("textarea.code", { id, rows, spellcheck: "false" });
  area.value = JSON.stringify(value, null, 2);
  const errors = h("ul.form-errors", { role: "alert" });
  const read = () => {
    errors.replaceChildren();
    let parsed;
    try { parsed = JSON.parse(area.value); } catch (err) {
      errors.append(h("li", {}, `not valid JSON: ${err.message}`));
      area.classList.add("invalid");
      return { ok: false };
    }
    root = schema;
    const problems = schema ? validate(schema, parsed) : [];
    for (const p of problems) errors.append(h("li", {}, p));
    area.classList.toggle("invalid", problems.length > 0);
    return problems.length ? { ok: false } : { ok: true, value: parsed };
  };
  // Typing clears the last complaint: left in place, it would vanish at the next blur and move
  // the button under the pointer between mousedown and click.
  area.addEventListener("input", () => { area.classList.remove("invalid"); errors.replaceChildren(); });
  area.addEventListener("blur", read);
  return { el: h("div.editor", {}, area, errors), read, focus: () => area.focus() };
}

/** A form with one field per property of an object schema; other shapes get the JSON editor. */
export function schemaForm(schema, value) {
  root = schema;
  const top = resolve(schema);
  if (!top || typeOf(top) !== "object" || !top.properties) return jsonEditor(value, { schema });
  const current = value && typeof value === "object" ? value : {};
  const fields = [];
  const form = h("div.schema-form");
  for (const [key, raw] of Object.entries(top.properties)) {
    const sub = resolve(raw);
    const t = typeOf(sub);
    const id = `field-${key}`;
    const label = h("label", { for: id }, sub.title || key, (top.required || []).includes(key) ? h("span.req", {}, " *") : null);
    const help = sub.description ? h("small.muted", {}, sub.description) : null;
    const err = h("div.field-error", { role: "alert" });
    let input;
    let get;
    const v = current[key];
    if (sub.enum) {
      input = h("select", { id, name: key }, sub.enum.map((e) => h("option", { value: JSON.stringify(e) }, String(e))));
      if (v !== undefined) input.value = JSON.stringify(v);
      get = () => JSON.parse(input.value);
    } else if (t === "boolean") {
      input = h("input", { id, name: key, type: "checkbox", checked: Boolean(v) });
      get = () => input.checked;
    } else if (t === "number" || t === "integer") {
      input = h("input", { id, name: key, type: "number", step: t === "integer" ? "1" : "any", value: v ?? "" });
      get = () => (input.value === "" ? undefined : Number(input.value));
    } else if (t === "string") {
      const long = (typeof v === "string" && (v.length > 60 || v.includes("\n"))) || (sub.maxLength || 0) > 200;
      input = long ? h("textarea", { id, name: key, rows: 4 }) : h("input", { id, name: key, type: "text" });
      input.value = v ?? "";
      get = () => (input.value === "" && !(top.required || []).includes(key) && v === undefined ? undefined : input.value);
    } else {
      input = h("textarea.code", { id, name: key, rows: 4, spellcheck: "false" });
      input.value = v === undefined ? "" : JSON.stringify(v, null, 2);
      get = () => {
        if (input.value.trim() === "") return undefined;
        try { return JSON.parse(input.value); } catch (e) { throw new Error(`not valid JSON: ${e.message}`); }
      };
    }
    fields.push({ key, sub, input, get, err });
    form.append(h("div.field", {}, label, input, help, err));
  }
  // Properties the schema does not name are kept as they were.
  const extra = Object.fromEntries(Object.entries(current).filter(([k]) => !(k in top.properties)));
  const summary = h("ul.form-errors", { role: "alert" });
  form.append(summary);
  const read = () => {
    summary.replaceChildren();
    const out = { ...extra };
    let ok = true;
    for (const f of fields) {
      f.err.textContent = "";
      f.input.classList.remove("invalid");
      try {
        const val = f.get();
        if (val !== undefined) out[f.key] = val;
      } catch (e) {
        f.err.textContent = e.message;
        f.input.classList.add("invalid");
        ok = false;
      }
    }
    if (!ok) return { ok: false };
    root = schema;
    const problems = validate(top, out);
    for (const p of problems) {
      const field = fields.find((f) => p.startsWith(`payload.${f.key}:`) || p.startsWith(`payload.${f.key}.`) || p.startsWith(`payload.${f.key}[`));
      if (field) { field.err.textContent = p.replace(/^payload\./, ""); field.input.classList.add("invalid"); } else summary.append(h("li", {}, p));
    }
    return problems.length ? { ok: false } : { ok: true, value: out };
  };
  return { el: form, read, focus: () => fields[0] && fields[0].input.focus() };
}

/** Field-by-field changes from `before` to `after`: [{path, before, after}]. */
export function diff(before, after, path = "") {
  const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (isObj(before) && isObj(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    return keys.flatMap((k) => diff(before[k], after[k], path ? `${path}.${k}` : k));
  }
  if (Array.isArray(before) && Array.isArray(after) && before.length === after.length) {
    return before.flatMap((v, i) => diff(v, after[i], `${path}[${i}]`));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [{ path: path || "(whole payload)", before, after }];
}

export function diffView(changes) {
  if (!changes.length) return h("p.muted.diff-none", {}, "No change yet.");
  const show = (v) => (v === undefined ? "(absent)" : typeof v === "string" ? v : JSON.stringify(v));
  return h("table.diff", {}, h("thead", {}, h("tr", {}, h("th", {}, "field"), h("th", {}, "before"), h("th", {}, "after"))),
    h("tbody", {}, changes.map((c) => h("tr", {}, h("td.mono", {}, c.path), h("td.del", {}, show(c.before)), h("td.ins", {}, show(c.after))))));
}
