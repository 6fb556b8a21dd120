// Reliability, round two: limits that hold past the first head, proxy pools that
// stay healthy, and bad inputs that fail closed. Real sockets; descriptor counts
// where the failure was a leak.

import assert from "node:assert/strict";
import { openTunnel } from "../lib/client/tunnel.ts";
import { TunnelError } from "../lib/errors.ts";
import {
  ACCEPT_FRAME,
  decodeServerFrame,
  encodeFrame,
  encodeUpgradeRequest,
  FRAME_HEADER_BYTES,
  PROTOCOL_VERSION,
  type ServerMessage,
  UPGRADE_RESPONSE,
} from "../lib/protocol.ts";
import { concatBytes } from "../lib/bytes.ts";
import { ByteReader, FRAME_READER_CAPACITY } from "../lib/io.ts";
import { startServer } from "../lib/server/server.ts";
import {
  connect,
  HOST,
  openTestTunnel,
  rawClient,
  rawRequest,
  readAll,
  readFixture,
  readFixtureText,
  spawnCli,
  startApp,
  startTestServer,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

const T = { timeout: 60_000 };
const encode = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Descriptors this process holds now (read by `ls`: /proc/self needs --allow-all). */
const fds = (): number => {
  const { stdout } = new Deno.Command("ls", { args: [`/proc/${Deno.pid}/fd`] }).outputSync();
  return new TextDecoder().decode(stdout).trim().split(/\s+/).length;
};

/** Whether the peer closed `conn`: resolves true at its end of stream (or reset). */
function closedByPeer(conn: Deno.Conn): Promise<boolean> {
  return conn.read(new Uint8Array(64 * 1024)).then((n) => n === null, () => true);
}

Deno.test({
  name: "1. an upgrade that then says nothing counts as being routed until the handshake ends",
  ...T,
  async fn() {
    await using server = await startTestServer({
      limits: { maxSniffingPerIp: 20, handshakeTimeoutMs: 60_000 },
    });
    const conns: Deno.Conn[] = [];
    const closed: boolean[] = [];
    try {
      for (let i = 0; i < 40; i++) {
        const conn = await connect(server.addr.port);
        await writeAllTo(conn, encodeUpgradeRequest("localhost"));
        conns.push(conn);
        closedByPeer(conn).then((c) => closed[i] = c);
      }
      // The first 20 hold their slots while they say nothing; the other 20 are closed at once.
      await waitFor(() => closed.filter(Boolean).length >= 20, 5_000, "20 refused");
      assert.equal(closed.filter(Boolean).length, 20);
      assert.deepEqual(closed.slice(0, 20).filter(Boolean), []);
    } finally {
      for (const conn of conns) conn.close();
    }
  },
});

Deno.test({
  name: "2. silent and half-ClientHello connections to the TLS port are closed at the deadline " +
    "(descriptors counted)",
  ...T,
  async fn() {
    const cert = readFixtureText("localhost.pem");
    const key = readFixtureText("localhost.key");
    await using server = await startTestServer({
      tls: { cert, key, port: 0 },
      limits: { sniffTimeoutMs: 500, maxSniffingPerIp: 0 },
    });
    const before = fds();
    const hello = readFixture("chromium-clienthello.bin");
    const conns: Deno.Conn[] = [];
    for (let i = 0; i < 100; i++) {
      const conn = await connect(server.tlsAddr!.port);
      if (i % 2 === 1) await writeAllTo(conn, hello.subarray(0, 100)); // half a ClientHello
      conns.push(conn);
    }
    try {
      // Both ends of each connection are in this process: 200 descriptors at first.
      assert.ok(fds() - before >= 200, `${fds() - before} descriptors`);
      const results = await Promise.all(conns.map(closedByPeer));
      assert.ok(results.every(Boolean), "every connection closed by the server");
      await waitFor(() => fds() - before <= 100 + 2, 5_000, "the server's descriptors freed");
    } finally {
      for (const conn of conns) conn.close();
    }
    assert.ok(fds() - before <= 2, `${fds() - before} descriptors left`);
  },
});

/**
 * A TCP hop to `port` where every connection but the first (the client's control
 * connection) can be made to drop all bytes silently, as a NAT that forgot them does.
 */
function natHop(port: number): {
  port: number;
  dropIdle(): void;
  [Symbol.asyncDispose](): Promise<void>;
} {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const pairs: [Deno.Conn, Deno.Conn][] = [];
  const dropped = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  const copy = async (from: Deno.Conn, to: Deno.Conn, key: Deno.Conn): Promise<void> => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (let n; (n = await from.read(buffer)) !== null;) {
        if (!dropped.has(key)) await writeAllTo(to, buffer.subarray(0, n));
      }
      await to.closeWrite().catch(() => {});
    } catch { /* closed */ }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const upstream = await connect(port);
        pairs.push([conn, upstream]);
        tasks.push(copy(conn, upstream, conn), copy(upstream, conn, conn));
      }
    } catch { /* closed */ }
  })();
  return {
    port: listener.addr.port,
    dropIdle() {
      for (const [conn] of pairs.slice(1)) dropped.add(conn);
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const [a, b] of pairs) {
        a.close();
        b.close();
      }
      await Promise.all(tasks);
    },
  };
}

