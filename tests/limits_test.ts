// Limits over real sockets: per tunnel, per IP, idle streams; and their flags.

import assert from "node:assert/strict";
import { ACCEPT_FRAME } from "../lib/protocol.ts";
import { TunnelError } from "../lib/errors.ts";

import {
  decodeServerFrame,
  encodeFrame,
  PROTOCOL_VERSION,
  type ServerMessage,
} from "../lib/protocol.ts";
import { DEFAULT_SERVER_LIMITS } from "../lib/limits.ts";
import { formatDuration, parseDuration } from "../lib/units.ts";
import { ipKey } from "../lib/server/admission.ts";
import { readLimitFlags } from "../lib/server/limit_flags.ts";
import {
  connect,
  encode,
  helloFrames,
  logRecorder,
  openTestTunnel,
  rawApp,
  rawClient,
  rawRequest,
  readAll,
  startApp,
  startTestServer,
  T,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

/** An app that accepts connections, answers nothing, and closes each when its peer does. */
const holdApp = () => rawApp((conn) => readAll(conn));

Deno.test({
  name: "a tunnel at its stream limit answers 503, and serves again once a stream ends",
  ...T,
  async fn() {
    await using app = holdApp();
    const log = logRecorder();
    await using server = await startTestServer({
      limits: { maxStreamsPerTunnel: 2 },
      logger: log,
    });
    await using _tunnel = await openTestTunnel(server, app.port, { subdomain: "busy" });
    const head = encode("GET / HTTP/1.1\r\nHost: busy.localhost\r\n\r\n");
    const first = await connect(server.addr.port);
    const second = await connect(server.addr.port);
    await writeAllTo(first, head);
    await writeAllTo(second, head);
    await waitFor(() => app.accepted === 2, 5_000, "two held streams");
    assert.match(
      await rawRequest(server.addr.port, "GET / HTTP/1.1\r\nHost: busy.localhost\r\n\r\n"),
      /^HTTP\/1\.1 503 /,
    );
    first.close(); // the app sees the end and closes: that stream is over...
    await waitFor(() => log.count("Stream done") === 1, 5_000, "the end to cross the tunnel");
    const third = await connect(server.addr.port);
    await writeAllTo(third, head);
    await waitFor(() => app.accepted === 3, 5_000, "a third stream once one ended");
    second.close();
    third.close();
  },
});

Deno.test({
  name: "an IP may hold only so many tunnels, and open only so many a minute",
  ...T,
  async fn() {
    await using server = await startTestServer({
      limits: { maxTunnelsPerIp: 2, maxSessionsPerIpPerMinute: 3 },
    });
    const a = await openTestTunnel(server, 9);
    const b = await openTestTunnel(server, 9);
    await assert.rejects(
      openTestTunnel(server, 9),
      (e) => e instanceof TunnelError && e.code === "limit" && /at most 2/.test(e.message),
    );
    await a.close();
    await waitFor(() => server.tunnelCount === 1, 5_000, "the tunnel to close");
    const c = await openTestTunnel(server, 9); // the third session this minute
    await c.close();
    await waitFor(() => server.tunnelCount === 1, 5_000, "the tunnel to close");
    await assert.rejects(
      openTestTunnel(server, 9),
      (e) => e instanceof TunnelError && e.code === "limit" && /a minute/.test(e.message),
    );
    await b.close();
  },
});

Deno.test({
  name: "connections from one IP still being routed are limited; more are closed at once",
  ...T,
  async fn() {
    const log = logRecorder();
    await using server = await startTestServer({ limits: { maxSniffingPerIp: 3 }, logger: log });
    const silent = await Promise.all([1, 2, 3].map(() => connect(server.addr.port)));
    // Connected after them, the fourth is behind them in the listener's queue: the server,
    // which accepts one at a time, has counted them by the time it takes it.
    const fourth = await connect(server.addr.port);
    const started = performance.now();
    assert.equal((await readAll(fourth)).length, 0);
    assert.ok(performance.now() - started < 2_000, "the fourth was not closed at once");
    assert.equal(log.count("Over the limit of connections being routed"), 1);
    fourth.close();
    silent.forEach((c) => c.close());
    await waitFor(() => log.count("Closed before routing") === 3, 5_000, "the three to be gone");
    const status = await rawRequest(
      server.addr.port,
      "GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert.match(status, /^HTTP\/1\.1 200 /);
  },
});

Deno.test({
  name: "an idle relayed connection is closed after the idle timeout; the tunnel goes on",
  ...T,
  async fn() {
    await using app = holdApp();
    await using server = await startTestServer({ limits: { streamIdleTimeoutMs: 300 } });
    await using _tunnel = await openTestTunnel(server, app.port, { subdomain: "idle", pool: 1 });
    const visitor = await connect(server.addr.port);
    await writeAllTo(visitor, encode("GET / HTTP/1.1\r\nHost: idle.localhost\r\n\r\n"));
    const started = Date.now();
    assert.equal((await readAll(visitor)).length, 0);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 250 && elapsed < 3_000, `closed after ${elapsed} ms`);
    visitor.close();
    await using web = startApp();
    // A new tunnel to a real app on the same server still works after the abort.
    const tunnel = await openTestTunnel(server, web.addr.port, { subdomain: "web" });
    assert.match(
      await rawRequest(
        server.addr.port,
        "GET / HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n",
      ),
      /^HTTP\/1\.1 200 /,
    );
    await tunnel.close();
  },
});

Deno.test("parseDuration() and readLimitFlags() read the server's limit flags", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("10s"), 10_000);
  assert.equal(parseDuration("1.5m"), 90_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  for (const bad of ["10", "s", "-1s", "1d", "10 s", ""]) {
    assert.equal(parseDuration(bad), undefined);
  }
  assert.equal(formatDuration(DEFAULT_SERVER_LIMITS.streamIdleTimeoutMs), "10m");
  assert.deepEqual(
    readLimitFlags({ "idle-timeout": "2m", "max-tunnels-per-ip": "0", "max-head-bytes": "8192" }),
    { streamIdleTimeoutMs: 120_000, maxTunnelsPerIp: 0, maxSniffBytes: 8192 },
  );
  assert.throws(() => readLimitFlags({ "idle-timeout": "0s" }), RangeError);
  assert.throws(() => readLimitFlags({ "max-head-bytes": "100" }), RangeError);
  assert.throws(() => readLimitFlags({ "max-tunnels-per-ip": "-1" }), RangeError);
});

