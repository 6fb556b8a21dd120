// Reliability, round two: limits that hold past the first head, proxy pools that
// stay healthy, and bad inputs that fail closed. Real sockets; descriptor counts
// where the failure was a leak.

import assert from "node:assert/strict";
import { openTunnel } from "../lib/client/tunnel.ts";
import { TunnelError } from "../lib/errors.ts";
import { throttleWarnings } from "../lib/log.ts";
import type { TokenScope } from "../lib/server/auth.ts";
import {
  dataFrame,
  decodeClientFrame,
  decodeServerFrame,
  encodeFrame,
  encodeUpgradeRequest,
  PROTOCOL_VERSION,
  type ServerMessage,
  UPGRADE_RESPONSE,
} from "../lib/protocol.ts";
import { concatBytes } from "../lib/bytes.ts";
import { ByteReader, FRAME_READER_CAPACITY } from "../lib/io.ts";
import { headEnd } from "../lib/http/head.ts";
import {
  connect,
  encode,
  helloFrames,
  HOST,
  logRecorder,
  openTestTunnel,
  rawApp,
  rawClient,
  rawRequest,
  readFixture,
  readFixtureText,
  readUntil,
  serveApp,
  spawnCli,
  startApp,
  startTestServer,
  tcpHop,
  waitFor,
  welcomeFrames,
  writeAllTo,
} from "./helpers.ts";

const LONG = { timeout: 60_000 };

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
  ...LONG,
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
  ...LONG,
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
      await waitFor(() => fds() - before >= 200, 5_000, "both ends of 100 connections");
      const results = await Promise.all(conns.map(closedByPeer));
      assert.ok(results.every(Boolean), "every connection closed by the server");
      await waitFor(() => fds() - before <= 100 + 2, 5_000, "the server's descriptors freed");
    } finally {
      for (const conn of conns) conn.close();
    }
    await waitFor(() => fds() - before <= 2, 5_000, "no descriptor left");
  },
});

