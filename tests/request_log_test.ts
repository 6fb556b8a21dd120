// The request log: each request paired with its response on real tunnels (pipelined,
// HEAD, chunked, 100-continue, 204/304, upgrade, cut short), the CLI's lines, formatting.

import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { ExchangeTracker, type RequestRecord } from "../lib/client/exchanges.ts";
import { formatBytes, formatElapsed as formatDuration } from "../lib/units.ts";
import { formatRecord, recordStyle, requestPrinter } from "../lib/client/request_log.ts";
import { Http1Framer } from "../lib/http/framer.ts";
import type { MessageHead } from "../lib/http/head.ts";
import {
  connect,
  decode,
  encode,
  HOST,
  rawApp,
  rawRequest,
  readAll,
  readUntil,
  recordingTunnel,
  serveApp,
  sha256,
  spawnCli,
  startApp,
  startStack,
  startTestServer,
  T,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

/** A record's fields a test can check exactly (not its duration), in order. */
const brief = (r: RequestRecord) => [r.method, r.target, r.status, r.bytes, r.upgrade, r.problem];

Deno.test({
  name: "request log: pipelined GET, HEAD, chunked and POST on one connection, in order",
  ...T,
  async fn() {
    const records: RequestRecord[] = [];
    await using stack = await startStack("log", { onRequest: (r) => records.push(r) });
    const host = "Host: log.localhost\r\n";
    using conn = await connect(stack.server.addr.port);
    await writeAllTo(
      conn,
      encode(
        `GET /bytes/1234 HTTP/1.1\r\n${host}\r\n` +
          `HEAD /bytes/10 HTTP/1.1\r\n${host}\r\n` +
          `GET /chunked?x=1 HTTP/1.1\r\n${host}\r\n` +
          `POST /sha256 HTTP/1.1\r\n${host}Content-Length: 5\r\nConnection: close\r\n\r\nhello`,
      ),
    );
    const text = decode(await readAll(conn));
    conn.close();
    assert.equal(text.match(/HTTP\/1\.1 200/g)?.length, 4);
    await waitFor(() => records.length === 4, 5000, "four records");
    const chunked = text.slice(text.indexOf("transfer-encoding: chunked"));
    const chunkedBody = chunked.slice(
      chunked.indexOf("\r\n\r\n") + 4,
      chunked.indexOf("0\r\n\r\n") + 5,
    );
    // What the app's /sha256 answers, as JSON: its body bytes are what the log counts.
    const posted = JSON.stringify({ length: 5, sha256: await sha256(encode("hello")) });
    assert.ok(text.endsWith(`\r\n\r\n${posted}`), "the app answered the POST");
    assert.deepEqual(records.map(brief), [
      ["GET", "/bytes/1234", 200, 1234, undefined, undefined],
      ["HEAD", "/bytes/10", 200, 0, undefined, undefined],
      ["GET", "/chunked?x=1", 200, chunkedBody.length, undefined, undefined],
      ["POST", "/sha256", 200, posted.length, undefined, undefined],
    ]);
    for (const r of records) assert.ok(r.durationMs >= 0 && r.durationMs < 5000);
  },
});

Deno.test({
  name: "request log: 100-continue shows the final status; 204, 304 and a WebSocket upgrade",
  ...T,
  async fn() {
    await using app = serveApp(async (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/upload") return new Response(`got ${(await req.text()).length}`);
      if (path === "/none") return new Response(null, { status: 204 });
      if (path === "/same") return new Response(null, { status: 304 });
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.onmessage = (e) => socket.send(e.data);
      return response;
    });
    await using server = await startTestServer();
    await using logged = await recordingTunnel(server, app.addr.port, "codes");
    const records = logged.records;
    const host = "Host: codes.localhost\r\n";
    using conn = await connect(server.addr.port);
    await writeAllTo(
      conn,
      encode(`POST /upload HTTP/1.1\r\n${host}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`),
    );
    let text = await readUntil(conn, /100 Continue\r\n\r\n/);
    await writeAllTo(conn, encode("hello"));
    text = await readUntil(conn, /got 5/, text);
    await writeAllTo(
      conn,
      encode(`GET /none HTTP/1.1\r\n${host}\r\nGET /same HTTP/1.1\r\n${host}\r\n`),
    );
    text = await readUntil(conn, /304[^]*\r\n\r\n/, text);
    await writeAllTo(
      conn,
      encode(
        `GET /ws HTTP/1.1\r\n${host}Upgrade: websocket\r\nConnection: Upgrade\r\n` +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      ),
    );
    await readUntil(conn, /101 Switching Protocols[^]*\r\n\r\n/, text);
    await waitFor(() => records.length === 4, 5000, "four records");
    assert.deepEqual(records.map(brief), [
      ["POST", "/upload", 200, 5, undefined, undefined],
      ["GET", "/none", 204, 0, undefined, undefined],
      ["GET", "/same", 304, 0, undefined, undefined],
      ["GET", "/ws", 101, 0, "websocket", undefined],
    ]);
  },
});

Deno.test({
  name: "request log: a response cut short, a request with no answer, a refused request",
  ...T,
  async fn() {
    // A raw app: answers the first request with 3 of 100 promised bytes, then closes;
    // on its second connection closes without answering.
    await using app = rawApp(async (conn, index) => {
      await readUntil(conn, /\r\n\r\n/);
      if (index === 0) {
        await writeAllTo(conn, encode("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"));
      }
    });
    await using server = await startTestServer();
    await using logged = await recordingTunnel(server, app.port, "cut");
    const records = logged.records;
    const host = "Host: cut.localhost\r\n";
    await rawRequest(server.addr.port, `GET /partial HTTP/1.1\r\n${host}\r\n`);
    await waitFor(() => records.length === 1, 5000, "the first record");
    await rawRequest(server.addr.port, `GET /silent HTTP/1.1\r\n${host}\r\n`);
    await waitFor(() => records.length === 2, 5000, "the second record");
    const refused = await rawRequest(
      server.addr.port,
      `POST /x HTTP/1.1\r\n${host}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`,
    );
    assert.match(refused, /^HTTP\/1\.1 400/);
    await waitFor(() => records.length === 3, 5000, "the third record");
    assert.deepEqual(records.map(brief), [
      ["GET", "/partial", 200, 3, undefined, "cut short"],
      ["GET", "/silent", undefined, 0, undefined, "no response"],
      ["-", "-", 400, 0, undefined, "conflicting Content-Length"],
    ]);
  },
});

Deno.test({
  name: "client.ts logs one plain line per request on stderr; --quiet and --raw log none",
  ...T,
  async fn() {
    const app = startApp();
    await using server = await startTestServer();
    const base = [String(app.addr.port), "--server", `http://${HOST}:${server.addr.port}`];
    const clients = [
      spawnCli("client.ts", [...base, "--subdomain", "loud", "--local-host", HOST]),
      spawnCli("client.ts", [...base, "--subdomain", "hush", "--local-host", HOST, "--quiet"]),
      spawnCli("client.ts", [...base, "--subdomain", "bare", "--local-host", HOST, "--raw"]),
    ];
    try {
      for (const c of clients) await c.firstLine();
      for (const name of ["loud", "hush", "bare"]) {
        const answer = await rawRequest(
          server.addr.port,
          `GET /bytes/2500?q=1 HTTP/1.1\r\nHost: ${name}.localhost\r\nConnection: close\r\n\r\n`,
        );
        assert.match(answer, /^HTTP\/1\.1 200/);
      }
      // The printer batches lines for up to 20 ms; SIGINT flushes what is left.
      const [loud, hush, bare] = await Promise.all(clients.map((c) => c.stop("SIGINT")));
      assert.match(loud!.stderr, /^GET \/bytes\/2500\?q=1 → 200 \d+(\.\d)? m?s 2\.5 KB$/m);
      assert.ok(!loud!.stderr.includes("\x1b["), "no colour when stderr is not a terminal");
      for (const quiet of [hush!, bare!]) assert.doesNotMatch(quiet.stderr, /^GET \S+ → /m);
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
      await app.shutdown();
    }
  },
});

const record = (extra: Partial<RequestRecord> = {}): RequestRecord => ({
  method: "GET",
  target: "/path",
  status: 200,
  durationMs: 12.34,
  bytes: 1234,
  upgrade: undefined,
  problem: undefined,
  ...extra,
});

Deno.test("formatRecord(): plain, aligned, coloured, upgrades and problems", () => {
  assert.equal(formatRecord(record()), "GET /path → 200 12.3 ms 1.2 KB");
  assert.equal(
    formatRecord(record(), { aligned: true, color: false }),
    "GET     /path                    → 200   12.3 ms    1.2 KB",
  );
  assert.equal(
    formatRecord(record({ status: 404 }), { aligned: true, color: true }),
    "\x1b[1mGET    \x1b[0m /path                    → \x1b[33m404\x1b[0m   12.3 ms    1.2 KB",
  );
  assert.equal(
    formatRecord(record({ status: 101, upgrade: "websocket", target: "/ws" })),
    "GET /ws → 101 12.3 ms ⇄ websocket",
  );
  assert.equal(
    formatRecord(record({ status: undefined, problem: "no response", durationMs: 5000 })),
    "GET /path → --- 5.0 s 1.2 KB (no response)",
  );
  // A visitor's control characters cannot reach the terminal.
  assert.equal(
    formatRecord(record({ target: "/\x1b]0;owned\x07\x9b2J", upgrade: "\x1b[5mx", status: 101 })),
    "GET /\\x1b]0;owned\\x07\\x9b2J → 101 12.3 ms ⇄ \\x1b[5mx",
  );
  const long = formatRecord(record({ target: "/" + "a".repeat(100) }), {
    aligned: true,
    color: false,
  });
  assert.match(long, /^GET {5}\/a{46}… → 200/);
});

Deno.test("formatDuration() and formatBytes()", () => {
  assert.deepEqual([0.04, 12.34, 99.94, 150.4, 999.4, 1500, 61_000].map(formatDuration), [
    "0.0 ms",
    "12.3 ms",
    "99.9 ms",
    "150 ms",
    "999 ms",
    "1.5 s",
    "61.0 s",
  ]);
  assert.deepEqual([0, 999, 1000, 1234, 999_949, 999_950, 2.5e9, 3e15].map(formatBytes), [
    "0 B",
    "999 B",
    "1.0 KB",
    "1.2 KB",
    "999.9 KB",
    "1.0 MB",
    "2.5 GB",
    "3000.0 TB",
  ]);
});

/** The head of `text` (a request), as the framer parses it. */
function head(text: string): MessageHead {
  const event = new Http1Framer("request").push(encode(text + "\r\nHost: x\r\n\r\n"))[0]!;
  assert.equal(event.kind, "head");
  return (event as { head: MessageHead }).head;
}

Deno.test("ExchangeTracker pairs pipelined responses however the bytes are split", () => {
  const responses = "HTTP/1.1 100 Continue\r\n\r\n" +
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" +
    "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" + // HEAD: no body follows
    "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\nX-T: 1\r\n\r\n" +
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00";
  const bytes = encode(responses);
  const expected = [
    ["POST", "/a", 200, 3, undefined],
    ["HEAD", "/b", 200, 0, undefined],
    ["GET", "/c", 404, "2\r\nno\r\n0\r\nX-T: 1\r\n\r\n".length, undefined],
    ["GET", "/ws", 101, 0, "websocket"],
  ];
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 6 }), (cuts) => {
      const records: RequestRecord[] = [];
      const log = new ExchangeTracker({
        observer: { exchange: (r) => records.push(r) },
        now: () => 0,
      });
      log.request(head("POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0"));
      log.request(head("HEAD /b HTTP/1.1"));
      log.request(head("GET /c HTTP/1.1"));
      log.request(head("GET /ws HTTP/1.1\r\nUpgrade: WebSocket"));
      const points = [0, ...cuts.sort((a, b) => a - b), bytes.length];
      for (let i = 1; i < points.length; i++) {
        log.response(bytes.subarray(points[i - 1], points[i]));
      }
      log.close();
      assert.deepEqual(
        records.map((r) => [r.method, r.target, r.status, r.bytes, r.upgrade]),
        expected,
      );
    }),
    { numRuns: 300 },
  );
});

