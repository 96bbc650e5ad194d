// The API's own documentation page: reads the OpenAPI document this app
// serves (/openapi.json) and lists every route with its method, summary,
// parameters, body and answers, and every model. It loads nothing from
// anywhere else, so it works offline and under the page's CSP.
"use strict";

(function () {
  const METHODS = ["get", "post", "put", "patch", "delete"];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // A schema's name when it refers to a model, else a short type description.
  function typeOf(schema) {
    if (!schema) return "";
    if (schema.$ref) return schema.$ref.split("/").pop();
    if (schema.anyOf) return schema.anyOf.map(typeOf).filter((t) => t !== "null").join(" | ") || "null";
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (schema.type === "array") return `${typeOf(schema.items)}[]`;
    return schema.type || "any";
  }

  function constraints(schema) {
    const s = (schema && schema.anyOf ? schema.anyOf.find((x) => x.type !== "null") : schema) || {};
    const parts = [];
    if (s.minimum !== undefined) parts.push(`≥ ${s.minimum}`);
    if (s.maximum !== undefined) parts.push(`≤ ${s.maximum}`);
    if (s.pattern) parts.push(`pattern ${s.pattern}`);
    if (schema && schema.enum && schema.anyOf) parts.push(`one of ${schema.enum.join(", ")}`);
    return parts.join(", ");
  }

  function bodyModel(content) {
    const media = content ? Object.keys(content)[0] : null;
    if (!media) return "";
    const name = typeOf(content[media].schema);
    return media === "application/json" ? name : `${media}${name && name !== "string" ? ` (${name})` : ""}`;
  }

  function parametersTable(params) {
    if (!params.length) return null;
    const rows = params.map((p) =>
      el("tr", { "data-param": p.name },
        el("td", {}, el("code", {}, p.name)),
        el("td", {}, p.in),
        el("td", {}, typeOf(p.schema)),
        el("td", {}, p.required ? "required" : "optional"),
        el("td", {}, [p.description || "", constraints(p.schema)].filter(Boolean).join("; "))));
    return el("table", { class: "params" },
      el("thead", {}, el("tr", {}, ...["parameter", "in", "type", "", "about"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows));
  }

  function responsesTable(responses) {
    const rows = Object.entries(responses || {}).map(([status, r]) =>
      el("tr", { "data-status": status },
        el("td", {}, status),
        el("td", {}, bodyModel(r.content)),
        el("td", {}, r.description || "")));
    return el("table", { class: "responses" },
      el("thead", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "answer"), el("th", {}, ""))),
      el("tbody", {}, ...rows));
  }

  function route(path, method, op, shared, doc) {
    const params = [...shared, ...(op.parameters || [])];
    const isPublic = Array.isArray(op.security) && op.security.length === 0;
    const secured = !isPublic && (op.security || doc.security || []).length > 0;
    const body = op.requestBody ? bodyModel(op.requestBody.content) : "";
    return el("article", { class: "route", "data-method": method.toUpperCase(), "data-path": path, id: op.operationId || `${method}-${path}` },
      el("h2", {},
        el("span", { class: "method", "data-method": method }, method.toUpperCase()),
        el("span", { class: "path" }, path),
        el("span", { class: "summary" }, op.summary || ""),
        isPublic ? el("span", { class: "badge public" }, "public") : secured ? el("span", { class: "badge" }, "token") : null),
      parametersTable(params),
      body ? el("p", { class: "body" }, "Body: ", el("code", { "data-body": body }, body)) : null,
      responsesTable(op.responses));
  }

  function models(doc) {
    const schemas = (doc.components && doc.components.schemas) || {};
    const items = Object.keys(schemas).sort().flatMap((name) => {
      const s = schemas[name];
      const fields = Object.entries(s.properties || {}).map(([k, v]) =>
        `${k}${(s.required || []).includes(k) ? "" : "?"}: ${typeOf(v)}`);
      return [el("dt", { id: `model-${name}` }, name), el("dd", {}, s.description || "", fields.length ? el("div", {}, fields.join(", ")) : null)];
    });
    return [el("h2", {}, "Models"), el("dl", {}, ...items)];
  }

  function render(doc) {
    document.getElementById("title").textContent = doc.info.title;
    document.title = doc.info.title;
    document.getElementById("version").textContent = `version ${doc.info.version} · OpenAPI ${doc.openapi}`;
    document.getElementById("description").textContent = doc.info.description || "";
    const main = document.getElementById("routes");
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of METHODS) {
        if (item[method]) main.append(route(path, method, item[method], item.parameters || [], doc));
      }
    }
    main.setAttribute("aria-busy", "false");
    main.dataset.routes = String(main.children.length);
    document.getElementById("models").append(...models(doc));
  }

  fetch("/openapi.json", { headers: { Accept: "application/json" } })
    .then((r) => {
      if (!r.ok) throw new Error(`/openapi.json answered ${r.status}`);
      return r.json();
    })
    .then(render)
    .catch((e) => {
      const box = document.getElementById("docs-error");
      box.textContent = `cannot read the API description: ${e.message}`;
      box.hidden = false;
    });
})();