Deno.test({
  name: "3. idle proxy connections a NAT dropped: the visitor is served on a live one, " +
    "and pings retire the dead",
  ...T,
  async fn() {
    const app = startApp();
    await using server = await startTestServer({
      limits: { proxyPingIntervalMs: 400, streamAcceptTimeoutMs: 300, proxyWaitTimeoutMs: 8_000 },
    });
    await using hop = natHop(server.addr.port);
    const tunnel = await openTestTunnel(server, app.addr.port, {
      subdomain: "nat",
      server: `http://${HOST}:${hop.port}`,
    });
    try {
      await waitFor(() => server.tunnels()[0]?.idleProxies === 8, 5_000, "the pool");
      hop.dropIdle(); // every pooled connection dies silently; the control one lives
      const started = performance.now();
      const answer = await rawRequest(
        server.addr.port,
        "GET / HTTP/1.1\r\nHost: nat.localhost\r\nConnection: close\r\n\r\n",
      );
      assert.match(answer, /^HTTP\/1\.1 200 [^]*hello from app/);
      const took = performance.now() - started;
      assert.ok(took < 5_000, `served after ${took.toFixed(0)} ms`);
      // The dead ones do not answer pings and are retired; fresh ones (new connections
      // through the NAT) refill the pool.
      await waitFor(
        () => server.tunnels()[0]!.idleProxies === 8,
        10_000,
        "a pool of live connections",
      );
      const again = await rawRequest(
        server.addr.port,
        "GET / HTTP/1.1\r\nHost: nat.localhost\r\nConnection: close\r\n\r\n",
      );
      assert.match(again, /^HTTP\/1\.1 200 /);
    } finally {
      await tunnel.close();
      await app.shutdown();
    }
  },
});

/** A client made by hand: registers `name` and attaches nothing until told. */
async function handMadeClient(port: number, name: string) {
  const control = await rawClient(
    port,
    encodeFrame({ type: "hello", version: PROTOCOL_VERSION, subdomain: name }),
  );
  const welcome = await control.reader.readFrame(decodeServerFrame);
  assert.equal(welcome?.type, "welcome");
  const { tunnel, secret } = welcome as Extract<ServerMessage, { type: "welcome" }>;
  return {
    control,
    attach: () =>
      rawClient(port, encodeFrame({ type: "attach", version: PROTOCOL_VERSION, tunnel, secret })),
  };
}