Deno.test({
  name: "3. idle proxy connections a NAT dropped: the visitor is served on a live one, " +
    "and pings retire the dead",
  ...LONG,
  async fn() {
    const app = startApp();
    await using server = await startTestServer({
      limits: {
        proxyPingIntervalMs: 400,
        streamAcceptTimeoutMs: 300,
        proxyWaitTimeoutMs: 8_000,
        acceptAfterQuietMs: 0, // every stream is accepted first, as after a quiet spell
      },
    });
    await using hop = tcpHop(server.addr.port);
    const tunnel = await openTestTunnel(server, app.addr.port, {
      subdomain: "nat",
      server: `http://${HOST}:${hop.port}`,
    });
    try {
      await waitFor(() => server.tunnels()[0]?.idleProxies === 2, 5_000, "the quiet pool");
      hop.blackhole((i) => i > 0); // every pooled connection dies silently; the control one lives
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
        () => server.tunnels()[0]!.idleProxies >= 8,
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

/** Reads and drops what `reader`'s connection sends, to its end. */
async function drain(reader: ByteReader): Promise<void> {
  while (await reader.fill().catch(() => false)) reader.consume(reader.buffered.length);
}

/** A client made by hand: registers `name` and attaches nothing until told. */
async function handMadeClient(port: number, name: string) {
  const control = await rawClient(
    port,
    helloFrames({ subdomain: name }),
  );
  const welcome = await control.reader.readFrame(decodeServerFrame);
  assert.equal(welcome?.type, "welcome");
  const { session: tunnel, secret } = welcome as Extract<ServerMessage, { type: "welcome" }>;
  return {
    control,
    attach: () =>
      rawClient(
        port,
        encodeFrame({ type: "attach", version: PROTOCOL_VERSION, session: tunnel, secret }),
      ),
  };
}

Deno.test({
  name: "4. a visitor that leaves while waiting for a proxy connection is forwarded nothing",
  ...LONG,
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
  ...LONG,
  async fn() {
    // The app holds every connection and never answers.
    let open = 0;
    let peak = 0;
    await using app = rawApp(async (conn, _i, closing) => {
      peak = Math.max(peak, ++open);
      await new Promise((resolve) => closing.addEventListener("abort", resolve));
      open--;
      conn.close();
    });
    // A fake server: welcomes, asks for 60 more proxy connections, and opens a stream on
    // every one it gets; counts the 503s that come back.
    let refusals = 0;
    await using fake = rawApp(async (conn) => {
      const reader = new ByteReader(conn, FRAME_READER_CAPACITY);
      while (headEnd(reader.buffered, 0) < 0) if (!await reader.fill()) return;
      reader.consume(headEnd(reader.buffered, 0));
      const first = await reader.readFrame(decodeClientFrame);
      if (first?.type === "hello") {
        const welcome = welcomeFrames("x", "http://x.localhost");
        const more = encodeFrame({ type: "demand", count: 60 });
        await writeAllTo(conn, concatBytes(UPGRADE_RESPONSE, welcome, more));
        return await drain(reader); // held until the end
      }
      const open = encodeFrame({ type: "open", tunnel: 1, peer: "192.0.2.1:1", proto: "http" });
      const request = dataFrame(encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      await writeAllTo(conn, concatBytes(UPGRADE_RESPONSE, open, request));
      let answer = "";
      while (!answer.includes("503 Service Unavailable")) {
        if (!await reader.fill().catch(() => false)) return;
        answer = new TextDecoder().decode(reader.buffered);
      }
      refusals++;
      await drain(reader); // held until the end
    });
    const tunnel = await openTunnel({
      port: app.port,
      localHost: HOST,
      server: `http://${HOST}:${fake.port}`,
      leaseFile: false,
      maxStreams: 20,
    });
    try {
      await waitFor(() => open === 20 && refusals >= 40, 10_000, "20 served, the rest refused");
      assert.equal(peak, 20);
    } finally {
      await tunnel.close();
    }
  },
});

Deno.test({
  name: "6. an empty tokens file admits no one; SIGHUP re-reads it; a revoked token's tunnel " +
    "closes once its in-flight request is answered",
  ...LONG,
  async fn() {
    const dir = await Deno.makeTempDir();
    const file = `${dir}/tokens`;
    await Deno.writeTextFile(file, "# no tokens yet\n");
    const good = "a-good-token-of-24-chars";
    // An app that answers /slow 600 ms after it got it.
    let slowArrived = false;
    const app = serveApp(async (req) => {
      if (new URL(req.url).pathname === "/slow") {
        slowArrived = true;
        await new Promise((r) => setTimeout(r, 600));
      }
      return new Response("answered\n");
    });
    const server = spawnCli("server.ts", ["--port=0", `--hostname=${HOST}`, "--tokens-file", file]);
    try {
      const url = await server.firstLine();
      const port = new URL(url).port;
      await waitFor(
        () => server.output().stderr.includes("no one may open tunnels"),
        5_000,
        "warning",
      );
      const client = (token: string) =>
        spawnCli("client.ts", [
          `${HOST}:${app.addr.port}`,
          "--server",
          `http://${HOST}:${port}`,
          "--subdomain",
          "paid",
          "--token",
          token,
        ]);
      const refused = await client(good).exited;
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /Invalid token/);
      await Deno.writeTextFile(file, `${good} paid\n`);
      server.kill("SIGHUP");
      await waitFor(() => server.output().stderr.includes("Tokens reloaded"), 5_000, "reload");
      const tunnel = client(good);
      assert.equal(await tunnel.firstLine(), `http://paid.localhost:${port}`);
      // A request in flight when the token goes away still gets its answer...
      const slow = rawRequest(
        Number(port),
        "GET /slow HTTP/1.1\r\nHost: paid.localhost\r\nConnection: close\r\n\r\n",
      );
      await waitFor(() => slowArrived, 5_000, "the request at the app");
      await Deno.writeTextFile(file, "# revoked\n");
      server.kill("SIGHUP");
      await waitFor(
        () => server.output().stderr.includes("Tunnel's token revoked"),
        5_000,
        "revoke",
      );
      // ...new ones find no tunnel at once...
      assert.match(
        await rawRequest(Number(port), "GET / HTTP/1.1\r\nHost: paid.localhost\r\n\r\n"),
        /^HTTP\/1\.1 404 /,
      );
      assert.match(await slow, /^HTTP\/1\.1 200 [^]*answered/);
      // ...and the client is told, and exits 1 (it may not reconnect with that token).
      const end = await tunnel.exited;
      assert.equal(end.code, 1);
      assert.match(end.stderr, /revoked|Invalid token/);
    } finally {
      await server.stop();
      await app.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "7. a malformed lease cache is cleaned with a warning, never sent, and the tunnel opens",
  ...LONG,
  async fn() {
    await using server = await startTestServer();
    const dir = await Deno.makeTempDir();
    const file = `${dir}/leases.json`;
    const base = `http://${HOST}:${server.addr.port}`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        [`${base} demo`]: { lease: 42 }, // the wrong type: the server refused the hello
        [`${base} big`]: { lease: `v1.big.n.1.${"A".repeat(20_000)}` }, // too long to encode
        [`${base} other`]: { lease: "v1.demo.n.1.sig" }, // a lease for another name
        "junk": "not an entry",
      }),
    );
    const log = logRecorder();
    try {
      for (const subdomain of ["demo", "big"]) {
        const tunnel = await openTestTunnel(server, 9, { subdomain, leaseFile: file, logger: log });
        await tunnel.close();
      }
      const warnings = log.lines.filter((l) => l.level === "warn").map((l) => l.message);
      assert.equal(
        warnings.filter((m) => m.startsWith("Dropped the lease")).length,
        4,
        `${warnings}`,
      );
      // Rewritten without them (the tunnels said bye, so their own leases are gone too).
      assert.deepEqual(JSON.parse(await Deno.readTextFile(file)), {});
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "8. duration flags have documented ranges: 0s and other spins exit 2",
  ...LONG,
  async fn() {
    for (
      const [args, said] of [
        [["--lease", "0s"], /Invalid --lease "0s": use 5s to 24h/],
        [["--heartbeat", "0s"], /Invalid --heartbeat "0s": use 1s to 10m/],
        [["--idle-timeout", "0ms"], /Invalid --idle-timeout "0ms": use 1s to 24h/],
        [["--proxy-ping", "10ms"], /Invalid --proxy-ping "10ms": use 1s to 10m/],
        [["--heartbeat", "20s"], /--peer-timeout 30s: use at least twice --heartbeat \(20s\)/],
      ] as const
    ) {
      const end = await spawnCli("server.ts", [...args]).exited;
      assert.equal(end.code, 2, args.join(" "));
      assert.match(end.stderr, said);
    }
    const help = await spawnCli("server.ts", ["--help"]).exited;
    assert.match(
      help.stdout,
      /--heartbeat TIME\s+interval between heartbeats \(default 10s, 1s-10m\)/,
    );
    await assert.rejects(startTestServer({ leaseMs: 0 }), RangeError);
    await assert.rejects(startTestServer({ limits: { heartbeatIntervalMs: 0 } }), RangeError);
  },
});

Deno.test({
  name:
    "reserved names need a token scoped to them; failed tokens are limited, never the right one",
  ...LONG,
  async fn() {
    const refused = (pattern: RegExp) => (e: unknown) =>
      e instanceof TunnelError && pattern.test(e.message);
    {
      await using open = await startTestServer({ reservedNames: ["shop"] });
      for (const name of ["www", "admin", "xn--80ak6aa92e", "shop"]) {
        await assert.rejects(
          openTestTunnel(open, 9, { subdomain: name }),
          refused(/reserved name/),
          name,
        );
      }
    }
    const scoped = "a-token-for-www-only-xx";
    const any = "a-token-for-anything-xx";
    await using server = await startTestServer({
      tokens: new Map<string, TokenScope>([[scoped, ["www"]], [any, "*"]]),
      limits: { maxAuthFailuresPerIpPerMinute: 5 },
    });
    const www = await openTestTunnel(server, 9, { subdomain: "www", token: scoped });
    await www.close();
    await assert.rejects(
      openTestTunnel(server, 9, { subdomain: "www", token: any }),
      refused(/reserved name/),
    );
    for (let i = 0; i < 5; i++) {
      await assert.rejects(
        openTestTunnel(server, 9, { token: `wrong-token-number-${i}` }),
        refused(/Invalid token/),
      );
    }
    await assert.rejects(
      openTestTunnel(server, 9, { token: "wrong-token-number-6" }),
      (e) => e instanceof TunnelError && e.code === "limit" && /failed tokens/.test(e.message),
    );
    const right = await openTestTunnel(server, 9, { token: any }); // never locked out
    await right.close();
  },
});

Deno.test({
  name:
    "a request head with bare LF line ends reaches the app with CRLF, so no smuggled line hides",
  ...LONG,
  async fn() {
    let head = "";
    await using app = rawApp(async (conn) => {
      head = await readUntil(conn, /\r\n\r\n/);
      await writeAllTo(conn, encode("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    });
    await using server = await startTestServer();
    await using _tunnel = await openTestTunnel(server, app.port, { subdomain: "lf" });
    const answer = await rawRequest(
      server.addr.port,
      "GET /a HTTP/1.1\nHost: lf.localhost\nX-Test: 1\r\nConnection: close\n\n",
    );
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(head.replaceAll("\r\n", ""), /\n/, "every line ends in CRLF");
    assert.match(head, /^GET \/a HTTP\/1\.1\r\nHost: lf\.localhost\r\nX-Test: 1\r\n/);
  },
});

Deno.test({
  name: "--isolate-cookies drops Set-Cookie Domain attributes naming the server's domain, " +
    "whole heads or split ones",
  ...LONG,
  async fn() {
    await using app = rawApp(async (conn) => {
      await readUntil(conn, /\r\n\r\n/);
      const head = "HTTP/1.1 200 OK\r\n" +
        "Set-Cookie: a=1; Domain=localhost; Path=/\r\n" +
        "Set-Cookie: b=2; domain=.LOCALHOST\r\n" +
        "Set-Cookie: c=3; Domain=jar.localhost\r\n" +
        "Set-Cookie: d=4; Path=/x\r\nContent-Length: 2\r\n\r\nok";
      // The head in two writes, apart: the client holds it back until it is whole.
      await writeAllTo(conn, encode(head.slice(0, 40)));
      await new Promise((r) => setTimeout(r, 50));
      await writeAllTo(conn, encode(head.slice(40)));
    });
    await using server = await startTestServer();
    for (const isolateCookies of [true, false]) {
      await using _tunnel = await openTestTunnel(server, app.port, {
        subdomain: "jar",
        isolateCookies,
      });
      const answer = await rawRequest(
        server.addr.port,
        "GET / HTTP/1.1\r\nHost: jar.localhost\r\nConnection: close\r\n\r\n",
      );
      const cookies = answer.split("\r\n").filter((l) => l.startsWith("Set-Cookie:"));
      assert.deepEqual(
        cookies,
        isolateCookies
          ? [
            "Set-Cookie: a=1; Path=/",
            "Set-Cookie: b=2",
            "Set-Cookie: c=3; Domain=jar.localhost",
            "Set-Cookie: d=4; Path=/x",
          ]
          : [
            "Set-Cookie: a=1; Domain=localhost; Path=/",
            "Set-Cookie: b=2; domain=.LOCALHOST",
            "Set-Cookie: c=3; Domain=jar.localhost",
            "Set-Cookie: d=4; Path=/x",
          ],
      );
      assert.match(answer, /\r\n\r\nok$/);
    }
  },
});

Deno.test("throttleWarnings() writes a warning once per interval, then how often it repeated", async () => {
  const log = logRecorder();
  const throttled = throttleWarnings(log, 100);
  for (let i = 0; i < 50; i++) throttled.warn("Connection failed", { conn: i });
  throttled.warn("Other", {});
  throttled.info("Info passes", {});
  assert.deepEqual(log.lines.map((l) => l.message), ["Connection failed", "Other", "Info passes"]);
  await waitFor(() => log.lines.length === 4, 2_000, "the summary");
  assert.equal(log.lines[3]!.message, "Connection failed (repeated 49 times in 0.1 s)");
  throttled.close();
});
