// Hostile and broken peers, over real sockets: each gets a clear refusal or a close,
// nothing crosses tenants, and a probe tunnel keeps serving throughout.

import assert from "node:assert/strict";

import {
  decodeServerFrame,
  encodeFrame,
  PROTOCOL_VERSION,
  type ServerMessage,
} from "../lib/protocol.ts";
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from "../lib/limits.ts";
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
  readFixture,
  spawnCli,
  startApp,
  startTestServer,
  streamingApp,
  T,
  tcpHop,
  waitFor,
  writeAllTo,
} from "./helpers.ts";
import { rawFrame } from "./properties.ts";

/** A server with a probe tunnel; `probe()` asserts the probe still answers. */
async function withProbe(limits: Partial<ServerLimits> = {}) {
  const app = startApp("probe");
  const server = await startTestServer({ limits });
  const heartbeat = {
    intervalMs: limits.heartbeatIntervalMs ?? DEFAULT_SERVER_LIMITS.heartbeatIntervalMs,
    peerTimeoutMs: limits.peerTimeoutMs ?? DEFAULT_SERVER_LIMITS.peerTimeoutMs,
  };
  const tunnel = await openTestTunnel(server, app.addr.port, { subdomain: "probe", heartbeat });
  return {
    server,
    async probe() {
      const answer = await rawRequest(
        server.addr.port,
        "GET /whoami HTTP/1.1\r\nHost: probe.localhost\r\nConnection: close\r\n\r\n",
      );
      assert.match(answer, /^HTTP\/1\.1 200 [^]*"name":"probe"/);
    },
    async [Symbol.asyncDispose]() {
      await tunnel.close();
      await server.close();
      await app.shutdown();
    },
  };
}

/** Sends an upgrade and `payload` as a client would; returns the server's first frame. */
async function handshake(port: number, payload: Uint8Array): Promise<ServerMessage | null> {
  const { conn, reader, upgraded } = await rawClient(port, payload);
  try {
    return upgraded ? await reader.readFrame(decodeServerFrame) : null;
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "oversized, malformed and wrong-version first frames get an error frame",
  ...T,
  async fn() {
    await using env = await withProbe();
    const port = env.server.addr.port;
    const cases: [Uint8Array, string][] = [
      [rawFrame("{}", () => 1 << 20), "bad-request"], // claims 1 MiB
      [rawFrame("{not json"), "bad-request"],
      [rawFrame('{"type":"launch"}'), "bad-request"],
      [rawFrame('{"type":"ping"}'), "bad-request"],
      [encodeFrame({ type: "hello", version: 99 }), "version"],
      [encodeFrame({ type: "attach", version: 99, session: "t", secret: "s" }), "version"],
    ];
    for (const [payload, code] of cases) {
      const reply = await handshake(port, payload);
      assert.equal(reply?.type === "error" && reply.code, code);
    }
    await env.probe();
  },
});

Deno.test({
  name:
    "proxy connections with a wrong secret, another tunnel's id or a dead session's secret are refused",
  ...T,
  async fn() {
    await using env = await withProbe();
    const port = env.server.addr.port;
    // Register a session by hand to learn its id and secret.
    const { conn: control, reader } = await rawClient(
      port,
      helloFrames({ subdomain: "victim" }),
    );
    const welcome = await reader.readFrame(decodeServerFrame);
    assert.equal(welcome?.type, "welcome");
    const { session: tunnel, secret } = welcome as Extract<ServerMessage, { type: "welcome" }>;
    const attach = (t: string, s: string) =>
      handshake(
        port,
        encodeFrame({ type: "attach", version: PROTOCOL_VERSION, session: t, secret: s }),
      );
    const unauthorized = (m: ServerMessage | null) =>
      m?.type === "error" && m.code === "unauthorized";
    assert.ok(unauthorized(await attach(tunnel, secret.slice(0, -1) + "x")));
    assert.ok(unauthorized(await attach("no-such-tunnel", secret)));
    assert.ok(unauthorized(await attach(tunnel, "")));
    control.close();
    await waitFor(() => env.server.tunnelCount === 1, 5_000, "the session to end");
    assert.ok(unauthorized(await attach(tunnel, secret))); // reused after the session ended
    await env.probe();
  },
});

