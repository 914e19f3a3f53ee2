"""A self-contained API documentation page: one HTML document with a small script that fetches
an OpenAPI 3.1 document from the same server and renders its operations, parameters, request
bodies, responses and schemas. No CDN, no external asset: it works on a closed network."""

from __future__ import annotations

import html
import json

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font:14px/1.45 system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;margin:0;color:#1d2733;background:#f6f8fa}}
header{{background:#0b4f8a;color:#fff;padding:14px 24px}} header h1{{margin:0;font-size:20px}}
main{{max-width:1100px;margin:0 auto;padding:12px 24px 48px}}
.op{{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:8px 0}}
.op>summary{{cursor:pointer;padding:8px 12px;list-style:none;display:flex;gap:10px;align-items:baseline}}
.m{{font-weight:700;font-family:ui-monospace,monospace;min-width:64px;text-transform:uppercase}}
.get{{color:#0969da}} .post{{color:#1a7f37}} .put{{color:#9a6700}} .patch{{color:#8250df}} .delete{{color:#cf222e}}
.p{{font-family:ui-monospace,monospace}} .s{{color:#57606a}} .lock{{color:#9a6700}}
.body{{padding:4px 16px 12px;border-top:1px solid #eaeef2}}
table{{border-collapse:collapse;width:100%;margin:6px 0}} td,th{{border:1px solid #eaeef2;padding:4px 6px;text-align:left;vertical-align:top}}
pre{{background:#f6f8fa;border:1px solid #eaeef2;padding:8px;overflow:auto;font-size:12px;max-height:420px}}
h2{{margin-top:28px;border-bottom:1px solid #d0d7de}} h4{{margin:10px 0 4px}}
</style></head>
<body><header><h1 id="t">{title}</h1><div id="d"></div></header>
<main><p class="s">Rendered from <a href="{spec_url}" class="p">{spec_url}</a>. Errors are RFC 9457 problem details.</p>
<div id="out">Loading…</div></main>
<script>
const SPEC_URL = {spec_url_js};
function el(tag, attrs, ...kids) {{
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {{}})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}}
function deref(doc, obj) {{
  let guard = 0;
  while (obj && obj.$ref && guard++ < 20) {{
    obj = obj.$ref.replace(/^#\\//, "").split("/").reduce((o, k) => o && o[k], doc);
  }}
  return obj || {{}};
}}
function pre(obj) {{ return el("pre", {{}}, JSON.stringify(obj, null, 2)); }}
function render(doc) {{
  document.getElementById("t").textContent = doc.info.title + " " + doc.info.version;
  document.getElementById("d").textContent = doc.info.description || "";
  const out = document.getElementById("out");
  out.textContent = "";
  const schemes = (doc.components || {{}}).securitySchemes || {{}};
  if (Object.keys(schemes).length) {{
    out.append(el("h2", {{}}, "Authentication"));
    const t = el("table", {{}}, el("tr", {{}}, el("th", {{}}, "name"), el("th", {{}}, "scheme"), el("th", {{}}, "description")));
    for (const [n, s] of Object.entries(schemes))
      t.append(el("tr", {{}}, el("td", {{class: "p"}}, n), el("td", {{}}, s.scheme ? s.type + " " + s.scheme : s.type + " (" + s.in + " " + s.name + ")"), el("td", {{}}, s.description || "")));
    out.append(t);
  }}
  const groups = {{}};
  for (const [path, item] of Object.entries(doc.paths || {{}}))
    for (const [method, op] of Object.entries(item)) {{
      if (!["get", "post", "put", "patch", "delete"].includes(method)) continue;
      const tag = (op.tags || ["other"])[0];
      (groups[tag] = groups[tag] || []).push([path, method, op]);
    }}
  for (const [tag, ops] of Object.entries(groups)) {{
    out.append(el("h2", {{}}, tag));
    for (const [path, method, op] of ops) {{
      const secured = (op.security || doc.security || []).some(r => Object.keys(r).length);
      const det = el("details", {{class: "op", id: op.operationId || ""}},
        el("summary", {{}}, el("span", {{class: "m " + method}}, method), el("span", {{class: "p"}}, path),
           el("span", {{class: "s"}}, op.summary || ""), secured ? el("span", {{class: "lock"}}, "🔒") : ""));
      const body = el("div", {{class: "body"}});
      if (op.description) body.append(el("p", {{}}, op.description));
      const params = (op.parameters || []).map(p => deref(doc, p));
      if (params.length) {{
        body.append(el("h4", {{}}, "Parameters"));
        const t = el("table", {{}}, el("tr", {{}}, el("th", {{}}, "name"), el("th", {{}}, "in"), el("th", {{}}, "required"), el("th", {{}}, "schema"), el("th", {{}}, "description")));
        for (const p of params)
          t.append(el("tr", {{}}, el("td", {{class: "p"}}, p.name), el("td", {{}}, p.in), el("td", {{}}, p.required ? "yes" : "no"),
                   el("td", {{class: "p"}}, JSON.stringify(p.schema || {{}})), el("td", {{}}, p.description || "")));
        body.append(t);
      }}
      if (op.requestBody) {{
        const rb = deref(doc, op.requestBody);
        for (const [ct, media] of Object.entries(rb.content || {{}})) {{
          body.append(el("h4", {{}}, "Request body (" + ct + ")" + (rb.required ? "" : ", optional")), pre(deref(doc, media.schema)));
        }}
      }}
      body.append(el("h4", {{}}, "Responses"));
      for (const [code, r0] of Object.entries(op.responses || {{}})) {{
        const r = deref(doc, r0);
        const cts = Object.keys(r.content || {{}});
        const d = el("details", {{}}, el("summary", {{}}, el("b", {{}}, code), " " + (r.description || "") + (cts.length ? "  — " + cts.join(", ") : "")));
        for (const ct of cts) d.append(pre(deref(doc, r.content[ct].schema)));
        body.append(d);
      }}
      det.append(body);
      out.append(det);
    }}
  }}
  const schemas = (doc.components || {{}}).schemas || {{}};
  if (Object.keys(schemas).length) {{
    out.append(el("h2", {{}}, "Schemas"));
    for (const [n, s] of Object.entries(schemas))
      out.append(el("details", {{class: "op", id: "schema-" + n}}, el("summary", {{}}, el("span", {{class: "p"}}, n)), el("div", {{class: "body"}}, pre(s))));
  }}
}}
fetch(SPEC_URL, {{credentials: "same-origin"}})
  .then(r => {{ if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); }})
  .then(render)
  .catch(e => {{ document.getElementById("out").textContent = "Could not load " + SPEC_URL + ": " + e.message; }});
</script>
</body></html>
"""


def docs_page(title: str, spec_url: str) -> str:
    """The HTML of a documentation page for the OpenAPI document at ``spec_url`` (same origin)."""
    return _PAGE.format(
        title=html.escape(title),
        spec_url=html.escape(spec_url),
        spec_url_js=json.dumps(spec_url).replace("</", "<\\/"),
    )
