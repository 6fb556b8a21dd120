// The HTTP/1.1 framer on requests and responses, whole and split at every offset.

import assert from "node:assert/strict";
import fc from "fast-check";
import { type Http1Event, Http1Framer } from "../lib/http1.ts";

const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const text = (b: Uint8Array): string => String.fromCharCode(...b);

/** A split-independent summary: heads by first line, body bytes joined per message, ends, raw. */
function summary(events: Http1Event[]): string[] {
  const out: string[] = [];
  let body = "";
  for (const e of events) {
    if (e.kind === "body") {
      body += text(e.bytes);
      continue;
    }
    if (body) out.push(`body:${body}`), body = "";
    if (e.kind === "head") out.push(`head:${text(e.bytes).split("\r\n")[0]}`);
    else if (e.kind === "end") out.push("end");
    else if (e.kind === "raw") out.push(`raw:${text(e.bytes)}`);
    else out.push(`error:${e.status}`);
  }
  if (body) out.push(`body:${body}`);
  // Raw bytes may arrive in several pieces: join them.
  return out.reduce<string[]>((acc, item) => {
    const last = acc[acc.length - 1];
    if (item.startsWith("raw:") && last?.startsWith("raw:")) {
      acc[acc.length - 1] = last + item.slice(4);
    } else acc.push(item);
    return acc;
  }, []);
}

function frame(
  role: "request" | "response",
  input: string,
  cuts: number[] = [],
  methods: string[] = [],
) {
  const framer = new Http1Framer(role);
  methods.forEach((m) => framer.expect(m));
  const events: Http1Event[] = [];
  const data = bytes(input);
  let from = 0;
  for (const cut of [...cuts, data.length]) {
    events.push(...framer.push(data.subarray(from, cut)));
    from = cut;
  }
  events.push(...framer.end());
  return summary(events);
}

/** Frames `input` whole and split at every offset; all must agree. */
function check(
  role: "request" | "response",
  input: string,
  expected: string[],
  methods: string[] = [],
) {
  assert.deepEqual(frame(role, input, [], methods), expected, "whole");
  for (let cut = 1; cut < input.length; cut++) {
    assert.deepEqual(frame(role, input, [cut], methods), expected, `split at ${cut}`);
  }
}

Deno.test("Http1Framer frames pipelined requests: no body, Content-Length, chunked with trailers", () => {
  check(
    "request",
    "\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n" +
      "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
      "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n" +
      "GET /d HTTP/1.0\r\n\r\n",
    [
      "head:GET /a HTTP/1.1",
      "end",
      "head:POST /b HTTP/1.1",
      "body:hello",
      "end",
      "head:POST /c HTTP/1.1",
      "body:3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
      "end",
      "head:GET /d HTTP/1.0",
      "end",
    ],
  );
});

Deno.test("Http1Framer refuses smuggling: Content-Length with Transfer-Encoding, conflicting lengths", () => {
  const bad = [
    "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    "GET /\r\n\r\n",
  ];
  for (const input of bad) assert.deepEqual(frame("request", input).at(-1), "error:400", input);
  // The same length twice is one length.
  check("request", "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", [
    "head:POST / HTTP/1.1",
    "body:ok",
    "end",
  ]);
  assert.deepEqual(frame("request", `GET / HTTP/1.1\r\nX: ${"a".repeat(20_000)}\r\n\r\n`), [
    "error:431",
  ]);
});

Deno.test("Http1Framer knows which responses have no body: HEAD, 1xx, 204, 304", () => {
  check(
    "response",
    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + // to HEAD: no body despite the length
      "HTTP/1.1 100 Continue\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" +
      "HTTP/1.1 204 No Content\r\n\r\n" +
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    [
      "head:HTTP/1.1 200 OK",
      "end",
      "head:HTTP/1.1 100 Continue",
      "end",
      "head:HTTP/1.1 200 OK",
      "body:hi",
      "end",
      "head:HTTP/1.1 204 No Content",
      "end",
      "head:HTTP/1.1 304 Not Modified",
      "end",
      "head:HTTP/1.1 200 OK",
      "body:2\r\nok\r\n0\r\n\r\n",
      "end",
    ],
    ["HEAD", "POST", "DELETE", "GET", "GET"],
  );
});

Deno.test("Http1Framer switches to raw bytes on 101 and on CONNECT 200; reads close-delimited bodies", () => {
  check("response", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", [
    "head:HTTP/1.1 101 Switching Protocols",
    "end",
    "raw:\x81\x05hello",
  ]);
  check("response", "HTTP/1.1 200 Connection established\r\n\r\nTLS bytes", [
    "head:HTTP/1.1 200 Connection established",
    "end",
    "raw:TLS bytes",
  ], ["CONNECT"]);
  check("response", "HTTP/1.0 200 OK\r\n\r\nuntil the end", [
    "head:HTTP/1.0 200 OK",
    "body:until the end",
    "end",
  ]);
  assert.deepEqual(frame("response", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"), [
    "head:HTTP/1.1 200 OK",
    "body:short",
    "error:502",
  ]);
});

Deno.test("Http1Framer never throws and agrees with itself on any split (property)", () => {
  const samples = [
    "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 101 X\r\n\r\nraw",
  ];
  const input = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.constantFrom(...samples).chain((s) =>
      fc.tuple(fc.nat(s.length), fc.string({ maxLength: 6 })).map(([at, junk]) =>
        s.slice(0, at) + junk + s.slice(at)
      )
    ),
  );
  fc.assert(
    fc.property(input, fc.nat(), fc.constantFrom("request", "response"), (s, seed, role) => {
      const latin = Array.from(s, (c) => c.charCodeAt(0) > 0xff ? "?" : c).join("");
      const cut = latin.length === 0 ? 0 : seed % latin.length;
      assert.deepEqual(frame(role as "request", latin, [cut]), frame(role as "request", latin));
    }),
    { numRuns: 2000 },
  );
});
