// Every connect ends: start-up that fails closes what it opened, dials to a server
// or an app that never answers end at their deadline or at once on close(), and
// errors caught on a stream are logged (bugs at error).

import assert from "node:assert/strict";
import { openTunnel } from "../lib/client/tunnel.ts";
import { LocalDialer } from "../lib/client/local_dialer.ts";
import { ExchangeTracker } from "../lib/client/exchanges.ts";
import { RequestRewriter } from "../lib/client/forwarded.ts";
import { HANDSHAKE_TIMEOUT_MS, LOCAL_DIAL_TIMEOUT_MS } from "../lib/limits.ts";
import { type Logger, silentLogger } from "../lib/log.ts";
import { TunnelError } from "../lib/errors.ts";
import { startServer } from "../lib/server/server.ts";
import { encode, HOST, readFixtureText, startTestServer, T, waitFor } from "./helpers.ts";

/**
 * A loopback address whose connects never complete: a listener that never
 * accepts, its backlog filled first, so the kernel drops further SYNs.
 */
async function blackHole(): Promise<{ port: number; [Symbol.asyncDispose](): Promise<void> }> {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const fillers: Deno.Conn[] = [];
  for (;;) {
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), 200);
    try {
      fillers.push(
        await Deno.connect({ hostname: HOST, port: listener.addr.port, signal: stop.signal }),
      );
    } catch {
      break; // this one hung: the backlog is full
    } finally {
      clearTimeout(timer);
    }
  }
  return {
    port: listener.addr.port,
    [Symbol.asyncDispose]() {
      for (const conn of fillers) conn.close();
      listener.close();
      return Promise.resolve();
    },
  };
}

/** Asserts that `attempt` rejects as `expected` says, at its deadline of `ms` (not before, not much after). */
async function rejectsAtDeadline(
  attempt: Promise<unknown>,
  expected: (e: unknown) => boolean,
  ms: number,
): Promise<void> {
  const started = performance.now();
  await assert.rejects(attempt, expected);
  const waited = performance.now() - started;
  assert.ok(waited >= ms - 50 && waited < ms + 2_000, `gave up after ${waited.toFixed(0)} ms`);
}

/** A free port on 127.0.0.1 (bound and released; only used to check it is free again). */
function freePort(): number {
  const probe = Deno.listen({ hostname: HOST, port: 0 });
  const port = probe.addr.port;
  probe.close();
  return port;
}

/** Whether `port` can be bound now. */
function canListen(port: number): boolean {
  try {
    Deno.listen({ hostname: HOST, port }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    "startServer() that fails after listening closes its listeners (bad lease key, bad TLS pair)",
  ...T,
  async fn() {
    const port = freePort();
    await assert.rejects(
      startServer({ port, hostname: HOST, leaseKey: new Uint8Array(0) }),
      (e) => e instanceof Error,
    );
    assert.ok(canListen(port), "the plain port is free again after a bad lease key");
    await assert.rejects(
      startServer({
        port,
        hostname: HOST,
        tls: {
          cert: readFixtureText("localhost.pem"),
          key: readFixtureText("self-signed.key"),
          port: 0,
        },
      }),
      (e) => e instanceof Error && /Cannot use the TLS certificate and key/.test(e.message),
    );
    assert.ok(canListen(port), "the plain port is free again after an unusable TLS pair");
  },
});

Deno.test({
  name: "openTunnel() to a server that never accepts: close() ends it at once, else the deadline",
  ...T,
  async fn() {
    await using hole = await blackHole();
    const stop = new AbortController();
    const started = performance.now();
    setTimeout(() => stop.abort(), 100);
    await assert.rejects(
      openTunnel({
        port: 9,
        server: `http://${HOST}:${hole.port}`,
        leaseFile: false,
        signal: stop.signal,
      }),
      (e) => e instanceof TunnelError && e.code === "connect",
    );
    const cancelled = performance.now() - started;
    assert.ok(cancelled < 1_000, `aborted after ${cancelled.toFixed(0)} ms`);
    await rejectsAtDeadline(
      openTunnel({ port: 9, server: `http://${HOST}:${hole.port}`, leaseFile: false }),
      (e) => e instanceof TunnelError && /no answer in \d+ ms/.test(e.message),
      HANDSHAKE_TIMEOUT_MS,
    );
  },
});

Deno.test({
  name: "openTunnel() over https to a server that accepts and never answers the handshake ends",
  ...T,
  async fn() {
    const listener = Deno.listen({ hostname: HOST, port: 0 });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const conn of listener) held.push(conn);
    })();
    try {
      const stop = new AbortController();
      const started = performance.now();
      setTimeout(() => stop.abort(), 100);
      await assert.rejects(
        openTunnel({
          port: 9,
          server: `https://${HOST}:${listener.addr.port}`,
          leaseFile: false,
          signal: stop.signal,
        }),
        (e) => e instanceof TunnelError && e.code === "connect",
      );
      assert.ok(performance.now() - started < 1_000);
    } finally {
      // Closing our side ends the client's pending handshake (Deno keeps a TLS
      // socket closed in mid-handshake open until its peer closes it).
      for (const conn of held) conn.close();
      listener.close();
      await accepting;
    }
  },
});

