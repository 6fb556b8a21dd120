// The inspector's capture without sockets: a stream's exchanges as the exchange tracker
// reports them (pipelined, interim answers, chunked, refused, WebSocket), the ring and
// the body budget, and bodies made readable (chunked framing, gzip, br, deflate).

import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { ExchangeTracker } from "../lib/client/exchanges.ts";
import { captureStream } from "../lib/client/inspector/capture.ts";
import { dechunk, decodeContent, isChunked } from "../lib/client/inspector/body.ts";
import { CaptureStore, type ExchangeEntry } from "../lib/client/inspector/store.ts";
import { latin1Bytes, latin1Text } from "../lib/bytes.ts";
import { MessageHead, parseHead } from "../lib/http/head.ts";
import { decode, encode } from "./helpers.ts";

const VISITOR = { peer: "203.0.113.7:5555", scheme: "http", hostHeader: undefined } as const;

function requestHead(text: string): MessageHead {
  const head = parseHead(encode(text), "request");
  if (!(head instanceof MessageHead)) throw new Error(`not a head: ${head}`);
  return head;
}

/** A store and a tracker whose observer captures into it, as one visitor stream. */
function stream(limits = { limit: 500, bodyBudgetBytes: 1 << 20, maxBodyBytes: 1 << 16 }) {
  const store = new CaptureStore(limits);
  const completed: number[] = [];
  store.onComplete = (e) => completed.push(e.id);
  const tracker = new ExchangeTracker({ observer: captureStream(store, VISITOR) });
  return { store, tracker, completed };
}

const text = (bytes: Uint8Array | undefined): string => latin1Text(bytes ?? new Uint8Array());

Deno.test("capture: pipelined requests paired with their responses, heads and bodies kept", () => {
  const { store, tracker, completed } = stream();
  const get = "GET /a?x=1 HTTP/1.1\r\nHost: demo.localhost\r\n\r\n";
  const post = "POST /b HTTP/1.1\r\nHost: demo.localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
  tracker.request(requestHead(get));
  tracker.request(requestHead(post));
  tracker.requestBody(encode("5\r\nhello\r\n"));
  tracker.requestBody(encode("0\r\n\r\n"));
  const answers = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" +
    "HTTP/1.1 100 Continue\r\n\r\n" +
    "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n2\r\n!!\r\n0\r\n\r\n";
  // Split anywhere, the same exchanges come out.
  const bytes = encode(answers);
  tracker.response(bytes.subarray(0, 50));
  tracker.response(bytes.subarray(50));
  tracker.close();
  const [b, a] = store.list();
  assert.deepEqual(completed, [1, 2]);
  assert.equal(a!.method, "GET");
  assert.equal(a!.target, "/a?x=1");
  assert.equal(text(a!.requestHead), get);
  assert.equal(a!.status, 200);
  assert.equal(text(a!.response.content), "abc");
  assert.equal(a!.visitor, "203.0.113.7:5555");
  assert.equal(a!.state, "complete");
  assert.equal(b!.status, 201, "the interim 100 is not the answer");
  assert.match(text(b!.responseHead), /^HTTP\/1\.1 201 Created\r\n/);
  assert.equal(text(b!.request.content), "hello");
  assert.equal(b!.request.size, "5\r\nhello\r\n0\r\n\r\n".length);
  assert.equal(text(b!.response.content), "xyz!!");
  assert.ok(b!.response.chunked && !b!.response.truncated);
});

Deno.test("capture: no response, a refused CONNECT and an unreadable request are exchanges too", () => {
  const { store, tracker } = stream();
  tracker.request(requestHead("GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"));
  tracker.request(requestHead("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"));
  tracker.refused(405, "CONNECT is not relayed");
  tracker.close();
  const [connect, slow] = store.list();
  assert.deepEqual([connect!.method, connect!.status, connect!.problem], [
    "CONNECT",
    405,
    "CONNECT is not relayed",
  ]);
  assert.deepEqual([slow!.method, slow!.status, slow!.problem], ["GET", undefined, "no response"]);

  const other = stream();
  other.tracker.refused(400, "bare CR in head");
  assert.deepEqual(
    other.store.list().map((e) => [e.method, e.requestHead, e.status, e.problem]),
    [["-", undefined, 400, "bare CR in head"]],
  );
});

Deno.test("capture: a WebSocket is open with message counts each way until the stream ends", () => {
  const { store, tracker } = stream();
  tracker.request(requestHead(
    "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
  ));
  const changes: number[] = [];
  store.onChange = (e) => changes.push(e.id);
  tracker.response(
    latin1Bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"),
  );
  tracker.visitorRaw(Uint8Array.from([0x81, 0x82, 1, 2, 3, 4, 0x69, 0x6b]));
  tracker.visitorRaw(Uint8Array.from([0x89, 0x80, 1, 2, 3, 4]));
  const [ws] = store.list();
  assert.equal(ws!.upgrade, "websocket");
  assert.equal(ws!.state, "open");
  assert.equal(ws!.websocket?.fromApp.messages, 1);
  assert.equal(ws!.websocket?.fromVisitor.messages, 1);
  assert.equal(ws!.websocket?.fromVisitor.pings, 1);
  tracker.close();
  assert.equal(ws!.state, "complete");
  assert.ok(changes.length >= 3, "each message is a change");
});