Deno.test({
  name: "100 parallel claims of one subdomain: exactly one wins",
  ...T,
  async fn() {
    await using env = await withProbe({
      maxTunnelsPerIp: 0,
      maxSessionsPerIpPerMinute: 0,
      maxSniffingPerIp: 0,
    });
    const results = await Promise.allSettled(
      Array.from(
        { length: 100 },
        () => openTestTunnel(env.server, 9, { subdomain: "prize", pool: 1 }),
      ),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    assert.equal(won.length, 1);
    for (const r of results) {
      if (r.status === "rejected") assert.match(String(r.reason), /already in use/);
    }
    await (won[0] as PromiseFulfilledResult<{ close(): Promise<void> }>).value.close();
    await env.probe();
  },
});

Deno.test({
  name: "TLS ClientHellos with lengths past the end or claiming 16 MB are closed at once",
  ...T,
  async fn() {
    await using env = await withProbe();
    const hello = readFixture("chromium-clienthello.bin").slice();
    const bad = [
      Uint8Array.from([0x16, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff]), // handshake of 16 MB
      (() => { // the extensions length points past the end of the hello
        const h = hello.slice();
        let at = 5 + 4 + 2 + 32;
        at += 1 + h[at]!; // session id
        at += 2 + ((h[at]! << 8) | h[at + 1]!); // cipher suites
        at += 1 + h[at]!; // compression methods
        h[at] = 0xff;
        h[at + 1] = 0xff;
        return h;
      })(),
    ];
    for (const bytes of bad) {
      const conn = await connect(env.server.addr.port);
      await writeAllTo(conn, bytes);
      const started = Date.now();
      assert.equal((await readAll(conn)).length, 0);
      assert.ok(Date.now() - started < 2_000);
      conn.close();
    }
    await env.probe();
  },
});

Deno.test({
  name: "a blackholed control connection: both sides notice by silence and the client comes back",
  ...T,
  async fn() {
    const fast = { intervalMs: 100, peerTimeoutMs: 600 };
    await using env = await withProbe({
      heartbeatIntervalMs: fast.intervalMs,
      peerTimeoutMs: fast.peerTimeoutMs,
    });
    await using hop = tcpHop(env.server.addr.port);
    let ready = 0;
    await using _tunnel = await openTestTunnel(env.server, 9, {
      server: `http://${HOST}:${hop.port}`,
      subdomain: "hole",
      heartbeat: fast,
      onReady: () => void ready++,
    });
    const started = Date.now();
    hop.blackhole(); // existing connections go silent, no FIN either way
    await waitFor(
      () => env.server.tunnelCount === 1,
      5_000,
      "the server to drop the silent session",
    );
    const serverNoticed = Date.now() - started;
    await waitFor(() => ready === 2, 10_000, "the client to come back");
    assert.ok(serverNoticed < 3 * fast.peerTimeoutMs, `server noticed after ${serverNoticed} ms`);
    assert.equal(env.server.tunnelCount, 2);
    await env.probe();
  },
});

Deno.test({
  name: "kill -9 of the client mid-transfer closes every socket of that chain within 1 s",
  ...T,
  async fn() {
    await using env = await withProbe();
    await using app = streamingApp();
    const client = spawnCli("client.ts", [
      String(app.port),
      "--server",
      `http://${HOST}:${env.server.addr.port}`,
      "--subdomain",
      "doomed",
      "--local-host",
      HOST,
    ]);
    await client.firstLine();
    const visitor = await connect(env.server.addr.port);
    await writeAllTo(visitor, encode("GET / HTTP/1.1\r\nHost: doomed.localhost\r\n\r\n"));
    const buffer = new Uint8Array(256 * 1024);
    for (let got = 0; got < 4 * 1024 * 1024;) got += (await visitor.read(buffer)) ?? 0;
    const killed = Date.now();
    await client.stop("SIGKILL");
    // The visitor's connection ends (once what is buffered is read) and the app's writes fail.
    try {
      while ((await visitor.read(buffer)) !== null);
    } catch { /* reset: also an end */ }
    const visitorClosed = Date.now() - killed;
    visitor.close();
    await waitFor(() => app.state.failedAt > 0, 2_000, "the app's connection to close");
    assert.ok(visitorClosed < 1_000, `visitor closed after ${visitorClosed} ms`);
    assert.ok(
      app.state.failedAt - killed < 1_000,
      `app closed after ${app.state.failedAt - killed} ms`,
    );
    await env.probe();
  },
});

Deno.test({
  name: "a local app that resets mid-response ends the visitor's connection; the tunnel goes on",
  ...T,
  async fn() {
    await using env = await withProbe();
    // Half an answer, then close with the request unread: the kernel sends a reset.
    await using app = rawApp((conn) =>
      writeAllTo(conn, encode("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial"))
    );
    await using _tunnel = await openTestTunnel(env.server, app.port, {
      subdomain: "flaky",
      raw: true,
    });
    for (let i = 0; i < 5; i++) {
      const visitor = await connect(env.server.addr.port);
      await writeAllTo(
        visitor,
        encode(`POST / HTTP/1.1\r\nHost: flaky.localhost\r\n\r\n${"x".repeat(200_000)}`).subarray(
          0,
          60_000,
        ),
      );
      const started = Date.now();
      let text = "";
      try {
        text = decode(await readAll(visitor));
      } catch { /* reset: also an end */ }
      visitor.close();
      assert.ok(Date.now() - started < 2_000);
      assert.ok(text === "" || text.startsWith("HTTP/1.1 200 OK"), text.slice(0, 40));
    }
    await env.probe();
  },
});

Deno.test({
  name: "a slow reader of a huge stream holds memory bounded: back-pressure reaches the app",
  ...T,
  async fn() {
    await using env = await withProbe();
    await using app = streamingApp(1024 * 1024 * 1024); // 1 GiB, as fast as it may
    await using _tunnel = await openTestTunnel(env.server, app.port, { subdomain: "slow" });
    const before = Deno.memoryUsage().rss;
    const visitor = await connect(env.server.addr.port);
    await writeAllTo(visitor, encode("GET / HTTP/1.1\r\nHost: slow.localhost\r\n\r\n"));
    const buffer = new Uint8Array(64 * 1024);
    let read = 0;
    const until = Date.now() + 3_000;
    while (Date.now() < until) {
      read += (await visitor.read(buffer)) ?? 0;
      await new Promise((r) => setTimeout(r, 10)); // the pace of a slow reader: what is tested
    }
    const grown = Deno.memoryUsage().rss - before;
    const inFlight = app.state.written - read;
    visitor.close();
    await waitFor(() => app.state.failedAt > 0, 5_000, "the app's stream to end");
    assert.ok(inFlight < 64 * 1024 * 1024, `${inFlight} bytes in flight for a slow reader`);
    assert.ok(grown < 100 * 1024 * 1024, `RSS grew ${grown} bytes`);
    await env.probe();
  },
});
