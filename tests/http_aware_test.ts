// The HTTP-aware client: every request's head rewritten (X-Forwarded-*, Forwarded, Host),
// bodies untouched, smuggling refused; --raw turns it off.

import assert from "node:assert/strict";
import { silentLogger } from "../lib/log.ts";
import { RequestRewriter, rewriteRequestHead, type VisitorInfo } from "../lib/client/forwarded.ts";
import { Http1Framer } from "../lib/http/framer.ts";
import { MessageHead, parseHead, spliceHead } from "../lib/http/head.ts";
import { ExchangeTracker, type RequestRecord } from "../lib/client/exchanges.ts";
import {
  connect,
  decode,
  encode,
  HOST,
  keepAlive,
  openTestTunnel,
  rawApp,
  rawRequest,
  readAll,
  readFixtureText,
  readUntil,
  serveApp,
  startApp,
  startStack,
  startTestServer,
  T,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

Deno.test({
  name: "Host is rewritten and X-Forwarded-* set on the 1st and the 50th request of one connection",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer();
    const local = `localhost:${app.addr.port}`;
    await using _t = await openTestTunnel(server, app.addr.port, {
      subdomain: "dev",
      hostHeader: local,
    });
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
  },
});

Deno.test({
  name:
    "X-Forwarded-For and Forwarded append the visitor; its own X-Forwarded-Proto is not trusted",
  ...T,
  async fn() {
    await using stack = await startStack("chain");
    const [body] = await keepAlive(
      stack.server.addr.port,
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
  },
});

Deno.test({
  name: "visitors on the HTTPS port get X-Forwarded-Proto: https",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer({
      tls: {
        cert: readFixtureText("localhost.pem"),
        key: readFixtureText("localhost.key"),
        port: 0,
      },
    });
    await using _t = await openTestTunnel(server, app.addr.port, { subdomain: "sec" });
    using client = Deno.createHttpClient({ caCerts: [readFixtureText("ca.pem")], allowHost: true });
    const res = await fetch(`https://${HOST}:${server.tlsAddr!.port}/whoami`, {
      client,
      headers: { host: "sec.localhost" },
    });
    assert.equal((await res.json()).xfp, "https");
  },
});

Deno.test({
  name:
    "a smuggling request is refused with 400 and never reaches the app; --raw relays it untouched",
  ...T,
  async fn() {
    let seen = 0;
    await using app = serveApp(() => {
      seen++;
      return new Response("reached");
    });
    await using server = await startTestServer();
    const smuggle = "POST / HTTP/1.1\r\nHost: guard.localhost\r\nContent-Length: 4\r\n" +
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    const guarded = await openTestTunnel(server, app.addr.port, { subdomain: "guard" });
    assert.match(await rawRequest(server.addr.port, smuggle), /^HTTP\/1\.1 400 [^]*smuggling/);
    assert.equal(seen, 0);
    await guarded.close();
    // --raw: the same kind of tunnel relays bytes untouched, adding no header.
    await using whoami = startApp();
    await using _raw = await openTestTunnel(server, whoami.addr.port, {
      subdomain: "bare",
      raw: true,
    });
    const [body] = await keepAlive(
      server.addr.port,
      "GET /whoami HTTP/1.1\r\nHost: bare.localhost\r\n\r\n",
      1,
    );
    assert.equal(body!.xff, null);
    assert.equal(body!.forwarded, null);
  },
});
/** Rewrites the request head `text` and returns the result as text. */
function rewrite(text: string, info: VisitorInfo): string {
  const event = new Http1Framer("request").push(encode(text))[0]!;
  assert.equal(event.kind, "head");
  return decode(rewriteRequestHead((event as { head: MessageHead }).head, info));
}

