// End to end through a real server, client and app on 127.0.0.1: HTTP, WebSocket, TLS, errors.

import assert from "node:assert/strict";
import { TunnelError } from "../lib/errors.ts";
import {
  connect,
  decode,
  encode,
  HOST,
  keepAlive,
  openTestTunnel,
  patternBytes,
  pingOverTls,
  pongApp,
  rawApp,
  rawRequest,
  readAll,
  readFixture,
  readFixtureText,
  sha256,
  startApp,
  startStack,
  startTestServer,
  T,
  webSocketEcho,
  writeAllTo,
} from "./helpers.ts";

const MiB = 1024 * 1024;

for (const size of [0, MiB, 64 * MiB]) {
  Deno.test({
    name: `GET and POST carry ${size} bytes both ways, checked by hash`,
    ...T,
    timeout: 60_000,
    async fn() {
      await using stack = await startStack();
      const expected = patternBytes(size);
      const got = new Uint8Array(await (await stack.fetch(`/bytes/${size}`)).arrayBuffer());
      assert.equal(got.length, size);
      assert.equal(await sha256(got), await sha256(expected));
      const posted = await (await stack.fetch("/sha256", { method: "POST", body: expected }))
        .json();
      assert.deepEqual(posted, { length: size, sha256: await sha256(expected) });
    },
  });
}

Deno.test({
  name: "chunked responses arrive whole and in order",
  ...T,
  async fn() {
    await using stack = await startStack();
    const res = await stack.fetch("/chunked");
    assert.equal(res.headers.get("transfer-encoding"), "chunked");
    assert.equal(await res.text(), "first,second,third");
  },
});

Deno.test({
  name: "keep-alive: 100 sequential requests share one public connection",
  ...T,
  async fn() {
    await using stack = await startStack();
    const request = `GET /whoami HTTP/1.1\r\nHost: ${stack.host}\r\n\r\n`;
    const bodies = await keepAlive(stack.server.addr.port, request, 100);
    const ports = new Set(bodies.map((body) => body.port));
    assert.equal(ports.size, 1, "the app saw more than one connection");
  },
});

Deno.test({
  name: "WebSocket echo through the tunnel with Deno's WebSocket client",
  ...T,
  async fn() {
    await using stack = await startStack("ws");
    const messages = await webSocketEcho(stack.server.addr.port, stack.host, [
      "one",
      "two",
      "x".repeat(100_000),
    ]);
    assert.deepEqual(messages, ["echo:one", "echo:two", `echo:${"x".repeat(100_000)}`]);
  },
});

Deno.test({
  name: "TLS is relayed end to end by SNI: the app's certificate, not the server's",
  ...T,
  async fn() {
    const cert = readFixtureText("localhost.pem");
    const key = readFixtureText("localhost.key");
    const ca = readFixtureText("ca.pem");
    await using tlsApp = pongApp({ cert, key });
    await using server = await startTestServer();
    await using _tunnel = await openTestTunnel(server, tlsApp.port, { subdomain: "tls" });
    // Sent whole, then with the ClientHello trickled a byte per write (several TCP segments).
    for (const trickle of [false, true]) {
      const tcp = await connect(server.addr.port);
      const answer = await pingOverTls(trickle ? trickling(tcp) : tcp, "tls.localhost", [ca]);
      assert.equal(answer, "pong:ping");
    }
  },
});

/** Makes the first 200 bytes written to `conn` go out one byte per write. */
function trickling(conn: Deno.TcpConn): Deno.TcpConn {
  let budget = 200;
  const write = conn.write.bind(conn);
  conn.write = async (p: Uint8Array) => {
    if (budget <= 0) return write(p);
    const n = Math.min(p.length, budget);
    for (let i = 0; i < n; i++) {
      await write(p.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, 1)); // one TCP segment per byte, not a wait
    }
    budget -= n;
    return n;
  };
  return conn;
}

Deno.test({
  name: "200 concurrent connections through one tunnel all get their own answer",
  ...T,
  async fn() {
    // All 200 come from 127.0.0.1 at once: lift the per-IP limit on connections being routed.
    await using stack = await startStack("demo", {}, { maxSniffingPerIp: 0 });
    const bodies = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const conn = await connect(stack.server.addr.port);
        await writeAllTo(
          conn,
          encode(
            `GET /bytes/10000 HTTP/1.1\r\nHost: ${stack.host}\r\nConnection: close\r\n\r\n`,
          ),
        );
        const bytes = await readAll(conn);
        conn.close();
        return bytes;
      }),
    );
    const want = await sha256(patternBytes(10_000));
    for (const bytes of bodies) {
      const text = new TextDecoder("latin1").decode(bytes);
      const start = text.indexOf("\r\n\r\n") + 4;
      assert.equal(await sha256(bytes.subarray(start)), want);
    }
  },
});

