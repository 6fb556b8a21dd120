// The inspector page's script: the live list (server-sent events), filters, the
// detail with body views, replay, "Copy as curl". Captured content goes into the
// page as text only (textContent, never HTML).

import { BODY_VIEWS_SCRIPT } from "./page_body_views.ts";

/** `/inspector.js`. */
export const PAGE_SCRIPT = String.raw`"use strict";
(function () {
  var MAX_DECODED = 8 * 1024 * 1024;
  var MAX_SHOWN = 256 * 1024;
  var items = new Map();
  var rows = new Map();
  var limit = 500;
  var selected = null;
  var current = null;
  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function bytes(n) {
    if (n < 1000) return n + " B";
    var units = ["KB", "MB", "GB"];
    var v = n / 1000, u = 0;
    while (v >= 999.95 && u < units.length - 1) { v /= 1000; u++; }
    return v.toFixed(1) + " " + units[u];
  }
  function duration(ms) {
    if (ms === null) return "";
    return ms < 1000 ? ms.toFixed(1) + " ms" : (ms / 1000).toFixed(1) + " s";
  }
  function time(iso) {
    var d = new Date(iso);
    function two(n) { return String(n).padStart(2, "0"); }
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }
  function statusText(r) {
    if (r.upgrade === "websocket") return "101 ⇄";
    if (r.status !== null) return String(r.status);
    return r.state === "pending" ? "…" : "---";
  }
  function statusClass(r) {
    return r.status === null ? (r.state === "pending" ? "" : "snone") : "s" + String(r.status)[0];
  }
  function sizeText(r) {
    if (r.websocket) {
      return "↑" + r.websocket.fromVisitor.messages + " ↓" + r.websocket.fromApp.messages + " msg";
    }
    return bytes(r.responseBytes);
  }

  // The list: one row per exchange, newest first; filters hide rows.
  function matches(r) {
    var q = $("q").value.trim().toLowerCase();
    var m = $("method").value;
    var s = $("status").value;
    if (m === "other" ? ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
      .indexOf(r.method) >= 0 : m && r.method !== m) return false;
    if (s === "none" ? r.status !== null : s && (r.status === null || String(r.status)[0] !== s)) {
      return false;
    }
    if (!q) return true;
    var hay = (r.method + " " + r.target + " " + (r.status === null ? "" : r.status) + " " +
      r.visitor + " " + (r.upgrade || "") + " " + (r.problem || "") + " " + (r.tunnel || ""))
      .toLowerCase();
    return hay.indexOf(q) >= 0;
  }
  function fill(tr, r) {
    tr.textContent = "";
    var path = el("td", null, "c-path");
    if (r.replayOf !== null) path.appendChild(el("span", "↻ ", "replay"));
    if (r.tunnel) path.appendChild(el("span", r.tunnel + " ", "tunnel")); // a client with several
    path.appendChild(document.createTextNode(r.target));
    path.title = r.target + (r.problem ? " (" + r.problem + ")" : "");
    tr.appendChild(el("td", time(r.startedAt), "c-time"));
    tr.appendChild(el("td", r.method, "c-method"));
    tr.appendChild(path);
    tr.appendChild(el("td", statusText(r), "c-status " + statusClass(r)));
    tr.appendChild(el("td", duration(r.durationMs), "c-duration"));
    tr.appendChild(el("td", sizeText(r), "c-size"));
    tr.appendChild(el("td", r.visitor, "c-visitor"));
    tr.hidden = !matches(r);
    tr.classList.toggle("selected", r.id === selected);
  }
  function put(r) {
    var fresh = !items.has(r.id);
    items.set(r.id, r);
    var tr = rows.get(r.id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.id = String(r.id);
      rows.set(r.id, tr);
      var body = $("rows");
      var before = null;
      for (var i = 0; i < body.children.length; i++) {
        if (Number(body.children[i].dataset.id) < r.id) { before = body.children[i]; break; }
      }
      body.insertBefore(tr, before);
    }
    fill(tr, r);
    if (fresh) trim();
  }
  function trim() {
    while (items.size > limit) {
      var oldest = Math.min.apply(null, Array.from(items.keys()));
      items.delete(oldest);
      var tr = rows.get(oldest);
      if (tr) tr.remove();
      rows.delete(oldest);
    }
  }
  function counts() {
    var shown = 0;
    rows.forEach(function (tr) { if (!tr.hidden) shown++; });
    $("count").textContent = shown === items.size ? items.size + " requests"
      : shown + " of " + items.size + " requests";
    $("empty").hidden = items.size > 0;
  }
  function refilter() {
    items.forEach(function (r) { rows.get(r.id).hidden = !matches(r); });
    counts();
  }
  function reset(data) {
    limit = data.limit;
    items.clear();
    rows.clear();
    $("rows").textContent = "";
    data.requests.slice().reverse().forEach(put);
    counts();
    if (selected !== null && !items.has(selected)) close();
  }
  function connect() {
    var events = new EventSource("/api/events");
    events.addEventListener("reset", function (e) { reset(JSON.parse(e.data)); });
    events.addEventListener("exchange", function (e) {
      var r = JSON.parse(e.data);
      var before = items.get(r.id);
      put(r);
      counts();
      if (r.id === selected && (!before || before.state !== r.state ||
        before.status !== r.status || JSON.stringify(before.websocket) !== JSON.stringify(r.websocket))) {
        show(r.id, true);
      }
    });
  }

  // The detail of one exchange.
  function close() {
    selected = null;
    current = null;
    document.body.classList.remove("open");
    $("detail").hidden = true;
    rows.forEach(function (tr) { tr.classList.remove("selected"); });
  }
  function note(text) { $("d-note").textContent = text; }
  function show(id, quiet) {
    selected = id;
    rows.forEach(function (tr, key) { tr.classList.toggle("selected", key === id); });
    document.body.classList.add("open");
    $("detail").hidden = false;
    if (!quiet) { note(""); $("editor").hidden = true; $("d-curl").hidden = true; }
    return fetch("/api/requests/" + id).then(function (res) {
      if (!res.ok) throw new Error("gone: cleared, or older than the last " + limit);
      return res.json();
    }).then(function (d) {
      if (selected !== id) return;
      current = d;
      $("d-title").textContent = "#" + d.id + " " + d.method + " " + d.url + " → " +
        (d.status === null ? (d.problem || "no response") : d.status) +
        (d.durationMs === null ? "" : " in " + duration(d.durationMs));
      var original = $("d-original");
      original.hidden = d.replayOf === null;
      original.textContent = d.replayOf === null ? "" : "Replay of #" + d.replayOf;
      var ws = d.websocket;
      if (ws) {
        note("WebSocket " + (d.state === "open" ? "open" : "closed") + ": " +
          ws.fromVisitor.messages + " messages from the visitor, " + ws.fromApp.messages +
          " from the app");
      } else if (d.problem && !quiet) note(d.problem);
      $("replay").disabled = $("edit").disabled = !d.request.head || !!d.upgrade;
      $("curl").disabled = !d.curl;
      $("req-head").textContent = d.request.head ? d.request.head.raw : "(not readable)";
      $("res-head").textContent = d.response.head ? d.response.head.raw
        : (d.state === "pending" ? "(waiting for the app)" : "(no response)");
      renderBody($("req-body"), d.request.body, id);
      renderBody($("res-body"), d.response.body, id);
    }).catch(function (e) { note(String(e.message || e)); });
  }

${BODY_VIEWS_SCRIPT}
  function replay(edit) {
    if (!current) return;
    var from = current.id;
    note("Replaying #" + from + "…");
    fetch("/api/requests/" + from + "/replay", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(edit || {}),
    }).then(function (res) {
      return res.json().then(function (data) {
        if (!res.ok) throw new Error(data.error || res.statusText);
        return data;
      });
    }).then(function (data) {
      $("editor").hidden = true;
      return show(data.id).then(function () {
        note("Replay of #" + from + (data.error ? ": " + data.error : ""));
      });
    }).catch(function (e) { note("Replay failed: " + e.message); });
  }
  function openEditor() {
    if (!current || !current.request.head) return;
    $("e-method").value = current.method;
    $("e-target").value = current.target;
    $("e-headers").value = current.request.head.headers.filter(function (h) {
      return ["content-length", "transfer-encoding"].indexOf(h[0].toLowerCase()) < 0;
    }).map(function (h) { return h[0] + ": " + h[1]; }).join("\n");
    var box = $("e-body");
    box.value = "";
    box.disabled = false;
    var body = current.request.body;
    if (body.contentBytes > 0) {
      fetch(body.url).then(function (r) { return r.arrayBuffer(); }).then(function (b) {
        try { box.value = new TextDecoder("utf-8", { fatal: true }).decode(b); } catch (e) {
          box.value = "";
          box.placeholder = "(binary body: replay it as it was, or type a new one)";
        }
      });
    }
    $("editor").hidden = false;
    $("e-method").focus();
  }
  function sendEdited(e) {
    e.preventDefault();
    var headers = $("e-headers").value.split("\n").map(function (line) {
      return line.replace(/\r$/, "");
    }).filter(function (line) { return line.trim() !== ""; }).map(function (line) {
      var at = line.indexOf(":");
      return at < 0 ? [line.trim(), ""] : [line.slice(0, at).trim(), line.slice(at + 1).trim()];
    });
    replay({ method: $("e-method").value.trim(), target: $("e-target").value.trim(),
      headers: headers, body: $("e-body").value });
  }
  function copyCurl() {
    if (!current || !current.curl) return;
    var text = current.curl;
    var area = $("d-curl");
    function fallback() {
      area.value = text;
      area.hidden = false;
      area.select();
      note("Select and copy the command below");
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () {
        area.value = text;
        area.hidden = false;
        note("Copied the curl command");
      }, fallback);
    } else fallback();
  }

  $("rows").addEventListener("click", function (e) {
    var tr = e.target.closest("tr");
    if (tr) show(Number(tr.dataset.id));
  });
  $("back").addEventListener("click", close);
  $("replay").addEventListener("click", function () { replay({}); });
  $("edit").addEventListener("click", openEditor);
  $("e-cancel").addEventListener("click", function () { $("editor").hidden = true; });
  $("editor").addEventListener("submit", sendEdited);
  $("curl").addEventListener("click", copyCurl);
  $("d-original").addEventListener("click", function () {
    if (current && current.replayOf !== null) show(current.replayOf);
  });
  $("clear").addEventListener("click", function () {
    fetch("/api/requests", { method: "DELETE" }).then(function () { close(); });
  });
  ["q", "method", "status"].forEach(function (id) {
    $(id).addEventListener("input", refilter);
  });
  fetch("/api/status").then(function (r) { return r.json(); }).then(function (s) {
    $("tunnel").textContent = (s.url || "(connecting)") + " → " + s.local;
  }).catch(function () {});
  connect();
})();
`;