Deno.test("rewriteRequestHead(): exact bytes for IPv6, chains, Host anywhere, no fields", () => {
  const v6 = { peer: "[2001:db8::7]:4000", scheme: "https", hostHeader: "localhost:3000" } as const;
  assert.equal(
    rewrite("GET /x?y HTTP/1.1\r\nHost: a.x\r\nAccept: */*\r\n\r\n", v6),
    "GET /x?y HTTP/1.1\r\nHost: localhost:3000\r\nAccept: */*\r\n" +
      "X-Forwarded-For: 2001:db8::7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: a.x\r\n" +
      'Forwarded: for="[2001:db8::7]";host="a.x";proto=https\r\n\r\n',
  );
  // Host last, odd case, bare LF kept on the lines passed on; chains merged and appended;
  // the visitor's own X-Forwarded-Proto and -Host dropped.
  const v4 = { peer: "192.0.2.1:5000", scheme: "http", hostHeader: "app.local:80" } as const;
  assert.equal(
    rewrite(
      "POST / HTTP/1.1\nX-Forwarded-For: 203.0.113.9\r\nx-forwarded-proto: https\r\n" +
        "Content-Length: 0\nX-FORWARDED-FOR: 10.0.0.1\r\nX-Forwarded-Host: evil\r\n" +
        "Forwarded: for=1.2.3.4\r\nhOsT: b.x\r\n\r\n",
      v4,
    ),
    "POST / HTTP/1.1\nContent-Length: 0\nHost: app.local:80\r\n" +
      "X-Forwarded-For: 203.0.113.9, 10.0.0.1, 192.0.2.1\r\nX-Forwarded-Proto: http\r\n" +
      'X-Forwarded-Host: b.x\r\nForwarded: for=1.2.3.4, for=192.0.2.1;host="b.x";proto=http\r\n\r\n',
  );
  // A Forwarded value that does not parse is dropped, at linear cost: runs of " , " once took
  // exponential time (3x per run; 40 runs would not finish within the test's timeout).
  assert.match(
    rewrite(`GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=a${" , ".repeat(40)}@\r\n\r\n`, v4),
    /\r\nForwarded: for=192\.0\.2\.1;host="h";proto=http\r\n\r\n$/,
  );
  // A Forwarded value that does not parse (an open quote would swallow ours) is dropped.
  assert.match(
    rewrite('GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=a;host="\r\n\r\n', v4),
    /\r\nForwarded: for=192\.0\.2\.1;host="h";proto=http\r\n\r\n$/,
  );
  // Without a Host rewrite the Host line stays where it was; an HTTP/1.0 request with no fields.
  const keep = { peer: "127.0.0.1:1", scheme: "http", hostHeader: undefined } as const;
  assert.equal(
    rewrite("GET / HTTP/1.1\r\nA: 1\r\nHost: c.x\r\nB: 2\r\n\r\n", keep),
    "GET / HTTP/1.1\r\nA: 1\r\nHost: c.x\r\nB: 2\r\nX-Forwarded-For: 127.0.0.1\r\n" +
      'X-Forwarded-Proto: http\r\nX-Forwarded-Host: c.x\r\nForwarded: for=127.0.0.1;host="c.x";proto=http\r\n\r\n',
  );
  assert.equal(
    rewrite("GET / HTTP/1.0\r\n\r\n", keep),
    "GET / HTTP/1.0\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n" +
      "Forwarded: for=127.0.0.1;proto=http\r\n\r\n",
  );
});

Deno.test({
  name:
    "an upgrade the app refuses: later requests on the connection are still rewritten and logged",
  ...T,
  async fn() {
    const records: RequestRecord[] = [];
    // The sample app's /whoami answers 200 and ignores Upgrade.
    await using stack = await startStack("noup", { onRequest: (r) => records.push(r) });
    using conn = await connect(stack.server.addr.port);
    const host = "Host: noup.localhost\r\n";
    await writeAllTo(
      conn,
      encode(
        `GET /whoami HTTP/1.1\r\n${host}Upgrade: foo\r\nConnection: Upgrade\r\n\r\n` +
          `GET /whoami HTTP/1.1\r\n${host}X-Forwarded-For: 10.9.9.9\r\nConnection: close\r\n\r\n`,
      ),
    );
    const text = decode(await readAll(conn));
    const bodies = text.match(/\{[^}]*\}/g)!.map((b) => JSON.parse(b));
    assert.equal(bodies.length, 2, text);
    assert.equal(bodies[1].xff, "10.9.9.9, 127.0.0.1");
    await waitFor(() => records.length === 2, 5000, "two records");
    assert.deepEqual(records.map((r) => [r.status, r.upgrade]), [[200, undefined], [
      200,
      undefined,
    ]]);
  },
});

