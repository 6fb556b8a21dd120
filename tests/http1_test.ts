// The HTTP/1.1 framer on requests and responses, whole and split at every offset.

import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { latin1Bytes } from "../lib/bytes.ts";
import { Http1Framer } from "../lib/http/framer.ts";
import { frameHttp1 as frame, http1Property, http1Summary } from "./properties.ts";

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

Deno.test("Http1Framer refuses requests two servers could frame apart, and bad Hosts", () => {
  const bad = [
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding:\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    "GET /\r\n\r\n",
    "GET / HTTP/1.1\r\n\r\n", // no Host
    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    'GET / HTTP/1.1\r\nHost: a", for=6.6.6.6\r\n\r\n',
    "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: []\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: [1.2.3.4]\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n",
    "GET /\x1b[2J HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
  ];
  for (const input of bad) assert.deepEqual(frame("request", input).at(-1), "error:400", input);
  // The same length twice is one length.
  check(
    "request",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    [
      "head:POST / HTTP/1.1",
      "body:ok",
      "end",
    ],
  );
  assert.deepEqual(
    frame("request", `GET / HTTP/1.1\r\nHost: x\r\nX: ${"a".repeat(20_000)}\r\n\r\n`),
    [
      "error:431",
    ],
  );
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
  fc.assert(http1Property, { numRuns: 3000 });
});

Deno.test("Http1Framer for a proxy: raw after an upgrade request and its body, resume() when refused", () => {
  const upgrade = new Http1Framer("request", undefined, true);
  assert.deepEqual(
    http1Summary(
      upgrade.push(
        latin1Bytes(
          "POST /up HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nContent-Length: 2\r\n\r\nhiRAW",
        ),
      ),
    ),
    ["head:POST /up HTTP/1.1", "body:hi", "end", "raw:RAW"],
  );
  assert.equal(upgrade.raw, true);
  upgrade.resume(); // the app answered 200: what follows is HTTP again
  assert.deepEqual(
    http1Summary(upgrade.push(latin1Bytes("GET /next HTTP/1.1\r\nHost: x\r\n\r\n"))),
    [
      "head:GET /next HTTP/1.1",
      "end",
    ],
  );
  const connect = new Http1Framer("request", undefined, true);
  assert.deepEqual(
    http1Summary(
      connect.push(latin1Bytes("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03")),
    ),
    ["head:CONNECT a:443 HTTP/1.1", "end", "raw:\x16\x03"],
  );
  // Framing checks come first: an upgrade request cannot smuggle.
  const smuggle = new Http1Framer("request", undefined, true).push(
    latin1Bytes(
      "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: a\r\nContent-Length: 1\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n",
    ),
  );
  assert.deepEqual(http1Summary(smuggle), ["error:400"]);
});

Deno.test("Http1Framer accepts the Host forms RFC 9110 allows", () => {
  for (
    const host of ["a", "a.b-c_d~e", "[::1]", "[2001:db8::7]:8443", "127.0.0.1:80", "a%2Db:", ""]
  ) {
    assert.deepEqual(
      frame("request", `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`),
      ["head:GET / HTTP/1.1", "end"],
      host,
    );
  }
});
