// The dashboard: one page, its script and its style, with no dependency and
// nothing from elsewhere. The page holds no data: the script asks `/api/tunnels`
// (with the admin token, when one is needed) and writes only text nodes.

import { DASHBOARD_FETCH_TIMEOUT_MS, DASHBOARD_POLL_MS } from "../limits.ts";

/** The page's Content-Security-Policy: its own script, style and API only. */
export const DASHBOARD_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; " +
  "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; " +
  "frame-ancestors 'none'";

/** The dashboard page. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gotunnel server</title>
<link rel="icon" href="/dashboard.svg">
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head>
<body data-poll-ms="${DASHBOARD_POLL_MS}" data-timeout-ms="${DASHBOARD_FETCH_TIMEOUT_MS}">
<header>
  <h1>Gotunnel <span id="version"></span></h1>
  <span id="state" class="state">connecting…</span>
</header>
<form id="login" hidden>
  <label for="token">This server's admin token</label>
  <input id="token" type="password" autocomplete="off" required>
  <button>Show</button>
  <span id="login-error" class="error" hidden>That token was refused.</span>
</form>
<main id="main" hidden>
<section class="cards">
  <div class="card"><div class="label">Tunnels</div><div class="value" id="t-tunnels"></div></div>
  <div class="card"><div class="label">Open streams</div><div class="value" id="t-open"></div></div>
  <div class="card"><div class="label">Streams/s, last minute</div><div class="value" id="t-rate"></div></div>
  <div class="card"><div class="label">Bytes in</div><div class="value" id="t-in"></div></div>
  <div class="card"><div class="label">Bytes out</div><div class="value" id="t-out"></div></div>
  <div class="card"><div class="label">Streams relayed</div><div class="value" id="t-streams"></div></div>
</section>
<section>
<h2>Tunnels</h2>
<table id="tunnels">
<thead><tr><th>Name</th><th>Client</th><th>Connected since</th><th class="num">Open streams</th>
<th class="num">Bytes in</th><th class="num">Bytes out</th><th class="num">Streams/s (1 min)</th></tr></thead>
<tbody></tbody>
</table>
<p id="no-tunnels" class="empty" hidden>No tunnels right now.</p>
</section>
<section>
<h2>Refusals</h2>
<table id="refusals">
<thead><tr><th>Kind</th><th>Reason</th><th>Meaning</th><th class="num">Count</th></tr></thead>
<tbody></tbody>
</table>
<p id="no-refusals" class="empty" hidden>Nothing refused since the server started.</p>
</section>
<footer>
<p>A stream is one relayed public connection. The server routes a connection by its first
request and does not see the requests that follow on it, so streams/s is the rate of new
relayed connections over the last minute, not of requests. Bytes are counted when a relayed
connection ends. Up since <span id="started"></span>; updated every
<span id="every"></span> s from <a href="/api/tunnels">/api/tunnels</a>; for Prometheus:
<a href="/metrics">/metrics</a>.</p>
</footer>
</main>
</body>
</html>
`;

/** The page's icon: a tunnel mouth. */
export const DASHBOARD_ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">
<path d="M1 15V8a7 7 0 0 1 14 0v7z" fill="#0b6bcb"/><path d="M5 15V9a3 3 0 0 1 6 0v6z" fill="#fff"/>
</svg>
`;

/** The dashboard's style. */
export const DASHBOARD_CSS = `:root {
  --fg: #1d232b; --muted: #5f6b7a; --line: #e3e7ec; --bg: #f6f8fa; --card: #fff;
  --accent: #0b6bcb; --ok: #1a7f37; --bad: #cf222e;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg);
}
body { margin: 0 auto; max-width: 72rem; padding: 1.5rem; }
header { display: flex; align-items: baseline; justify-content: space-between; gap: 1rem; }
h1 { font-size: 1.4rem; margin: 0; }
h1 span { color: var(--muted); font-size: 0.9rem; font-weight: normal; }
h2 { font-size: 1.05rem; margin: 1.8rem 0 0.6rem; }
.state { font-size: 0.85rem; color: var(--muted); }
.state::before { content: "●"; margin-right: 0.35rem; }
.state.live::before { color: var(--ok); }
.state.down::before { color: var(--bad); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(10rem, 1fr)); gap: 0.8rem;
  margin-top: 1.2rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 0.8rem 1rem; }