Deno.test({
  name: "two tunnels at once: every answer comes from its own app",
  ...T,
  async fn() {
    await using appA = startApp("a");
    await using appB = startApp("b");
    // 100 visitors at once from 127.0.0.1: lift the per-IP limit on connections being routed.
    await using server = await startTestServer({ limits: { maxSniffingPerIp: 0 } });
    await using _a = await openTestTunnel(server, appA.addr.port, { subdomain: "alpha" });
    await using _b = await openTestTunnel(server, appB.addr.port, { subdomain: "beta" });
    using http = Deno.createHttpClient({ allowHost: true });
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const sub = i % 2 ? "alpha" : "beta";
        const res = await fetch(`http://${HOST}:${server.addr.port}/whoami`, {
          client: http,
          headers: { host: `${sub}.localhost:${server.addr.port}` },
        });
        return [sub, (await res.json()).name] as const;
      }),
    );
    for (const [sub, name] of results) assert.equal(name, sub === "alpha" ? "a" : "b");
  },
});

Deno.test({
  name: "unknown subdomain, other domain and nested subdomain get 404",
  ...T,
  async fn() {
    await using stack = await startStack();
    const port = stack.server.addr.port;
    for (const host of ["nope.localhost", "example.com", "a.demo.localhost"]) {
      const answer = await rawRequest(port, `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 404 /, host);
    }
  },
});

Deno.test({
  name: "the apex and IP hosts get the landing page and status API",
  ...T,
  async fn() {
    await using stack = await startStack();
    const port = stack.server.addr.port;
    const landing = await rawRequest(port, `GET / HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`);
    assert.match(landing, /^HTTP\/1\.1 200 [^]*<h1>Gotunnel<\/h1>/);
    const status = await fetch(`http://${HOST}:${port}/api/status`);
    assert.deepEqual(await status.json(), { version: "0.1.0", tunnels: 1 });
  },
});

Deno.test({
  name: "a taken subdomain is an explicit error, never a silent reassignment",
  ...T,
  async fn() {
    await using stack = await startStack("taken");
    await assert.rejects(
      openTestTunnel(stack.server, stack.app.addr.port, { subdomain: "taken" }),
      (e) =>
        e instanceof TunnelError && e.code === "subdomain-taken" &&
        /already in use/.test(e.message),
    );
    await assert.rejects(
      openTestTunnel(stack.server, stack.app.addr.port, { subdomain: "-bad-" }),
      (e) => e instanceof TunnelError && e.code === "invalid-subdomain",
    );
    const random = await openTestTunnel(stack.server, stack.app.addr.port);
    assert.match(random.subdomain, /^[a-z0-9]{8,}$/);
    await random.close();
  },
});

Deno.test({
  name: "local app down: the visitor gets 502 and the tunnel stays up",
  ...T,
  async fn() {
    await using stack = await startStack();
    const port = stack.app.addr.port;
    await stack.app.shutdown();
    const answer = await rawRequest(
      stack.server.addr.port,
      `GET / HTTP/1.1\r\nHost: ${stack.host}\r\n\r\n`,
    );
    assert.match(answer, /^HTTP\/1\.1 502 [^]*cannot reach the local app/);
    // A new app on the same port is reached through the same tunnel.
    await using _again = Deno.serve(
      { port, hostname: HOST, onListen() {} },
      () => new Response("back"),
    );
    assert.equal(await (await stack.fetch("/")).text(), "back");
  },
});

Deno.test({
  name: "half-close: a visitor that shuts its write side still gets the whole answer",
  ...T,
  async fn() {
    // A raw TCP app that answers only after it has read to end of stream.
    await using app = rawApp(async (conn) => {
      const got = await readAll(conn);
      await writeAllTo(conn, encode(`got ${got.length} bytes`));
    });
    await using server = await startTestServer();
    await using _t = await openTestTunnel(server, app.port, { subdomain: "half", raw: true });
    const conn = await connect(server.addr.port);
    const request = encode(
      `POST / HTTP/1.1\r\nHost: half.localhost\r\n\r\n${"x".repeat(100_000)}`,
    );
    await writeAllTo(conn, request);
    await conn.closeWrite();
    assert.equal(decode(await readAll(conn)), `got ${request.length} bytes`);
    conn.close();
  },
});

Deno.test({
  name: "a TLS connection for no tunnel, and garbage, are closed without an answer",
  ...T,
  async fn() {
    await using stack = await startStack("plain"); // the fixtures' SNI is demo.localhost
    for (
      const bytes of [
        readFixture("chromium-clienthello.bin"),
        readFixture("openssl-clienthello-nosni.bin"),
        encode("SSH-2.0-OpenSSH_9.2\r\n"),
        new Uint8Array([0, 1, 2, 3]),
      ]
    ) {
      const conn = await connect(stack.server.addr.port);
      await writeAllTo(conn, bytes);
      assert.equal((await readAll(conn)).length, 0);
      conn.close();
    }
    // The tunnel still serves.
    assert.equal(await (await stack.fetch("/")).text(), "hello from app\n");
  },
});
