// The inspector's page: one HTML file, its style and its script, dependency-free and
// shipped in the package (no CDN: it works offline). Captured content is only ever put
// in the page as text (textContent), and the CSP allows no inline script or style.

export { PAGE_STYLE } from "./page_style.ts";
export { PAGE_SCRIPT } from "./page_script.ts";

/** The page at `/`. */
export const PAGE_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Gotunnel inspector</title>
<link rel="stylesheet" href="/inspector.css">
<script src="/inspector.js" defer></script>
</head>
<body>
<header>
  <h1>Gotunnel inspector</h1>
  <span id="tunnel"></span>
  <nav>
    <a id="har" href="/api/requests.har" download="gotunnel.har">Export HAR</a>
    <button id="clear" type="button">Clear</button>
  </nav>
</header>
<div id="filters">
  <input id="q" type="search" placeholder="Filter: path, method, status, visitor" aria-label="Filter">
  <select id="method" aria-label="Method">
    <option value="">All methods</option>
    <option>GET</option><option>POST</option><option>PUT</option><option>PATCH</option>
    <option>DELETE</option><option>HEAD</option><option>OPTIONS</option>
    <option value="other">Other</option>
  </select>
  <select id="status" aria-label="Status">
    <option value="">All statuses</option>
    <option value="1">1xx, WebSocket</option><option value="2">2xx</option>
    <option value="3">3xx</option><option value="4">4xx</option><option value="5">5xx</option>
    <option value="none">No response</option>
  </select>
  <span id="count" aria-live="polite"></span>
</div>
<main>
  <section id="list-pane" aria-label="Requests">
    <table id="list">
      <thead><tr>
        <th class="c-time">Time</th><th class="c-method">Method</th><th class="c-path">Path</th>
        <th class="c-status">Status</th><th class="c-duration">Duration</th>
        <th class="c-size">Size</th><th class="c-visitor">Visitor</th>
      </tr></thead>
      <tbody id="rows"></tbody>
    </table>
    <p id="empty">No requests yet. Requests through the tunnel appear here as they happen.</p>
  </section>
  <section id="detail" aria-label="Request detail" hidden>
    <div class="bar">
      <button id="back" type="button">← List</button>
      <h2 id="d-title"></h2>
    </div>
    <div id="d-actions">
      <button id="replay" type="button">Replay</button>
      <button id="edit" type="button">Edit and replay</button>
      <button id="curl" type="button">Copy as curl</button>
      <button id="d-original" type="button" hidden></button>
    </div>
    <form id="editor" hidden>
      <div class="row">
        <label>Method <input id="e-method" required></label>
        <label class="grow">Path <input id="e-target" required></label>
      </div>
      <label>Headers (one per line: Name: value)<textarea id="e-headers" rows="8"></textarea></label>
      <label>Body<textarea id="e-body" rows="6"></textarea></label>
      <div class="row">
        <button id="e-send" type="submit">Send to the app</button>
        <button id="e-cancel" type="button">Cancel</button>
      </div>
    </form>
    <p id="d-note" role="status"></p>
    <textarea id="d-curl" readonly hidden aria-label="curl command"></textarea>
    <h3>Request</h3>
    <pre id="req-head" class="head"></pre>
    <div id="req-body" class="body"></div>
    <h3>Response</h3>
    <pre id="res-head" class="head"></pre>
    <div id="res-body" class="body"></div>
  </section>
</main>
</body>
</html>
`;
