// The inspector's pure parts: the Host/Origin guard, "Copy as curl" (its quoting checked
// by a real shell), the replay request builder and HAR entries of odd exchanges.

import assert from "node:assert/strict";
import { curlCommand, shellQuote } from "../lib/client/inspector/curl.ts";
import { isOwnHost, refusal } from "../lib/client/inspector/guard.ts";
import { harEntry } from "../lib/client/inspector/har.ts";
import { replayRequest } from "../lib/client/inspector/replay.ts";
import { CaptureStore } from "../lib/client/inspector/store.ts";
import { latin1Text } from "../lib/bytes.ts";
import { encode, needs } from "./helpers.ts";
import { checkHar } from "./har_check.ts";

Deno.test("isOwnHost(): loopback names and the bound address with its port; IPs on a wildcard", () => {
  const yes: [string, string][] = [
    ["127.0.0.1:4040", "127.0.0.1"],
    ["LOCALHOST:4040", "127.0.0.1"],
    ["[::1]:4040", "127.0.0.1"],
    ["192.168.1.5:4040", "192.168.1.5"],
    ["10.0.0.7:4040", "0.0.0.0"],
    ["[fe80::1]:4040", "::"],
  ];
  const no: [string, string][] = [
    ["evil.example:4040", "127.0.0.1"],
    ["127.0.0.1:4041", "127.0.0.1"],
    ["127.0.0.1", "127.0.0.1"],
    ["localhost.evil.example:4040", "0.0.0.0"],
    ["10.0.0.7:4040", "127.0.0.1"],
    ["", "127.0.0.1"],
  ];
  for (const [host, bound] of yes) assert.ok(isOwnHost(host, bound, 4040), `${host} on ${bound}`);
  for (const [host, bound] of no) assert.ok(!isOwnHost(host, bound, 4040), `${host} on ${bound}`);
  const req = {
    method: "POST",
    path: "/api/requests/1/replay",
    host: "127.0.0.1:4040",
    origin: null as string | null,
    fetchSite: null as string | null,
    fetchMode: null as string | null,
  };
  assert.equal(refusal(req, "127.0.0.1", 4040), undefined);
  assert.equal(refusal({ ...req, origin: "http://localhost:4040" }, "127.0.0.1", 4040), undefined);
  assert.match(refusal({ ...req, origin: "https://127.0.0.1:4040" }, "127.0.0.1", 4040)!, /Origin/);
  assert.match(refusal({ ...req, host: null }, "127.0.0.1", 4040)!, /Host/);
  const page = { ...req, method: "GET", path: "/", fetchSite: "cross-site", fetchMode: "navigate" };
  assert.equal(refusal(page, "127.0.0.1", 4040), undefined, "a link from elsewhere opens the page");
});

const awkward = [
  "plain",
  "it's",
  "tab\there",
  "line\nbreak",
  'back\\slash $HOME `x` "q"',
  "bell\x07 and é",
  "",
];

Deno.test({
  name: "shellQuote() survives bash for any text",
  ...needs("bash"),
  async fn() {
    for (const text of awkward) {
      const out = await new Deno.Command("bash", {
        args: ["-c", `printf %s ${shellQuote(text)}`],
        stdout: "piped",
      }).output();
      assert.equal(new TextDecoder().decode(out.stdout), text, JSON.stringify(text));
    }
  },
});

Deno.test("curlCommand(): method, URL, headers curl does not write itself, and the body", () => {
  const request = {
    method: "POST",
    url: "https://demo.tunnel.example/api?x=1",
    headers: [["Host", "demo.tunnel.example"], ["Content-Type", "application/json"], [
      "Content-Length",
      "7",
    ]] as [string, string][],
    body: encode('{"a":1}'),
    truncated: false,
  };
  assert.equal(
    curlCommand(request),
    "curl 'https://demo.tunnel.example/api?x=1' -H 'Content-Type: application/json' " +
      `--data-raw '{"a":1}'`,
  );
  assert.equal(
    curlCommand({ ...request, method: "PUT", body: Uint8Array.from([0, 255]), headers: [] }),
    "printf %s AP8= | base64 -d | curl -X PUT 'https://demo.tunnel.example/api?x=1' " +
      "--data-binary @-",
  );
  assert.equal(
    curlCommand({ ...request, method: "HEAD", body: new Uint8Array(), headers: [] }),
    "curl -I 'https://demo.tunnel.example/api?x=1'",
  );
  assert.match(curlCommand({ ...request, truncated: true }), /# the inspector kept only part/);
});

function captured(head: string, body = "", kept = Infinity) {
  const store = new CaptureStore({ limit: 10, bodyBudgetBytes: 1e6, maxBodyBytes: kept });
  const entry = store.open({
    startedAt: Date.UTC(2025, 0, 2, 3, 4, 5),
    visitor: "198.51.100.1:4321",
    scheme: "https",
    method: head.split(" ")[0]!,
    target: head.split(" ")[1]!,
    requestHead: encode(head),
    replayOf: undefined,
  });
  entry.request.chunked = /chunked/i.test(head);
  if (body) store.keep(entry, entry.request, encode(body));
  return entry;
}

Deno.test("replayRequest(): the body goes with a Content-Length; upgrades and cut bodies are refused", () => {
  const chunked = captured(
    "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    "2\r\nhi\r\n0\r\n\r\n",
  );
  const ok = replayRequest(chunked, {});
  assert.ok(ok.ok);
  assert.equal(
    latin1Text(ok.head.bytes),
    "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n",
  );
  assert.equal(latin1Text(ok.body), "hi");
  const edited = replayRequest(chunked, { method: "GET", headers: [["Host", "h"]], body: "" });
  assert.ok(edited.ok);
  assert.equal(latin1Text(edited.head.bytes), "GET /up HTTP/1.1\r\nHost: h\r\n\r\n");
  const upgrade = captured("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
  assert.deepEqual(replayRequest(upgrade, {}), {
    ok: false,
    status: 409,
    reason: "an upgrade (WebSocket) is not replayed",
  });
  const cut = captured("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n", "0123456789", 4);
  assert.match((replayRequest(cut, {}) as { reason: string }).reason, /only 4 of 10/);
  assert.ok(replayRequest(cut, { body: "new" }).ok, "an edited body replaces what was cut");
  for (
    const [edit, reason] of [
      [{ method: "GE T" }, /invalid method/],
      [{ target: "/a b" }, /invalid target/],
      [{ headers: [["X", "a\r\nInjected: 1"]] }, /invalid value/],
      [{ headers: [] }, /needs a Host/],
      [{ bodyBase64: "***" }, /not base64/],
    ] as const
  ) {
    const refused = replayRequest(chunked, edit as Parameters<typeof replayRequest>[1]);
    assert.ok(!refused.ok);
    assert.match(refused.reason, reason);
  }
});

Deno.test("harEntry(): a binary body is base64, an exchange without answer has status 0", () => {
  const entry = captured("PUT /bin HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n");
  entry.request.add(Uint8Array.from([0xff, 0, 0x80]), 3);
  entry.problem = "no response";
  entry.durationMs = 12.5;
  const har = harEntry(entry);
  assert.equal(har.request.url, "https://h/bin");
  assert.deepEqual(har.request.postData, { mimeType: "", text: "/wCA", comment: "base64" });
  assert.equal(har.response.status, 0);
  assert.equal(har.response._error, "no response");
  assert.equal(har.response.bodySize, -1);
  assert.equal(har.startedDateTime, "2025-01-02T03:04:05.000Z");
  checkHar({ log: { version: "1.2", creator: { name: "t", version: "1" }, entries: [har] } });
});
