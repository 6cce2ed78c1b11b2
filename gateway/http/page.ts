/**
 * The status page: one self-contained HTML document (no CDN, no build step, works without
 * internet access). Read-only: it reads /api/fleet and /api/campaigns, then follows
 * /api/events (server-sent events) and re-reads a campaign when it starts or ends. A `?token=`
 * in the page's address is passed on to the API and the event stream.
 *
 * Stable hooks for tests and scripts: `#fleet tr[data-device]` (data-online), `.campaign[data-campaign]`
 * (data-state) with `tr[data-device]` (data-phase, data-bytes, data-total), `#history tr[data-campaign]`.
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fwgate status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #ddd; white-space: nowrap; }
  th { background: #f4f4f4; }
  .online { color: #176f2c; font-weight: bold; } .offline { color: #999; }
  .bar { display: inline-block; width: 160px; height: 10px; background: #eee; vertical-align: middle; }
  .bar > span { display: block; height: 100%; background: #3b7ddd; }
  .phase-done { color: #176f2c; } .phase-failed, .phase-rolled-back { color: #b3261e; } .phase-skipped { color: #777; }
  #conn { float: right; font-size: .9em; color: #777; }
  .muted { color: #777; }
</style>
</head>
<body>
<span id="conn">connecting…</span>
<h1>fwgate</h1>
<h2>Fleet <span id="fleet-count" class="muted"></span></h2>
<table id="fleet"><thead><tr><th>device</th><th>model</th><th>version</th><th>slots</th><th>online</th><th>last check-in</th><th>link</th><th>group</th><th>last result</th></tr></thead><tbody></tbody></table>
<h2>Running campaigns</h2>
<div id="running"><p class="muted">none</p></div>
<h2>History</h2>
<table id="history"><thead><tr><th>campaign</th><th>image</th><th>state</th><th>started</th><th>devices</th><th>updated</th><th>failed</th><th>rolled back</th><th>skipped</th><th>duration</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
var token = new URLSearchParams(location.search).get("token");
function api(path) { return path + (token ? (path.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(token) : ""); }
function getJson(path) { return fetch(api(path)).then(function (r) { if (!r.ok) throw new Error(path + ": HTTP " + r.status); return r.json(); }); }
function el(tag, attrs, children) {
  var e = document.createElement(tag);
  Object.keys(attrs || {}).forEach(function (k) { if (attrs[k] !== undefined) e.setAttribute(k, attrs[k]); });
  (children || []).forEach(function (c) { e.append(c instanceof Node ? c : document.createTextNode(String(c))); });
  return e;
}
function when(ms) { return ms ? new Date(ms).toLocaleString() : "-"; }
function rate(bps) { return bps === undefined ? "" : bps >= 1048576 ? (bps / 1048576).toFixed(1) + " MiB/s" : (bps / 1024).toFixed(0) + " KiB/s"; }
function dur(ms) { return ms === undefined ? "" : ms < 60000 ? (ms / 1000).toFixed(1) + " s" : Math.round(ms / 60000) + " min"; }
function slots(d) {
  if (!d.slots) return d.slot || "";
  return Object.keys(d.slots).map(function (k) { var s = d.slots[k]; return k + (k === d.slot ? "*" : "") + ": " + (s && (s.version || s.state) || "-") + (s && s.state && s.version ? " (" + s.state + ")" : ""); }).join(", ");
}
var fleet = new Map();
var campaigns = new Map();
function renderFleet() {
  var body = document.querySelector("#fleet tbody");
  body.replaceChildren();
  var rows = Array.from(fleet.values()).sort(function (a, b) { return a.id < b.id ? -1 : a.id > b.id ? 1 : 0; });
  rows.forEach(function (d) {
    var r = d.lastResult;
    body.append(el("tr", { "data-device": d.id, "data-online": String(d.online) }, [
      el("td", {}, [d.id]), el("td", {}, [d.hw]), el("td", {}, [d.version]), el("td", {}, [slots(d)]),
      el("td", { class: d.online ? "online" : "offline" }, [d.online ? "online" : "offline"]),
      el("td", {}, [when(d.lastCheckIn)]),
      el("td", {}, [d.link ? (d.link.rttMs !== undefined ? Math.round(d.link.rttMs) + " ms " : "") + rate(d.link.bps) : ""]),
      el("td", {}, [d.group || ""]),
      el("td", {}, [r ? r.outcome + (r.code && r.code !== "ok" ? " (" + r.code + ")" : "") + " " + r.version : ""]),
    ]));
  });
  document.getElementById("fleet-count").textContent = "(" + rows.filter(function (d) { return d.online; }).length + " online of " + rows.length + ")";
}
function campaignBox(c) {
  var rows = new Map();
  (c.order ? c.order.devices : []).forEach(function (o) { rows.set(o.id, { id: o.id, phase: "queued", bytes: 0, total: 0, rank: o.rank }); });
  (c.progress || []).forEach(function (p) { rows.set(p.id, Object.assign(rows.get(p.id) || {}, p)); });
  (c.results || []).forEach(function (r) { var x = rows.get(r.id) || { id: r.id, bytes: 0, total: 0 }; x.outcome = r.outcome; x.code = r.code; x.phase = r.outcome === "updated" ? "done" : r.outcome; rows.set(r.id, x); });
  c.rows = rows;
  return c;
}
function renderRunning() {
  var box = document.getElementById("running");
  box.replaceChildren();
  var live = Array.from(campaigns.values()).filter(function (c) { return c.state === "running" || c.state === "waiting" || c.state === "queued"; });
  if (live.length === 0) { box.append(el("p", { class: "muted" }, ["none"])); return; }
  live.forEach(function (c) {
    var t = c.totals;
    var table = el("table", {}, [el("thead", {}, [el("tr", {}, ["device", "phase", "progress", "rate", "result"].map(function (h) { return el("th", {}, [h]); }))])]);
    var body = el("tbody");
    Array.from(c.rows.values()).sort(function (a, b) { return (a.rank || 1e9) - (b.rank || 1e9) || (a.id < b.id ? -1 : 1); }).forEach(function (d) {
      var pct = d.total ? Math.min(100, Math.round(100 * d.bytes / d.total)) : d.phase === "done" ? 100 : 0;
      body.append(el("tr", { "data-device": d.id, "data-phase": d.phase, "data-bytes": String(d.bytes || 0), "data-total": String(d.total || 0) }, [
        el("td", {}, [d.id]), el("td", { class: "phase-" + d.phase }, [d.phase]),
        el("td", {}, [el("span", { class: "bar" }, [el("span", { style: "width:" + pct + "%" })]), " " + pct + " %"]),
        el("td", {}, [rate(d.bps)]), el("td", {}, [d.outcome ? d.outcome + (d.code && d.code !== "ok" ? " (" + d.code + ")" : "") : ""]),
      ]));
    });
    table.append(body);
    var img = c.image ? c.image.name + " " + c.image.version : "";
    box.append(el("div", { class: "campaign", "data-campaign": c.id, "data-state": c.state }, [
      el("h3", {}, [c.id + " — " + img + " — " + c.state + (t ? " — " + t.done + "/" + t.devices + " done, " + rate(t.bps) : "")]), table,
    ]));
  });
}
function renderHistory() {
  var body = document.querySelector("#history tbody");
  body.replaceChildren();
  Array.from(campaigns.values()).forEach(function (c) {
    body.append(el("tr", { "data-campaign": c.id, "data-state": c.state }, [
      el("td", {}, [c.id]), el("td", {}, [c.image ? c.image.name + " " + c.image.version : ""]), el("td", {}, [c.state]), el("td", {}, [when(c.startedAt)]),
      el("td", {}, [c.devices]), el("td", {}, [c.updated]), el("td", {}, [c.failed]), el("td", {}, [c.rolledBack]), el("td", {}, [c.skipped]), el("td", {}, [dur(c.durationMs)]),
    ]));
  });
}
function render() { renderFleet(); renderRunning(); renderHistory(); }
// Events that arrive while a campaign is fetched are newer than the fetched copy: rows they
// touched keep what the events said.
// Of two fetches of one campaign in flight, only the later one's answer is used: the earlier one
// may come back last and would put older phases over what the events showed since.
var fetching = new Map();
var fetches = new Map();
function loadCampaign(id) {
  var touched = new Set();
  var n = (fetches.get(id) || 0) + 1;
  fetches.set(id, n);
  fetching.set(id, touched);
  return getJson("/api/campaigns/" + encodeURIComponent(id)).then(function (c) {
    if (fetches.get(id) !== n) return;
    fetching.delete(id);
    var fresh = campaignBox(c);
    var old = campaigns.get(id);
    if (old && old.rows) touched.forEach(function (dev) { if (old.rows.has(dev)) fresh.rows.set(dev, old.rows.get(dev)); });
    if (old && old.totals && touched.has("")) fresh.totals = old.totals;
    campaigns.set(id, fresh);
    render();
  }, function () { if (fetches.get(id) === n) fetching.delete(id); });
}
function touch(id, dev) { var t = fetching.get(id); if (t) t.add(dev); }
function load() {
  return Promise.all([getJson("/api/fleet"), getJson("/api/campaigns")]).then(function (res) {
    fleet.clear(); res[0].devices.forEach(function (d) { fleet.set(d.id, d); });
    campaigns.clear(); res[1].campaigns.forEach(function (c) { campaigns.set(c.id, campaignBox(c)); });
    render();
    return Promise.all(res[1].campaigns.filter(function (c) { return c.live; }).map(function (c) { return loadCampaign(c.id); }));
  });
}
function withCampaign(id, dev, fn) { touch(id, dev); var c = campaigns.get(id); if (c && c.rows) { fn(c); renderRunning(); } else if (!fetching.has(id)) { loadCampaign(id); } }
var es;
function follow() {
  es = new EventSource(api("/api/events"));
  es.onopen = function () { document.getElementById("conn").textContent = "live"; load(); };
  es.onerror = function () { document.getElementById("conn").textContent = "reconnecting…"; };
  es.addEventListener("device", function (e) { var d = JSON.parse(e.data); fleet.set(d.id, Object.assign(fleet.get(d.id) || {}, d)); renderFleet(); });
  es.addEventListener("campaign", function () { getJson("/api/campaigns").then(function (r) { r.campaigns.forEach(function (c) { var old = campaigns.get(c.id); campaigns.set(c.id, Object.assign(old || campaignBox(c), c)); if (!old && c.live && !fetching.has(c.id)) loadCampaign(c.id); }); render(); }); });
  es.addEventListener("order", function (e) {
    var o = JSON.parse(e.data);
    withCampaign(o.campaign, "", function (c) {
      c.order = o;
      o.devices.forEach(function (d) { var x = c.rows.get(d.id); if (x) { x.rank = d.rank; } else { c.rows.set(d.id, { id: d.id, phase: "queued", bytes: 0, total: 0, rank: d.rank }); } });
    });
  });
  es.addEventListener("progress", function (e) { var p = JSON.parse(e.data); withCampaign(p.campaign, p.id, function (c) { c.rows.set(p.id, Object.assign(c.rows.get(p.id) || {}, p)); }); });
  es.addEventListener("totals", function (e) { var t = JSON.parse(e.data); withCampaign(t.campaign, "", function (c) { c.totals = t; }); });
  es.addEventListener("result", function (e) { var r = JSON.parse(e.data); withCampaign(r.campaign, r.id, function (c) { var x = c.rows.get(r.id) || { id: r.id }; x.outcome = r.outcome; x.code = r.code; x.phase = r.outcome === "updated" ? "done" : r.outcome; c.rows.set(r.id, x); }); });
  es.addEventListener("complete", function (e) { var m = JSON.parse(e.data); loadCampaign(m.campaign); getJson("/api/fleet").then(function (f) { f.devices.forEach(function (d) { fleet.set(d.id, d); }); renderFleet(); }); });
}
follow();
</script>
</body>
</html>
`;
