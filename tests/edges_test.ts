// The server's answers at its edges, over real sockets: 400, 408, 431, 504, and pool hygiene.

import assert from "node:assert/strict";

import {
  connect,
  decode,
  encode,
  helloFrames,
  HOST,
  openTestTunnel,
  rawApp,
  rawClient,
  rawRequest,
  readAll,
  serveApp,
  startStack,
  startTestServer,
  T,
  tcpHop,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

Deno.test({
  name: "malformed heads get 400, oversized heads 431, and the tunnel keeps serving",
  ...T,
  async fn() {
    await using stack = await startStack();
    const port = stack.server.addr.port;
    const cases: [string, RegExp][] = [
      ["GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", /^HTTP\/1\.1 400 [^]*missing Host/],
      [`GET / HTTP/1.1\r\nHost: ${stack.host}\r\nHost: x.localhost\r\n\r\n`, /^HTTP\/1\.1 400 /],
      ["GET / HTTP/1.1\r\nHost: demo.localhost:99999\r\n\r\n", /^HTTP\/1\.1 400 /],
      [`GET http://other.localhost/ HTTP/1.1\r\nHost: ${stack.host}\r\n\r\n`, /^HTTP\/1\.1 400 /],
      [
        `GET / HTTP/1.1\r\nHost: ${stack.host}\r\nX: ${"a".repeat(64 * 1024)}\r\n\r\n`,
        /^HTTP\/1\.1 431 /,
      ],
    ];
    for (const [head, expected] of cases) {
      assert.match(await rawRequest(port, head), expected, head.slice(0, 60));
    }
    // Uppercase and a trailing dot still reach the tunnel.
    const ok = await rawRequest(
      port,
      `GET / HTTP/1.1\r\nHost: DEMO.localhost.:${port}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(ok, /^HTTP\/1\.1 200 [^]*hello from app/);
  },
});

Deno.test({
  name: "the sniff deadline is absolute: a byte-a-tick trickle gets 408 on time",
  ...T,
  async fn() {
    const sniffTimeoutMs = 400;
    await using server = await startTestServer({ limits: { sniffTimeoutMs } });
    const conn = await connect(server.addr.port);
    const started = Date.now();
    const head = encode("GET / HTTP/1.1\r\nHost: demo.localhost\r\nX-Slow: " + "a".repeat(1000));
    const trickle = (async () => {
      try {
        for (const byte of head) {
          await conn.write(Uint8Array.of(byte));
          await new Promise((r) => setTimeout(r, 20)); // the trickle under test, not a wait
        }
      } catch { /* closed by the server: expected */ }
    })();
    const answer = decode(await readAll(conn));
    const elapsed = Date.now() - started;
    conn.close();
    await trickle;
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.ok(elapsed >= sniffTimeoutMs - 50 && elapsed < sniffTimeoutMs + 1500, `${elapsed} ms`);
  },
});

Deno.test({
  name: "an idle connection that sends nothing is closed at the deadline, without an answer",
  ...T,
  async fn() {
    const sniffTimeoutMs = 300;
    await using server = await startTestServer({ limits: { sniffTimeoutMs } });
    const conn = await connect(server.addr.port);
    const started = performance.now();
    assert.equal((await readAll(conn)).length, 0);
    const elapsed = performance.now() - started;
    conn.close();
    // Not before the deadline (the server's clock started at its accept, after ours; timers
    // round by a millisecond or so), and well within a bound after it.
    assert.ok(
      elapsed >= sniffTimeoutMs - 10 && elapsed < sniffTimeoutMs + 2_000,
      `closed after ${elapsed.toFixed(0)} ms`,
    );
  },
});

Deno.test({
  name: "a visitor gets 504 when the tunnel has no proxy connection in time",
  ...T,
  async fn() {
    await using server = await startTestServer({ limits: { proxyWaitTimeoutMs: 300 } });
    // A client that registers but never opens a proxy connection.
    const { conn: control } = await rawClient(
      server.addr.port,
      helloFrames({ subdomain: "stuck" }),
    );
    await waitFor(() => server.tunnelCount === 1, 5_000, "registration");
    const answer = await rawRequest(
      server.addr.port,
      "GET / HTTP/1.1\r\nHost: stuck.localhost\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 504 /);
    control.close();
    await waitFor(() => server.tunnelCount === 0, 5_000, "the session to end");
  },
});

Deno.test({
  name: "an idle pool holds no connection to the app; each visitor gets one",
  ...T,
  async fn() {
    await using app = rawApp((conn) => readAll(conn));
    await using server = await startTestServer();
    await using hop = tcpHop(server.addr.port); // sees the pool's connections to the server
    await using _t = await openTestTunnel(server, app.port, {
      server: `http://${HOST}:${hop.port}`,
      subdomain: "lazy",
      pool: 8,
    });
    // The control connection and the quiet pool's 2 proxy connections, each answered.
    const filled = (connections: number) => () =>
      hop.connections === connections &&
      [...Array(connections).keys()].every((i) => hop.turns(i).includes("server"));
    await waitFor(filled(1 + 2), 5_000, "the pool to fill");
    assert.equal(app.accepted, 0);
    const conn = await connect(server.addr.port);
    await writeAllTo(conn, encode("GET / HTTP/1.1\r\nHost: lazy.localhost\r\n\r\n"));
    await waitFor(() => app.accepted > 0, 5_000, "the app to be dialled");
    conn.close();
    // The pool was topped up to 8 beside the busy connection; none dialled the app ahead.
    await waitFor(filled(1 + 2 + 7), 5_000, "the pool to be topped up");
    assert.equal(app.accepted, 1);
  },
});

Deno.test({
  name: "localhost reaches an app that listens on ::1 only",
  ...T,
  async fn() {
    await using app = serveApp(() => new Response("v6"), { hostname: "::1" });
    await using server = await startTestServer();
    await using _tunnel = await openTestTunnel(server, app.addr.port, {
      subdomain: "six",
      localHost: "localhost",
    });
    const answer = await rawRequest(
      server.addr.port,
      "GET / HTTP/1.1\r\nHost: six.localhost\r\nConnection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 200 [^]*v6$/);
  },
});
