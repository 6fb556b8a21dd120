// The inspector page's body views, a part of its script (lib/client/inspector/page_script.ts):
// a body decoded (gzip, br, deflate) with a bound, then shown raw, as JSON, form
// fields, text or hex. Captured content goes into the page as text only.

/** The body views' functions, inserted into the page script's scope. */
export const BODY_VIEWS_SCRIPT = String.raw`
  // Bodies: fetched as bytes, decoded (gzip, br, deflate) in the browser, shown as text.
  function decode(data, coding) {
    var formats = { gzip: ["gzip"], "x-gzip": ["gzip"], br: ["brotli"], deflate: ["deflate", "deflate-raw"] };
    var list = formats[coding];
    if (!list) return Promise.reject(new Error("cannot decode " + coding));
    function attempt(i) {
      var stream;
      try { stream = new DecompressionStream(list[i]); } catch (e) {
        return Promise.reject(new Error("this browser cannot decode " + coding));
      }
      var reader = new Blob([data]).stream().pipeThrough(stream).getReader();
      var parts = [], size = 0;
      function next() {
        return reader.read().then(function (step) {
          if (step.done) return join(parts, size);
          size += step.value.length;
          if (size > MAX_DECODED) { reader.cancel(); throw new Error("decoded body over 8 MiB"); }
          parts.push(step.value);
          return next();
        });
      }
      return next().catch(function (e) {
        if (i + 1 < list.length) return attempt(i + 1);
        throw e;
      });
    }
    return attempt(0);
  }
  function join(parts, size) {
    var out = new Uint8Array(size), at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }
  function hex(data) {
    var lines = [], n = Math.min(data.length, 64 * 1024);
    for (var at = 0; at < n; at += 16) {
      var row = data.subarray(at, Math.min(at + 16, n));
      var h = "", a = "";
      for (var i = 0; i < 16; i++) {
        h += i < row.length ? row[i].toString(16).padStart(2, "0") + " " : "   ";
        if (i === 7) h += " ";
        a += i < row.length ? (row[i] >= 32 && row[i] < 127 ? String.fromCharCode(row[i]) : ".") : "";
      }
      lines.push(at.toString(16).padStart(8, "0") + "  " + h + " |" + a + "|");
    }
    if (data.length > n) lines.push("… " + bytes(data.length - n) + " more");
    return lines.join("\n");
  }
  function latin1(data) {
    var s = "", n = Math.min(data.length, MAX_SHOWN);
    for (var at = 0; at < n; at += 8192) {
      s += String.fromCharCode.apply(null, data.subarray(at, Math.min(at + 8192, n)));
    }
    return s;
  }
  function views(data, type) {
    var out = {};
    var text = null;
    try { text = new TextDecoder("utf-8", { fatal: true }).decode(data); } catch (e) { text = null; }
    if (text !== null && /[\u0000-\u0008\u000e-\u001f]/.test(text)) text = null;
    if (text !== null) {
      try { out.json = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
      if (/x-www-form-urlencoded/i.test(type || "")) out.form = new URLSearchParams(text);
      out.text = text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN) + "\n…" : text;
    }
    out.raw = latin1(data);
    out.hex = hex(data);
    out.preferred = out.json !== undefined ? "json" : out.form ? "form" : out.text !== undefined
      ? "text" : "hex";
    return out;
  }
  var LABELS = { raw: "Raw", json: "JSON", form: "Form", text: "Text", hex: "Hex" };
  function renderBody(box, body, id) {
    box.textContent = "";
    var facts = el("p", null, "facts");
    box.appendChild(facts);
    if (body.size === 0) { facts.textContent = "No body"; return; }
    var said = bytes(body.contentBytes) + (body.chunked ? " (chunked)" : "") +
      (body.truncated ? ", kept " + bytes(body.kept) + " of " + bytes(body.size) : "") +
      (body.contentType ? " · " + body.contentType : "");
    facts.textContent = said;
    var link = el("a", "Download");
    link.href = body.url;
    link.download = id + "-body.bin";
    facts.appendChild(document.createTextNode(" · "));
    facts.appendChild(link);
    if (body.contentBytes === 0) return;
    fetch(body.url).then(function (res) { return res.arrayBuffer(); }).then(function (buffer) {
      var data = new Uint8Array(buffer);
      var coding = (body.contentEncoding || "").trim().toLowerCase();
      if (!coding || coding === "identity") return { data: data };
      return decode(data, coding).then(function (decoded) {
        facts.insertBefore(document.createTextNode(" · " + coding + ": " + bytes(data.length) +
          " encoded, " + bytes(decoded.length) + " decoded"), link.previousSibling);
        return { data: decoded };
      }, function (e) {
        facts.insertBefore(document.createTextNode(" · " + coding + " not decoded: " + e.message),
          link.previousSibling);
        return { data: data };
      });
    }).then(function (got) {
      if (selected !== id) return;
      var v = views(got.data, body.contentType);
      var bar = el("div", null, "views");
      var out = el("div");
      ["json", "form", "text", "raw", "hex"].forEach(function (name) {
        if (v[name] === undefined) return;
        var b = el("button", LABELS[name]);
        b.type = "button";
        b.dataset.view = name;
        b.addEventListener("click", function () { pick(name); });
        bar.appendChild(b);
      });
      function pick(name) {
        bar.querySelectorAll("button").forEach(function (b) {
          b.setAttribute("aria-pressed", String(b.dataset.view === name));
        });
        out.textContent = "";
        if (name === "form") {
          var table = el("table", null, "form-fields");
          v.form.forEach(function (value, key) {
            var tr = el("tr");
            tr.appendChild(el("td", key));
            tr.appendChild(el("td", value));
            table.appendChild(tr);
          });
          out.appendChild(table);
        } else out.appendChild(el("pre", v[name], "view-" + name));
      }
      box.appendChild(bar);
      box.appendChild(out);
      pick(v.preferred);
    }).catch(function (e) { facts.appendChild(document.createTextNode(" · " + e.message)); });
  }

  // Actions.
`;
