/// The console page served at `/`: one self-contained document (no external script, style or font;
/// the charts are SVG drawn by its own script) that polls `api/status` once a second.
/// It holds no data and no secret: everything comes from the API, a `?token=` is moved out of the
/// address bar into the tab's session storage and sent as `Authorization: Bearer`.
enum ConsolePage {
    static let html = #"""
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice console</title>
<style>
:root { --fg:#1d2430; --muted:#667085; --line:#e4e7ec; --bg:#f7f8fa; --ok:#12805c; --warn:#b54708; --bad:#c0262d; --blue:#2e6bd9; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; gap:16px; align-items:baseline; padding:12px 20px; background:#fff; border-bottom:1px solid var(--line); }
header h1 { font-size:18px; margin:0; }
#conn.down { color:var(--bad); font-weight:600; }
main { padding:8px 20px 40px; max-width:1400px; }
h2 { font-size:15px; margin:22px 0 8px; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-weight:600; color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.03em; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.muted { color:var(--muted); }
.state { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; color:#fff; background:var(--muted); }
.state.running { background:var(--ok); } .state.retrying, .state.starting { background:var(--warn); }
.state.failed { background:var(--bad); } .state.stopped { background:#475467; }
.reason { color:var(--bad); font-size:12px; max-width:520px; word-break:break-word; }
.sinks { display:grid; grid-template-columns:repeat(auto-fill, minmax(440px, 1fr)); gap:12px; }
.sink { background:#fff; border:1px solid var(--line); border-radius:6px; padding:12px; }
.sink h3 { margin:0 0 6px; font-size:15px; display:flex; gap:8px; align-items:center; }
.facts { display:flex; flex-wrap:wrap; gap:4px 18px; margin:6px 0; }
.facts b { font-variant-numeric:tabular-nums; }
.bar { height:10px; background:var(--line); border-radius:5px; overflow:hidden; min-width:120px; }
.bar > span { display:block; height:100%; background:var(--blue); }
.bar.over > span { background:var(--bad); }
svg text { font-size:10px; fill:var(--muted); }
.stale main { opacity:.55; }
</style></head>
<body>
<header><h1>Sluice</h1><span id="daemon" class="muted">connecting…</span><span id="conn" class="muted"></span></header>
<main id="main"><p class="muted">Waiting for the first status…</p></main>
<script>
"use strict";
const params = new URLSearchParams(location.search);
if (params.has("token")) {
  sessionStorage.setItem("sluice-token", params.get("token"));
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
}
const token = sessionStorage.getItem("sluice-token");
let lastOK = null;

const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const num = n => n == null ? "–" : Number(n).toLocaleString("en-US");
const rate = n => n == null ? "–" : (n >= 100 ? Math.round(n).toLocaleString("en-US") : Number(n).toFixed(1));
function bytes(n) {
  if (n == null) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0, v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return i ? v.toFixed(1) + " " + u[i] : n + " B";
}
function secs(s) {
  if (s == null) return "–";
  if (s < 1) return s.toFixed(2) + " s";
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function ago(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  return `<span title="${esc(t.toISOString())}">${esc(t.toLocaleTimeString())} (${secs(Math.max(0, (Date.now() - t) / 1000))} ago)</span>`;
}
const state = (s, extra) => `<span class="state ${esc(s)}" data-state="${esc(s)}">${esc(s)}</span>`;

// The smallest 1, 2 or 5 times a power of ten at or above v (the chart's top).
function nice(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  return [1, 2, 5, 10].map(m => m * p).find(m => m >= v);
}

// A line chart of history[i][index] over the last `span` seconds, drawn as SVG.
function chart(history, index, span, label, format, color) {
  const w = 420, h = 90, left = 44, bottom = 16, top = 12;
  const now = history.length ? history[history.length - 1][0] : Date.now() / 1000;
  const points = history.filter(p => p[0] >= now - span);
  const max = nice(Math.max(0, ...points.map(p => p[index])));
  const x = t => left + (w - left - 4) * (1 - (now - t) / span);
  const y = v => top + (h - top - bottom) * (1 - v / max);
  const line = points.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[index]).toFixed(1)).join("");
  const area = points.length ? line + `L${x(points[points.length - 1][0]).toFixed(1)},${y(0)}L${x(points[0][0]).toFixed(1)},${y(0)}Z` : "";
  const last = points.length ? points[points.length - 1][index] : null;
  const grid = [0, 0.5, 1].map(f => `<line x1="${left}" x2="${w - 4}" y1="${y(max * f)}" y2="${y(max * f)}" stroke="#e4e7ec"/>`
    + `<text x="${left - 4}" y="${y(max * f) + 3}" text-anchor="end">${esc(format(max * f))}</text>`).join("");
  const ticks = [900, 600, 300, 0].filter(s => s <= span).map(s =>
    `<text x="${x(now - s)}" y="${h - 3}" text-anchor="${s ? "middle" : "end"}">${s ? "-" + s / 60 + " min" : "now"}</text>`).join("");
  return `<svg viewBox="0 0 ${w} ${h}" width="100%" role="img" aria-label="${esc(label)}"><title>${esc(label)}</title>${grid}${ticks}`
    + `<path d="${area}" fill="${color}" fill-opacity=".12"/><path d="${line}" fill="none" stroke="${color}" stroke-width="1.5"/>`
    + `<text x="${left + 4}" y="10" style="fill:#1d2430">${esc(label)}: ${esc(last == null ? "–" : format(last))}</text></svg>`;
}

function walCell(s) {
  if (s.retained_wal_bytes == null) return "–";
  const limit = s.retained_wal_warning_bytes;
  if (!limit) return bytes(s.retained_wal_bytes);
  const f = s.retained_wal_bytes / limit;
  return `<div class="bar${f > 1 ? " over" : ""}" title="warning at ${esc(bytes(limit))}"><span style="width:${Math.min(100, f * 100).toFixed(1)}%"></span></div>`
    + `${esc(bytes(s.retained_wal_bytes))} <span class="muted">of ${esc(bytes(limit))}</span>`;
}

function render(d) {
  const span = d.history_seconds || 900;
  let out = `<h2>Sources</h2><table><tr><th>source</th><th>state</th><th>slot</th><th>confirmed LSN</th><th>retained WAL</th><th class="num">events/s</th><th>reason</th></tr>`;
  for (const s of d.sources) {
    out += `<tr data-source="${esc(s.name)}"><td><b>${esc(s.name)}</b> <span class="muted">${esc(s.type)}</span></td><td>${state(s.state)}</td>`
      + `<td>${esc(s.slot ?? "–")}</td><td>${esc(s.confirmed_flush_lsn ?? "–")}</td><td>${walCell(s)}</td>`
      + `<td class="num">${rate(s.events_per_second)}</td><td class="reason">${esc(s.error ?? s.warning ?? "")}</td></tr>`;
  }
  out += `</table><h2>Topics</h2><table><tr><th>topic</th><th class="num">first</th><th class="num">end</th><th class="num">events</th>`
    + `<th class="num">size</th><th class="num">events/s</th><th>last commit</th><th></th></tr>`;
  for (const t of d.topics) {
    out += `<tr data-topic="${esc(t.name)}"><td><b>${esc(t.name)}</b></td><td class="num">${num(t.first_offset)}</td><td class="num">${num(t.end_offset)}</td>`
      + `<td class="num">${num(t.events)}</td><td class="num">${bytes(t.size_bytes)}</td><td class="num">${rate(t.events_per_second)}</td>`
      + `<td>${esc(t.last_commit_time ?? "–")}</td><td class="reason">${t.damage ? "DAMAGED: " + esc(t.damage) : esc(t.note ?? "")}</td></tr>`;
  }
  out += `</table><h2>Sinks</h2><div class="sinks">`;
  for (const k of d.sinks) {
    const positions = k.topics.map(p => `${esc(p.topic)} @ <b>${num(p.committed_offset)}</b> <span class="muted">${esc(p.lsn ?? "")}</span>`).join(", ");
    out += `<div class="sink" data-sink="${esc(k.name)}"><h3>${esc(k.name)} <span class="muted">${esc(k.type)}</span> ${state(k.state)}</h3>`
      + `<div class="facts"><span>position ${positions || "–"}</span><span>lag <b class="lag-events">${num(k.lag_events)}</b> events</span>`
      + `<span>lag <b class="lag-seconds">${secs(k.lag_seconds)}</b></span><span><b>${rate(k.events_per_second)}</b> events/s</span></div>`
      + (k.error ? `<div class="reason">${esc(k.state)} since ${ago(k.since)}: <span class="error">${esc(k.error)}</span></div>`
         : k.last_error ? `<div class="muted">last error ${ago(k.last_error_at)}: <span class="last-error">${esc(k.last_error)}</span></div>` : "")
      + chart(k.history || [], 1, span, "lag (events)", num, "#2e6bd9")
      + chart(k.history || [], 2, span, "lag (seconds)", secs, "#b54708") + `</div>`;
  }
  out += `</div>`;
  if (d.backfills && d.backfills.length) {
    out += `<h2>Backfills</h2><table><tr><th>source</th><th>backfill</th><th>progress</th><th class="num">rows</th><th>ETA</th></tr>`;
    for (const b of d.backfills) {
      const f = b.total_rows ? Math.min(1, b.copied_rows / b.total_rows) : 0;
      out += `<tr data-backfill="${esc(b.source)}"><td>${esc(b.source)}</td><td>${esc(b.id)} <span class="muted">${esc(b.tables.map(t => t.table).join(", "))}</span></td>`
        + `<td><div class="bar"><span style="width:${(f * 100).toFixed(1)}%"></span></div>${(f * 100).toFixed(1)}%</td>`
        + `<td class="num">${num(b.copied_rows)} / ${num(b.total_rows)}</td><td>${b.eta_seconds == null ? "–" : secs(b.eta_seconds)}</td></tr>`;
    }
    out += `</table>`;
  }
  out += `<h2>Recent state changes</h2><table><tr><th>time</th><th>component</th><th>change</th><th>reason</th></tr>`;
  for (const c of (d.changes || [])) {
    out += `<tr class="change"><td>${ago(c.at)}</td><td>${esc(c.kind)} <b>${esc(c.name)}</b></td>`
      + `<td>${c.from ? state(c.from) + " → " : ""}${state(c.to)}</td><td class="reason">${esc(c.reason ?? "")}</td></tr>`;
  }
  out += `</table>`;
  document.getElementById("main").innerHTML = out;
  document.getElementById("daemon").textContent = d.daemon.running ? `daemon pid ${d.daemon.pid}` : "daemon not running";
}

async function poll() {
  const conn = document.getElementById("conn");
  try {
    const response = await fetch("api/status", { cache: "no-store", headers: token ? { Authorization: "Bearer " + token } : {},
                                                 signal: AbortSignal.timeout(2500) });
    if (response.status === 401) throw new Error("401: open this page as /?token=<metrics.token>");
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    lastOK = new Date();
    conn.className = "muted";
    conn.textContent = "updated " + lastOK.toLocaleTimeString();
    document.body.classList.remove("stale");
  } catch (error) {
    conn.className = "down";
    conn.textContent = (String(error.message).startsWith("401") ? error.message : "daemon unreachable")
      + (lastOK ? " — last update " + lastOK.toLocaleTimeString() : "");
    document.body.classList.add("stale");
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body></html>
"""#
}