Deno.test({
  name: "CONNECT is refused with 405: an app behind the tunnel is an origin server, not a proxy",
  ...T,
  async fn() {
    let seen = 0;
    await using app = serveApp(() => {
      seen++;
      return new Response("connected?"); // a catch-all app would answer 200
    });
    await using server = await startTestServer();
    await using _t = await openTestTunnel(server, app.addr.port, { subdomain: "conn" });
    const answer = await rawRequest(
      server.addr.port,
      "CONNECT conn.localhost:443 HTTP/1.1\r\nHost: conn.localhost\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 405 Method Not Allowed\r\n[^]*--raw/);
    assert.equal(seen, 0);
  },
});

Deno.test("when the responses cannot be followed, an upgrade request unlocks nothing", async () => {
  // A response head the log cannot frame (obsolete folding) makes it give up; the next
  // upgrade request must then count as refused, so what follows is still checked.
  let out = "";
  const exchanges = new ExchangeTracker();
  const refusals: number[] = [];
  const rewriter = new RequestRewriter({
    out: { write: (p) => (out += decode(p), Promise.resolve(p.length)) },
    info: { peer: "192.0.2.9:1", scheme: "http", hostHeader: undefined },
    refuse: (_answer, status) => refusals.push(status),
    tracker: exchanges,
    log: silentLogger,
  });
  await rewriter.write(encode("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"));
  exchanges.response(encode("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n"));
  await rewriter.write(
    encode(
      "GET /2 HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\n\r\n" +
        "GET /3 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
    ),
  );
  await rewriter.drain();
  assert.deepEqual(refusals, []);
  assert.match(
    out,
    /GET \/3 HTTP\/1\.1\r\nHost: a\r\nX-Forwarded-For: 6\.6\.6\.6, 192\.0\.2\.9\r\n/,
  );
});

Deno.test({
  name:
    "bytes sent right after an upgrade request are held, then relayed raw once the app says 101",
  ...T,
  async fn() {
    // A raw app: reads the head, switches to an echo protocol, echoes until the visitor ends.
    let head = "";
    let early = "";
    await using app = rawApp(async (conn) => {
      const text = await readUntil(conn, /\r\n\r\n/);
      head = text.slice(0, text.indexOf("\r\n\r\n"));
      await writeAllTo(
        conn,
        encode("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"),
      );
      early = text.slice(text.indexOf("\r\n\r\n") + 4); // bytes before the 101: none expected
      if (early) await writeAllTo(conn, encode(early));
      const buffer = new Uint8Array(4096);
      for (let n; (n = await conn.read(buffer)) !== null;) {
        await writeAllTo(conn, buffer.subarray(0, n));
      }
    });
    await using server = await startTestServer();
    await using _t = await openTestTunnel(server, app.port, { subdomain: "echo" });
    using conn = await connect(server.addr.port);
    // Not valid HTTP after the head: it must not be framed, only held until the 101.
    const raw = "\x00\x01 not a request\r\n\r\n";
    await writeAllTo(
      conn,
      encode(
        "GET /echo HTTP/1.1\r\nHost: echo.localhost\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n" +
          raw,
      ),
    );
    await conn.closeWrite();
    const answer = decode(await readAll(conn));
    assert.match(answer, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.ok(answer.endsWith("\r\n\r\n" + raw), JSON.stringify(answer));
    assert.match(head, /\r\nX-Forwarded-For: 127\.0\.0\.1\r\n/); // the upgrade request was rewritten
    assert.equal(early, "", "the bytes after the upgrade request waited for the 101");
  },
});

Deno.test("spliceHead(): kept lines as they were, dropped ones gone, extra lines before the end", () => {
  const head = parseHead(
    encode(
      "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nX-A: 1\nconnection: Upgrade\r\nX-B:2\r\n\r\n",
    ),
    "response",
  );
  assert.ok(head instanceof MessageHead);
  const out = spliceHead(
    head,
    (i) => !head.nameIs(i, "connection"),
    encode("Connection: close\r\n"),
  );
  assert.equal(
    new TextDecoder().decode(out),
    "HTTP/1.1 200 OK\r\nX-A: 1\nX-B:2\r\nConnection: close\r\n\r\n",
  );
  const bare = parseHead(encode("HTTP/1.1 204 No Content\r\n\r\n"), "response");
  assert.ok(bare instanceof MessageHead);
  assert.equal(
    new TextDecoder().decode(spliceHead(bare, () => true, encode("A: b\r\n"))),
    "HTTP/1.1 204 No Content\r\nA: b\r\n\r\n",
  );
});
