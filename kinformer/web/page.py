"""The read-only page `CacheApi(page=True)` serves at `/`: a table of one resource's cached
objects, a namespace box and a label-selector box, kept live by server-sent events.

One HTML document with inline CSS and vanilla JavaScript (no build step, nothing fetched
from elsewhere). The script reads the same API any client does: it checks the selector
with a `?limit=1` list (so a selector that does not parse shows the server's message),
then opens an `EventSource` on the collection's `?watch=true`, which the core answers as
server-sent events: ADDED for each match, the initial-events-end BOOKMARK, then changes.
URLs are relative to the page, so it works wherever the API is mounted.

For tests and scripts the document carries its state: `<body data-state="connecting" |
"live" | "error">`, `data-rows="N"`, and each row `<tr data-key="namespace/name">`; with
`?stopWhen=namespace/name` the page closes its stream once that object is shown (and sets
`data-stopped="true"`), so that a headless browser's page load can end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from kinformer.web.responses import Response

if TYPE_CHECKING:
    from kinformer.web.core import CacheApi

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kinformer cache</title>
<style>
  :root { color-scheme: light; --fg: #1d2330; --muted: #5b6478; --line: #d9dee8; --accent: #2f5fd0; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0; }
  header { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; padding: 14px 20px;
           border-bottom: 1px solid var(--line); background: #f6f8fc; }
  h1 { font-size: 17px; margin: 0 12px 0 0; }
  select, input { font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 5px; }
  #selector { min-width: 280px; }
  #state { font-size: 12px; padding: 3px 8px; border-radius: 10px; background: #e8ebf2; color: var(--muted); }
  body[data-state="live"] #state { background: #dcf3e3; color: #17652f; }
  body[data-state="error"] #state { background: #fbe1e1; color: #9b1c1c; }
  #message { color: #9b1c1c; padding: 8px 20px 0; min-height: 1em; }
  table { border-collapse: collapse; margin: 8px 20px 20px; width: calc(100% - 40px); }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
  td.labels span { display: inline-block; margin: 0 4px 3px 0; padding: 0 6px; border-radius: 4px;
                   background: #eef1f8; font-size: 12px; }
  td.rv { font-variant-numeric: tabular-nums; color: var(--muted); }
  tr.changed td { animation: flash 1.2s ease-out; }
  @keyframes flash { from { background: #fff4c2; } to { background: transparent; } }
</style>
</head>
<body data-state="connecting" data-rows="0">
<header>
  <h1>kinformer cache</h1>
  <select id="resource" aria-label="resource"></select>
  <input id="namespace" placeholder="namespace (all)" aria-label="namespace">
  <input id="selector" placeholder="label selector, e.g. app=web,tier!=db" aria-label="label selector">
  <span id="state">connecting</span>
  <span id="count"></span>
</header>
<div id="message"></div>
<table>
  <thead><tr><th>Namespace</th><th>Name</th><th>Status</th><th>Labels</th><th>Resource version</th></tr></thead>
  <tbody id="rows"></tbody>
</table>
<script>
"use strict";
const RESOURCES = __RESOURCES__;
const params = new URLSearchParams(location.search);
const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
const $ = (id) => document.getElementById(id);
const rows = new Map();
// ?stopWhen=namespace/name closes the stream once that object is shown, so a headless
// browser (`chromium --headless --dump-dom --virtual-time-budget`) can finish loading.
const stopWhen = params.get("stopWhen");
let source = null;
let generation = 0;

for (const r of RESOURCES) {
  const option = document.createElement("option");
  option.value = r.name; option.textContent = r.name;
  $("resource").appendChild(option);
}
if (params.get("resource")) $("resource").value = params.get("resource");
$("namespace").value = params.get("namespace") || "";
$("selector").value = params.get("labelSelector") || "";

function setState(state, text) {
  document.body.dataset.state = state;
  $("state").textContent = text || state;
}

function status(obj) {
  const s = obj.status || {};
  if (s.phase) return s.phase;
  if (obj.spec && typeof obj.spec.replicas === "number") {
    return (s.readyReplicas || 0) + "/" + obj.spec.replicas + " ready";
  }
  const ready = (s.conditions || []).find((c) => c.type === "Ready" || c.type === "Available");
  return ready ? (ready.status === "True" ? ready.type : "Not" + ready.type) : "";
}

function render() {
  const body = $("rows");
  const keys = [...rows.keys()].sort();
  body.replaceChildren(...keys.map((k) => rows.get(k).tr));
  document.body.dataset.rows = String(keys.length);
  $("count").textContent = keys.length + (keys.length === 1 ? " object" : " objects");
}

function row(obj, changed) {
  const meta = obj.metadata || {};
  const key = meta.namespace ? meta.namespace + "/" + meta.name : meta.name;
  const tr = document.createElement("tr");
  tr.dataset.key = key;
  if (changed) tr.className = "changed";
  const cells = [meta.namespace || "", meta.name, status(obj)];
  for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
  const labels = document.createElement("td"); labels.className = "labels";
  for (const [k, v] of Object.entries(meta.labels || {})) {
    const span = document.createElement("span"); span.textContent = k + "=" + v; labels.appendChild(span);
  }
  tr.appendChild(labels);
  const rv = document.createElement("td"); rv.className = "rv"; rv.textContent = meta.resourceVersion || "";
  tr.appendChild(rv);
  return { key, tr };
}

function collection() {
  const r = RESOURCES.find((x) => x.name === $("resource").value) || RESOURCES[0];
  const ns = $("namespace").value.trim();
  const path = r.namespaced && ns ? r.prefix + "/namespaces/" + encodeURIComponent(ns) + "/" + r.plural
                                  : r.prefix + "/" + r.plural;
  const query = new URLSearchParams();
  const selector = $("selector").value.trim();
  if (selector) query.set("labelSelector", selector);
  return { url: base + path.replace(/^\\//, ""), query };
}

async function connect() {
  const mine = ++generation;
  if (source) { source.close(); source = null; }
  rows.clear(); render();
  setState("connecting"); $("message").textContent = "";
  const { url, query } = collection();
  const check = new URLSearchParams(query); check.set("limit", "1");
  try {
    const response = await fetch(url + "?" + check);
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      if (mine !== generation) return;
      setState("error"); $("message").textContent = body.message || response.statusText;
      return;
    }
  } catch (err) {
    if (mine === generation) { setState("error"); $("message").textContent = String(err); }
    return;
  }
  if (mine !== generation) return;
  query.set("watch", "true");
  source = new EventSource(url + "?" + query);
  let live = false;
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    const obj = event.object || {};
    if (event.type === "BOOKMARK") { live = true; setState("live"); render(); stopIfShown(); return; }
    if (event.type === "ERROR") { setState("error"); $("message").textContent = obj.message || "watch error"; return; }
    const entry = row(obj, live);
    if (event.type === "DELETED") rows.delete(entry.key); else rows.set(entry.key, entry);
    if (live) { render(); stopIfShown(); }
  };
  // The server ended the stream (its timeout) or the connection broke: start over, since a
  // new stream begins with a full snapshot and objects deleted meanwhile must go.
  source.onerror = () => {
    if (mine !== generation) return;
    source.close(); source = null;
    setState("connecting", "reconnecting");
    setTimeout(() => { if (mine === generation) connect(); }, 1000);
  };
}

function stopIfShown() {
  if (stopWhen && rows.has(stopWhen) && source) {
    source.close(); source = null;
    document.body.dataset.stopped = "true";
  }
}

let timer = null;
const later = () => { clearTimeout(timer); timer = setTimeout(connect, 300); };
$("resource").addEventListener("change", connect);
$("namespace").addEventListener("input", later);
$("selector").addEventListener("input", later);
connect();
</script>
</body>
</html>
"""


def render_page(api: CacheApi) -> Response:
    resources = [
        {"name": r.plural if not r.group else f"{r.plural}.{r.group}", "plural": r.plural,
         "prefix": r.group_version_prefix, "namespaced": r.namespaced}
        for r in api.resources
    ]
    # `</` cannot close the script element from inside the JSON (a resource name is ours, but still).
    data = orjson.dumps(resources).decode().replace("</", "<\\/")
    html = _PAGE.replace("__RESOURCES__", data)
    return Response(200, html.encode(), "text/html; charset=utf-8",
                    {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