Deno.test("CaptureStore: the ring keeps the last `limit` exchanges, found by id", () => {
  const store = new CaptureStore({ limit: 3, bodyBudgetBytes: 100, maxBodyBytes: 10 });
  const open = () =>
    store.open({
      startedAt: 0,
      visitor: "v",
      scheme: "http",
      method: "GET",
      target: "/",
      requestHead: undefined,
      replayOf: undefined,
    });
  const entries: ExchangeEntry[] = [];
  for (let i = 0; i < 5; i++) {
    const e = open();
    store.keep(e, e.response, new Uint8Array(8));
    entries.push(e);
  }
  assert.deepEqual(store.list().map((e) => e.id), [5, 4, 3]);
  assert.equal(store.get(2), undefined);
  assert.equal(store.get(4), entries[3]);
  assert.equal(store.bodyBytes, 24, "the bodies of exchanges that left are freed");
  assert.ok(entries[0]!.response.dropped);
  store.clear();
  assert.deepEqual([store.size, store.bodyBytes, store.get(5)], [0, 0, undefined]);
  assert.equal(open().id, 6, "numbering goes on after a clear");
});

Deno.test("CaptureStore: bodies are kept up to the cap and the budget; the oldest make room", () => {
  const store = new CaptureStore({ limit: 100, bodyBudgetBytes: 25, maxBodyBytes: 10 });
  const entries: ExchangeEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const e = store.open({
      startedAt: 0,
      visitor: "v",
      scheme: "http",
      method: "POST",
      target: "/",
      requestHead: undefined,
      replayOf: undefined,
    });
    store.keep(e, e.request, new Uint8Array(6).fill(i));
    store.keep(e, e.request, new Uint8Array(14).fill(i)); // 20 in all: 10 kept
    entries.push(e);
    assert.ok(store.bodyBytes <= 25);
  }
  assert.deepEqual(
    entries.map((e) => [e.request.size, e.request.kept, e.request.truncated]),
    [[20, 0, true], [20, 0, true], [20, 10, true], [20, 10, true]],
  );
  assert.deepEqual([...entries[3]!.request.content], [3, 3, 3, 3, 3, 3, 3, 3, 3, 3]);
  // A body whose bytes were freed keeps nothing more, even when room comes back.
  store.keep(entries[0]!, entries[0]!.request, new Uint8Array(1));
  assert.equal(entries[0]!.request.kept, 0);
});

Deno.test("dechunk() takes chunked framing off, whole, cut short, with extensions", () => {
  const wire = encode("3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n");
  assert.equal(decode(dechunk(wire)), "abc0123456789");
  for (let cut = 0; cut <= wire.length; cut++) {
    const got = decode(dechunk(wire.subarray(0, cut)));
    assert.ok("abc0123456789".startsWith(got), `cut at ${cut}: ${got}`);
  }
  assert.equal(decode(dechunk(encode("2\nhi\n0\n\n"))), "hi", "bare LF");
  assert.ok(isChunked("gzip, chunked") && isChunked("Chunked") && !isChunked("chunked, gzip"));
});

Deno.test("decodeContent() undoes gzip, br and deflate (zlib or raw), bounded", async () => {
  const json = encode(JSON.stringify({ hello: "world".repeat(100) }));
  const compress = async (format: CompressionFormat) =>
    new Uint8Array(
      await new Response(new Blob([json]).stream().pipeThrough(new CompressionStream(format)))
        .arrayBuffer(),
    );
  for (
    const [coding, format] of [
      ["gzip", "gzip"],
      ["br", "brotli"],
      ["deflate", "deflate"],
      ["deflate", "deflate-raw"],
    ] as const
  ) {
    const decoded = await decodeContent(await compress(format as CompressionFormat), coding, 1e6);
    assert.equal(decoded.error, undefined, `${coding} (${format})`);
    assert.deepEqual(decoded.bytes, json);
  }
  const gzip = gzipSync(json);
  const cut = await decodeContent(gzip.subarray(0, gzip.length - 30), "gzip", 1e6);
  assert.match(cut.error ?? "", /ends early/);
  const bomb = await decodeContent(gzipSync(new Uint8Array(5_000_000)), "gzip", 1000);
  assert.equal(bomb.bytes.length, 1000);
  assert.match(bomb.error ?? "", /over 1000 bytes/);
  assert.match((await decodeContent(json, "zstd", 1e6)).error ?? "", /unknown coding zstd/);
  assert.equal((await decodeContent(json, "identity", 1e6)).bytes, json);
});