Deno.test("requestPrinter() batches lines and sums up what is over its lines a second", async () => {
  const writes: string[] = [];
  const printer = requestPrinter((text) => writes.push(text), { aligned: false, color: false }, {
    batchMs: 5,
    perSecond: 3,
  });
  printer.log(record({ target: "/1" }));
  printer.log(record({ target: "/2" }));
  await waitFor(() => writes.length > 0, 2_000, "the batch timer"); // it writes the first two
  assert.deepEqual(writes, ["GET /1 → 200 12.3 ms 1.2 KB\nGET /2 → 200 12.3 ms 1.2 KB\n"]);
  for (let i = 3; i <= 10; i++) printer.log(record({ target: `/${i}`, status: i > 8 ? 404 : 200 }));
  printer.log(record({ status: undefined, problem: "no response" }));
  // The summary comes by itself at the end of the throttled second, with no further request.
  await waitFor(() => writes.length === 3, 2000, "the summary");
  assert.equal(writes[1], "GET /3 → 200 12.3 ms 1.2 KB\n");
  assert.match(writes[2]!, /^… 8 more requests in (\d+ ms|1\.\d s) \(2xx 5, 4xx 2, none 1\)\n$/);
  printer.flush();
  assert.equal(writes.length, 3);
});

Deno.test("recordStyle(): a terminal gets columns and colour unless NO_COLOR; a pipe plain lines", () => {
  assert.deepEqual(recordStyle(true, undefined), { aligned: true, color: true });
  assert.deepEqual(recordStyle(true, ""), { aligned: true, color: true });
  assert.deepEqual(recordStyle(true, "1"), { aligned: true, color: false });
  assert.deepEqual(recordStyle(false, undefined), { aligned: false, color: false });
});