Deno.test({
  name: "a local app that never accepts: the dial ends at its deadline, or at once on abort",
  ...T,
  async fn() {
    await using hole = await blackHole();
    const dialer = new LocalDialer(HOST, hole.port);
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 100);
    const started = performance.now();
    await assert.rejects(dialer.dial(false, stop.signal), Deno.errors.Interrupted);
    assert.ok(performance.now() - started < 1_000);
    await rejectsAtDeadline(
      dialer.dial(),
      (e) => e instanceof Deno.errors.TimedOut,
      LOCAL_DIAL_TIMEOUT_MS,
    );
  },
});

Deno.test({
  name: "closing a tunnel while a visitor waits for a local app that never accepts is quick",
  ...T,
  async fn() {
    await using hole = await blackHole();
    await using server = await startTestServer();
    const seen: string[] = [];
    const tunnel = await openTunnel({
      port: hole.port,
      localHost: HOST,
      server: `http://${HOST}:${server.addr.port}`,
      subdomain: "hole",
      leaseFile: false,
      logger: { ...silentLogger, debug: (message) => seen.push(message) },
    });
    const visitor = await Deno.connect({ hostname: HOST, port: server.addr.port });
    await visitor.write(encode(`GET / HTTP/1.1\r\nHost: hole.localhost\r\n\r\n`));
    // The client has the visitor: it is dialling the app now.
    await waitFor(() => seen.includes("Visitor arrived"), 5_000, "the visitor at the client");
    const started = performance.now();
    await tunnel.close();
    const took = performance.now() - started;
    visitor.close();
    assert.ok(took < 1_000, `close() took ${took.toFixed(0)} ms`);
  },
});

Deno.test("a bug on the request path is logged at error, a lost app connection at debug", async () => {
  const lines: string[] = [];
  const log: Logger = {
    debug: (m) => lines.push(`debug ${m}`),
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
  };
  for (const failure of [new TypeError("a bug"), new Deno.errors.BrokenPipe("gone")]) {
    lines.length = 0;
    const tracker = new ExchangeTracker();
    let writes = 0;
    const rewriter = new RequestRewriter({
      out: {
        write: (p) => {
          // The upgrade request itself goes through; the held bytes after it fail.
          if (writes++ > 0) return Promise.reject(failure);
          return Promise.resolve(p.length);
        },
      },
      info: { peer: "192.0.2.1:1", scheme: "http", hostHeader: undefined },
      tracker,
      refuse: () => {},
      log,
    });
    await rewriter.write(encode("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nheld"));
    tracker.response(encode("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"));
    await rewriter.drain();
    const level = failure instanceof TypeError ? "error" : "debug";
    assert.deepEqual(lines, [`${level} Held bytes not passed on`]);
  }
});
