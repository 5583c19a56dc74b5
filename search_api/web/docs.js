// A tiny renderer of /openapi.json: operations grouped by tag, their parameters, bodies, responses, and
// the component schemas they reference. No dependencies.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function refName(ref) { return ref.split("/").pop(); }

function schemaLabel(schema) {
  if (!schema) return "—";
  if (schema.$ref) return el("a", { class: "ref", href: "#schema-" + refName(schema.$ref), text: refName(schema.$ref) });
  if (schema.type === "array") {
    const span = el("span", {}, "array of ");
    span.append(schemaLabel(schema.items));
    return span;
  }
  if (schema.anyOf) {
    const span = el("span");
    schema.anyOf.forEach((part, i) => { if (i) span.append(" | "); span.append(schemaLabel(part)); });
    return span;
  }
  const fmt = schema.format ? ` (${schema.format})` : "";
  return (schema.type || "any") + fmt;
}

function table(headers, rows) {
  const t = el("table");
  t.append(el("tr", {}, ...headers.map((h) => el("th", { text: h }))));
  for (const row of rows) t.append(el("tr", {}, ...row.map((cell) => el("td", {}, cell))));
  return t;
}

function renderOperation(path, method, op) {
  const body = el("div", { class: "body" });
  if (op.description) body.append(el("p", { text: op.description }));
  if (op.parameters && op.parameters.length) {
    body.append(el("h4", { text: "Parameters" }));
    body.append(table(["name", "in", "required", "schema", "description"], op.parameters.map((p) => [
      p.name, p.in, p.required ? "yes" : "no", schemaLabel(p.schema), p.description || (p.schema && p.schema.description) || "",
    ])));
  }
  if (op.requestBody) {
    body.append(el("h4", { text: "Request body" }));
    const rows = [];
    for (const [type, media] of Object.entries(op.requestBody.content || {})) {
      const schema = media.schema || {};
      if (schema.properties && !schema.$ref) {
        const fields = Object.entries(schema.properties).map(([name, prop]) => {
          const span = el("span", {}, `${name}: `);
          span.append(schemaLabel(prop));
          if (prop.description) span.append(` — ${prop.description}`);
          return span;
        });
        const cell = el("div");
        fields.forEach((f) => cell.append(f, el("br")));
        rows.push([type, cell]);
      } else {
        rows.push([type, schemaLabel(schema)]);
      }
    }
    body.append(table(["content type", "schema"], rows));
  }
  body.append(el("h4", { text: "Responses" }));
  body.append(table(["status", "content", "schema"], Object.entries(op.responses || {}).flatMap(([status, r]) => {
    const content = Object.entries(r.content || {});
    if (!content.length) return [[status, "—", r.description || ""]];
    return content.map(([type, media]) => [status, type, schemaLabel(media.schema)]);
  })));
  if (op.security && op.security.length === 0) body.append(el("p", { class: "hint", text: "No API key needed." }));
  const summary = el("summary", {},
    el("span", { class: "method " + method, text: method }),
    el("span", { class: "path", text: path }),
    el("span", { class: "hint", text: op.summary || "" }));
  return el("details", { class: "op", id: op.operationId || "" }, summary, body);
}

function render(doc) {
  $("#version").textContent = `${doc.info.title} ${doc.info.version} · OpenAPI ${doc.openapi}`;
  const byTag = new Map();
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(renderOperation(path, method, op));
    }
  }
  const ops = $("#operations");
  ops.replaceChildren();
  for (const [tag, items] of [...byTag.entries()].sort()) {
    ops.append(el("h2", { text: tag }), ...items);
  }
  const schemas = $("#schemas");
  schemas.replaceChildren();
  for (const [name, schema] of Object.entries((doc.components && doc.components.schemas) || {}).sort()) {
    schemas.append(el("details", { class: "op", id: "schema-" + name },
      el("summary", {}, el("span", { class: "path", text: name })),
      el("div", { class: "body" }, el("pre", { class: "schema", text: JSON.stringify(schema, null, 2) }))));
  }
  const n = Object.values(doc.paths).reduce((sum, ops) => sum + Object.keys(ops).length, 0);
  $("#docs-status").textContent = `${n} operations`;
}

document.addEventListener("DOMContentLoaded", async () => {
  const headers = {};
  const key = localStorage.getItem("clipsearch.apiKey");
  if (key) headers["Authorization"] = "Bearer " + key;
  try {
    const response = await fetch("/openapi.json", { headers });
    if (!response.ok) throw new Error(`HTTP ${response.status}` + (response.status === 401 ? ": set the API key on the search page" : ""));
    render(await response.json());
  } catch (err) {
    $("#docs-status").textContent = "Could not load /openapi.json: " + err.message;
    $("#docs-status").classList.add("error");
  }
});