Deno.test({
  name: "parallel hellos from one IP cannot overshoot the tunnels-per-IP limit",
  ...T,
  async fn() {
    await using server = await startTestServer({
      limits: { maxTunnelsPerIp: 2, maxSessionsPerIpPerMinute: 0, maxSniffingPerIp: 0 },
      tokens: new Map([["race-token-0123456789", "*"]]), // an await before registration
    });
    const results = await Promise.allSettled(
      Array.from(
        { length: 20 },
        () => openTestTunnel(server, 9, { token: "race-token-0123456789", pool: 1 }),
      ),
    );
    const won = results.filter((r) => r.status === "fulfilled") as PromiseFulfilledResult<
      { close(): Promise<void> }
    >[];
    assert.equal(won.length, 2);
    await Promise.all(won.map((r) => r.value.close()));
  },
});

Deno.test("ipKey() counts IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by /64", () => {
  assert.equal(ipKey("203.0.113.7"), "203.0.113.7");
  assert.equal(ipKey("::ffff:203.0.113.7"), "203.0.113.7");
  assert.equal(ipKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  assert.equal(ipKey("2001:db8:1:2::9"), "2001:db8:1:2::/64");
  assert.equal(ipKey("2001:DB8::1"), "2001:db8:0:0::/64");
  assert.equal(ipKey("::1"), "0:0:0:0::/64");
});

Deno.test({
  name: "after an idle abort, a client that never ends the stream loses that connection too",
  ...T,
  async fn() {
    await using server = await startTestServer({
      limits: { streamIdleTimeoutMs: 200, maxStreamsPerTunnel: 1, proxyWaitTimeoutMs: 300 },
    });
    const hello = (frame: Uint8Array) => rawClient(server.addr.port, frame);
    // A client that registers, attaches one proxy connection, and then never answers on it.
    const control = await hello(
      helloFrames({ subdomain: "mute" }),
    );
    const welcome = await control.reader.readFrame(decodeServerFrame);
    assert.equal(welcome?.type, "welcome");
    const { session: tunnel, secret } = welcome as Extract<ServerMessage, { type: "welcome" }>;
    const proxy = await hello(
      encodeFrame({ type: "attach", version: PROTOCOL_VERSION, session: tunnel, secret }),
    );
    const visitor = await connect(server.addr.port);
    try {
      await writeAllTo(visitor, encode("GET / HTTP/1.1\r\nHost: mute.localhost\r\n\r\n"));
      // It accepts the stream (if asked to), then never says another word.
      const open = await proxy.reader.readFrame(decodeServerFrame);
      assert.equal(open?.type, "open");
      if (open?.type === "open" && open.accept) await writeAllTo(proxy.conn, ACCEPT_FRAME);
      const started = Date.now();
      assert.equal((await readAll(visitor)).length, 0); // the idle abort
      assert.equal((await readAll(proxy.conn)).length > 0, true); // open, DATA, ABORT... then closed
      const closedAfter = Date.now() - started;
      assert.ok(closedAfter < 3_000, `proxy closed after ${closedAfter} ms`);
      // The stream slot is free again: a new visitor is not refused with 503.
      const next = await rawRequest(
        server.addr.port,
        "GET / HTTP/1.1\r\nHost: mute.localhost\r\n\r\n",
      );
      assert.doesNotMatch(next, /^HTTP\/1\.1 503/);
    } finally {
      visitor.close();
      proxy.conn.close();
      control.conn.close();
    }
  },
});