.card .label { color: var(--muted); font-size: 0.8rem; }
.card .value { font-size: 1.5rem; font-variant-numeric: tabular-nums; margin-top: 0.2rem; }
table { width: 100%; border-collapse: collapse; background: var(--card);
  border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
th, td { text-align: left; padding: 0.45rem 0.75rem; border-bottom: 1px solid var(--line);
  white-space: nowrap; }
th { font-size: 0.8rem; color: var(--muted); font-weight: 600; background: #fbfcfd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name { font-weight: 600; color: var(--accent); }
td.meaning { color: var(--muted); white-space: normal; }
tr:last-child td { border-bottom: none; }
.empty { color: var(--muted); }
footer { margin-top: 2rem; color: var(--muted); font-size: 0.8rem; }
footer a { color: var(--accent); }
form { margin-top: 1.5rem; display: flex; gap: 0.6rem; align-items: center; flex-wrap: wrap; }
input { font: inherit; padding: 0.35rem 0.5rem; border: 1px solid var(--line); border-radius: 6px; }
button { font: inherit; padding: 0.35rem 0.9rem; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; }
.error { color: var(--bad); }
[hidden] { display: none !important; }
`;

/** The dashboard's script: polls `/api/tunnels` and writes text nodes (never HTML). */
export const DASHBOARD_JS = String.raw`"use strict";
(() => {
  const body = document.body;
  const pollMs = Number(body.dataset.pollMs) || 2000;
  const timeoutMs = Number(body.dataset.timeoutMs) || 5000;
  const KEY = "gotunnel-admin-token";
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(KEY) || "";
  let updates = 0;

  const MEANING = {
    "connection 400": "malformed request head",
    "connection 404": "no such tunnel or host",
    "connection 408": "no request head in time",
    "connection 431": "request head too large",
    "connection 502": "tunnel reconnecting",
    "connection 503": "tunnel at its stream limit",
    "connection 504": "no proxy connection in time",
    "connection limit": "too many connections being routed",
    "connection abandoned": "visitor left while waiting",
    "connection closed": "closed before routing, or no route",
    "connection tls_error": "TLS handshake failed",
    "connection proxy_refused": "PROXY header from an untrusted peer",
    "connection proxy_invalid": "trusted proxy sent no valid PROXY header",
    "handshake timeout": "client sent no first frame in time",
    "handshake closed": "client closed before its first frame",
    "handshake bad-request": "unreadable or unexpected first frame",
    "handshake version": "client speaks another protocol version",
    "registration invalid-subdomain": "malformed subdomain",
    "registration unauthorized": "missing or wrong token",
    "registration limit": "a per-IP limit",
    "registration subdomain-taken": "name in use",
    "registration subdomain-reserved": "name held for its previous client",
    "registration bad-request": "no free random name",
    "attach unauthorized": "unknown tunnel or wrong secret",
    "attach bad-request": "unexpected bytes after attach",
    "attach pool-full": "too many idle proxy connections",
  };

  const bytes = (n) => {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  };
  const rate = (x) => x === 0 ? "0" : x < 10 ? x.toFixed(2) : x.toFixed(1);
  const count = (n) => n.toLocaleString("en-US");
  const ago = (ms) => {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
    return Math.floor(s / 86400) + " d ago";
  };
  const clock = (date) => date.toLocaleTimeString("en-GB", { hour12: false });
  const row = (cells) => {
    const tr = document.createElement("tr");
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  };
  const setText = (id, text) => { $(id).textContent = text; };
  const setState = (kind, text) => {
    const state = $("state");
    state.className = "state " + kind;
    state.textContent = text;
  };

  const render = (status) => {
    const now = Date.parse(status.now);
    setText("version", status.version);
    setText("t-tunnels", count(status.totals.tunnels));
    setText("t-open", count(status.totals.openStreams));
    setText("t-rate", rate(status.totals.streamsPerSecond));
    setText("t-in", bytes(status.totals.bytesIn));
    setText("t-out", bytes(status.totals.bytesOut));
    setText("t-streams", count(status.totals.streams));
    setText("started", clock(new Date(status.startedAt)) + " (" + ago(now - Date.parse(status.startedAt)) + ")");
    const tunnels = $("tunnels").tBodies[0];
    tunnels.replaceChildren(...status.tunnels.map((t) => {
      const since = Date.parse(t.since);
      return row([
        [t.name, "name"],
        [t.client],
        [clock(new Date(since)) + " · " + ago(now - since)],
        [count(t.openStreams), "num"],
        [bytes(t.bytesIn), "num"],
        [bytes(t.bytesOut), "num"],
        [rate(t.streamsPerSecond), "num"],
      ]);
    }));
    $("tunnels").hidden = status.tunnels.length === 0;
    $("no-tunnels").hidden = status.tunnels.length > 0;
    const refused = status.refusals.filter((r) => r.count > 0);
    $("refusals").tBodies[0].replaceChildren(...refused.map((r) =>
      row([[r.kind], [r.reason], [MEANING[r.kind + " " + r.reason] || "", "meaning"], [count(r.count), "num"]])
    ));
    $("refusals").hidden = refused.length === 0;
    $("no-refusals").hidden = refused.length > 0;
    $("main").hidden = false;
    $("login").hidden = true;
    body.dataset.updates = String(++updates);
  };

  const askForToken = (refused) => {
    $("main").hidden = true;
    $("login").hidden = false;
    $("login-error").hidden = !refused;
    setState("down", "token needed");
  };

  let timer;
  const poll = async () => {
    clearTimeout(timer);
    const headers = token ? { Authorization: "Bearer " + token } : {};
    try {
      const res = await fetch("/api/tunnels", {
        headers,
        cache: "no-store",
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (res.status === 401) {
        await res.body?.cancel();
        return askForToken(token !== "");
      }
      if (!res.ok) throw new Error("HTTP " + res.status);
      render(await res.json());
      setState("live", "live · " + clock(new Date()));
    } catch {
      setState("down", "server unreachable · retrying");
    }
    timer = setTimeout(poll, pollMs);
  };

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(KEY, token);
    $("token").value = "";
    poll();
  });
  setText("every", String(pollMs / 1000));
  poll();
})();
`;