Deno.test({
  name: "4. a visitor that leaves while waiting for a proxy connection is forwarded nothing",
  ...T,
  async fn() {
    await using server = await startTestServer();
    const client = await handMadeClient(server.addr.port, "late");
    const visitor = await connect(server.addr.port);
    await writeAllTo(
      visitor,
      encode("POST /pay HTTP/1.1\r\nHost: late.localhost\r\nContent-Length: 5\r\n\r\nhello"),
    );
    await waitFor(() => server.tunnels()[0]?.streams === 1, 5_000, "the visitor waiting");
    visitor.close(); // gone before any proxy connection came
    await waitFor(() => server.tunnels()[0]?.streams === 0, 5_000, "its slot freed");
    const proxy = await client.attach(); // a proxy connection comes after all
    const nothing = await Promise.race([
      proxy.reader.fill().then((more) => more ? "bytes" : "closed"),
      new Promise((r) => setTimeout(() => r("nothing"), 700)),
    ]);
    assert.equal(nothing, "nothing", "the POST was not delivered");
    proxy.conn.close();
    client.control.conn.close();
  },
});

Deno.test({
  name: "5. a hostile server cannot make the client open more than --max-streams app connections",
  ...T,
  async fn() {
    // The app counts its concurrent connections and never answers.
    const appListener = Deno.listen({ hostname: HOST, port: 0 });
    const appConns: Deno.Conn[] = [];
    let peak = 0;
    const appAccepting = (async () => {
      for await (const conn of appListener) {
        appConns.push(conn);
        peak = Math.max(peak, appConns.length);
      }
    })().catch(() => {});
    // A fake server: welcomes, asks for 60 more proxy connections, and opens a
    // stream on every one it gets.
    const fake = Deno.listen({ hostname: HOST, port: 0 });
    const conns: Deno.Conn[] = [];
    let refusals = 0;
    const serving = (async () => {
      for await (const conn of fake) {
        conns.push(conn);
        (async () => {
          const reader = new ByteReader(conn, FRAME_READER_CAPACITY);
          while (!new TextDecoder().decode(reader.buffered).includes("\r\n\r\n")) {
            if (!await reader.fill()) return;
          }
          reader.consume(new TextDecoder().decode(reader.buffered).indexOf("\r\n\r\n") + 4);
          const { decodeClientFrame } = await import("../lib/protocol.ts");
          const first = await reader.readFrame(decodeClientFrame);
          if (first?.type === "hello") {
            await writeAllTo(
              conn,
              concatBytes(
                UPGRADE_RESPONSE,
                encodeFrame({
                  type: "welcome",
                  version: PROTOCOL_VERSION,
                  tunnel: "t",
                  secret: "s",
                  subdomain: "x",
                  url: "http://x.localhost",
                  lease: "v1.x.n.1.mac",
                }),
                encodeFrame({ type: "demand", count: 60 }),
              ),
            );
            return;
          }
          // A proxy connection: one stream, whose answer is read to see refusals.
          const open = encodeFrame({ type: "open", peer: "192.0.2.1:1", proto: "http" });
          const { dataFrame } = await import("../lib/protocol.ts");
          await writeAllTo(
            conn,
            concatBytes(
              UPGRADE_RESPONSE,
              open,
              dataFrame(encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
            ),
          );
          let answer = "";
          const buffer = new Uint8Array(4096);
          while (!answer.includes("503 Service Unavailable")) {
            const n = await conn.read(buffer).catch(() => null);
            if (n === null) return;
            answer += new TextDecoder().decode(buffer.subarray(0, n));
          }
          refusals++;
        })().catch(() => {});
      }
    })().catch(() => {});
    const tunnel = await openTunnel({
      port: appListener.addr.port,
      localHost: HOST,
      server: `http://${HOST}:${fake.addr.port}`,
      leaseFile: false,
      maxStreams: 20,
    });
    try {
      await waitFor(
        () => appConns.length === 20 && refusals >= 40,
        10_000,
        "20 served, the rest refused",
      );
      assert.equal(peak, 20);
    } finally {
      await tunnel.close();
      fake.close();
      appListener.close();
      await serving;
      await appAccepting;
      for (const conn of [...conns, ...appConns]) {
        try {
          conn.close();
        } catch (e) {
          console.error("close failed", e);
        }
      }
    }
  },
});
