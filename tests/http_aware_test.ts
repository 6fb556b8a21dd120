// The HTTP-aware client: every request's head rewritten (X-Forwarded-*, Forwarded, Host),
// bodies untouched, smuggling refused; --raw turns it off.

import assert from "node:assert/strict";
import { rewriteRequestHead } from "../lib/client/forwarded.ts";
import {
  connect,
  HOST,
  openTestTunnel,
  rawRequest,
  readFixture,
  startApp,
  startTestServer,
  writeAllTo,
} from "./helpers.ts";

const T = { timeout: 30_000 };
const encode = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Sends `count` keep-alive requests on one connection; returns each JSON body. */
async function keepAlive(
  port: number,
  head: string,
  count: number,
): Promise<Record<string, string>[]> {
  const conn = await connect(port);
  const bodies: Record<string, string>[] = [];
  const buffer = new Uint8Array(8192);
  try {
    for (let i = 0; i < count; i++) {
      await writeAllTo(conn, encode(head));
      let text = "";
      for (;;) {
        const n = await conn.read(buffer);
        assert.notEqual(n, null, `closed at request ${i}`);
        text += new TextDecoder().decode(buffer.subarray(0, n!));
        const end = text.indexOf("\r\n\r\n");
        const length = /content-length: (\d+)/i.exec(text)?.[1];
        if (end >= 0 && length && text.length >= end + 4 + Number(length)) break;
      }
      bodies.push(JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4)));
    }
  } finally {
    conn.close();
  }
  return bodies;
}

Deno.test({
  name: "Host is rewritten and X-Forwarded-* set on the 1st and the 50th request of one connection",
  ...T,
  async fn() {
    const app = startApp();
    await using server = await startTestServer();
    const local = `localhost:${app.addr.port}`;
    await using _t = await openTestTunnel(server, app.addr.port, {
      subdomain: "dev",
      hostHeader: local,
    });
    try {
      const bodies = await keepAlive(
        server.addr.port,
        `GET /whoami HTTP/1.1\r\nHost: dev.localhost:${server.addr.port}\r\n\r\n`,
        50,
      );
      for (const i of [0, 49]) {
        assert.equal(bodies[i]!.host, local, `request ${i + 1}`);
        assert.equal(bodies[i]!.xfh, `dev.localhost:${server.addr.port}`);
        assert.equal(bodies[i]!.xff, "127.0.0.1");
        assert.equal(bodies[i]!.xfp, "http");
      }
    } finally {
      await app.shutdown();
    }
  },
});

Deno.test({
  name:
    "X-Forwarded-For and Forwarded append the visitor; its own X-Forwarded-Proto is not trusted",
  ...T,
  async fn() {
    const app = startApp();
    await using server = await startTestServer();
    await using _t = await openTestTunnel(server, app.addr.port, { subdomain: "chain" });
    try {
      const [body] = await keepAlive(
        server.addr.port,
        "GET /whoami HTTP/1.1\r\nHost: chain.localhost\r\nX-Forwarded-For: 203.0.113.9\r\n" +
          "X-Forwarded-Proto: https\r\nForwarded: for=198.51.100.1\r\n\r\n",
        1,
      );
      assert.equal(body!.xff, "203.0.113.9, 127.0.0.1");
      assert.equal(body!.xfp, "http");
      assert.equal(body!.host, "chain.localhost"); // no hostHeader: Host kept
      assert.equal(
        body!.forwarded,
        'for=198.51.100.1, for=127.0.0.1;host="chain.localhost";proto=http',
      );
    } finally {
      await app.shutdown();
    }
  },
});

Deno.test({
  name: "visitors on the HTTPS port get X-Forwarded-Proto: https",
  ...T,
  async fn() {
    const text = (name: string) => new TextDecoder().decode(readFixture(name));
    const app = startApp();
    await using server = await startTestServer({
      tls: { cert: text("localhost.pem"), key: text("localhost.key"), port: 0 },
    });
    await using _t = await openTestTunnel(server, app.addr.port, { subdomain: "sec" });
    const client = Deno.createHttpClient({ caCerts: [text("ca.pem")], allowHost: true });
    try {
      const res = await fetch(`https://${HOST}:${server.tlsAddr!.port}/whoami`, {
        client,
        headers: { host: "sec.localhost" },
      });
      assert.equal((await res.json()).xfp, "https");
    } finally {
      client.close();
      await app.shutdown();
    }
  },
});

Deno.test({
  name:
    "a smuggling request is refused with 400 and never reaches the app; --raw relays it untouched",
  ...T,
  async fn() {
    let seen = 0;
    const app = Deno.serve({ port: 0, hostname: HOST, onListen() {} }, () => {
      seen++;
      return new Response("reached");
    });
    await using server = await startTestServer();
    const smuggle = "POST / HTTP/1.1\r\nHost: guard.localhost\r\nContent-Length: 4\r\n" +
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    try {
      const guarded = await openTestTunnel(server, app.addr.port, { subdomain: "guard" });
      assert.match(await rawRequest(server.addr.port, smuggle), /^HTTP\/1\.1 400 [^]*smuggling/);
      assert.equal(seen, 0);
      await guarded.close();
    } finally {
      await app.shutdown();
    }
    // --raw: the same kind of tunnel relays bytes untouched, adding no header.
    const whoami = startApp();
    const raw = await openTestTunnel(server, whoami.addr.port, { subdomain: "bare", raw: true });
    try {
      const [body] = await keepAlive(
        server.addr.port,
        "GET /whoami HTTP/1.1\r\nHost: bare.localhost\r\n\r\n",
        1,
      );
      assert.equal(body!.xff, null);
      assert.equal(body!.forwarded, null);
    } finally {
      await raw.close();
      await whoami.shutdown();
    }
  },
});
Deno.test("rewriteRequestHead() brackets and quotes IPv6 visitors", () => {
  const head = rewriteRequestHead(
    {
      method: "GET",
      target: "/",
      status: undefined,
      version: "HTTP/1.1",
      headers: [["Host", "a.x"]],
    },
    { peer: "[2001:db8::7]:4000", scheme: "https", hostHeader: "localhost:3000" },
  );
  assert.deepEqual(head.headers, [
    ["Host", "localhost:3000"],
    ["X-Forwarded-For", "2001:db8::7"],
    ["X-Forwarded-Proto", "https"],
    ["X-Forwarded-Host", "a.x"],
    ["Forwarded", 'for="[2001:db8::7]";host="a.x";proto=https'],
  ]);
});
