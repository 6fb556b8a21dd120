// --local-https: the client speaks TLS to the local app, checking its certificate
// unless told --allow-invalid-cert; end-to-end TLS visitors still go straight through.

import assert from "node:assert/strict";
import {
  connect,
  decode,
  encode,
  HOST,
  logRecorder,
  openTestTunnel,
  patternBytes,
  rawRequest,
  readAll,
  readFixtureText,
  serveApp,
  sha256,
  spawnCli,
  startTestServer,
  T,
  tcpHop,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

const text = readFixtureText;

/** An HTTPS app on 127.0.0.1 with the given certificate. */
function httpsApp(cert: string, key: string): Deno.HttpServer<Deno.NetAddr> {
  return serveApp(async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/sha256") {
      const body = new Uint8Array(await req.arrayBuffer());
      return Response.json({ length: body.length, sha256: await sha256(body) });
    }
    return Response.json({
      secure: req.url.startsWith("https:"),
      host: req.headers.get("host"),
      xfp: req.headers.get("x-forwarded-proto"),
      xff: req.headers.get("x-forwarded-for"),
    });
  }, { tls: { cert, key } });
}

const bodyOf = (answer: string): string => answer.slice(answer.indexOf("\r\n\r\n") + 4);

Deno.test({
  name: "--local-https with a self-signed certificate: 502 that says why, then works with " +
    "--allow-invalid-cert (keep-alive, 4 MiB POST, headers)",
  ...T,
  async fn() {
    await using app = httpsApp(text("self-signed.pem"), text("self-signed.key"));
    await using server = await startTestServer();
    const strict = await openTestTunnel(server, app.addr.port, {
      subdomain: "strict",
      localHost: "localhost",
      localHttps: true,
    });
    const refused = await rawRequest(
      server.addr.port,
      "GET / HTTP/1.1\r\nHost: strict.localhost\r\n\r\n",
    );
    await strict.close();
    assert.match(refused, /^HTTP\/1\.1 502 /);
    assert.match(bodyOf(refused), /certificate[^]*--allow-invalid-cert/i);

    await using _t = await openTestTunnel(server, app.addr.port, {
      subdomain: "lax",
      localHost: "localhost",
      localHttps: true,
      allowInvalidCert: true,
    });
    // 20 requests on one visitor connection: all reach the app over TLS, rewritten.
    const conn = await connect(server.addr.port);
    const request = "GET /who HTTP/1.1\r\nHost: lax.localhost\r\n\r\n";
    await writeAllTo(
      conn,
      encode(request.repeat(19) + request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")),
    );
    const answers = decode(await readAll(conn));
    conn.close();
    const bodies = answers.match(/\{[^}]*\}/g)!.map((b) => JSON.parse(b));
    assert.equal(bodies.length, 20);
    for (const body of bodies) {
      assert.deepEqual(body, {
        secure: true,
        host: "lax.localhost",
        xfp: "http",
        xff: "127.0.0.1",
      });
    }
    const payload = patternBytes(4 << 20);
    const post = await connect(server.addr.port);
    await writeAllTo(
      post,
      encode(
        `POST /sha256 HTTP/1.1\r\nHost: lax.localhost\r\nContent-Length: ${payload.length}\r\n` +
          "Connection: close\r\n\r\n",
      ),
    );
    await writeAllTo(post, payload);
    const posted = JSON.parse(bodyOf(decode(await readAll(post))));
    post.close();
    assert.deepEqual(posted, { length: payload.length, sha256: await sha256(payload) });
  },
});

Deno.test({
  name: "--local-https checks the certificate against --ca; TLS visitors still reach the app " +
    "end to end",
  ...T,
  async fn() {
    await using app = httpsApp(text("localhost.pem"), text("localhost.key"));
    await using server = await startTestServer();
    await using _t = await openTestTunnel(server, app.addr.port, {
      subdomain: "app",
      localHost: "localhost",
      localHttps: true,
      ca: [text("ca.pem")],
    });
    const answer = await rawRequest(
      server.addr.port,
      "GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.equal(JSON.parse(bodyOf(answer)).secure, true);
    // A visitor speaking TLS to app.localhost itself: routed by SNI, not wrapped again.
    const tcp = await connect(server.addr.port);
    const tls = await Deno.startTls(tcp, {
      hostname: "app.localhost",
      caCerts: [text("ca.pem")],
    });
    await writeAllTo(
      tls,
      encode("GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n"),
    );
    const direct = decode(await readAll(tls));
    tls.close();
    assert.match(direct, /^HTTP\/1\.1 200 /);
    // End to end: the app saw no X-Forwarded-For, since the client could not read the request.
    assert.equal(JSON.parse(bodyOf(direct)).xff, null);
  },
});

Deno.test({
  name: "client.ts --allow-invalid-cert without --local-https is a usage error",
  ...T,
  async fn() {
    const end = await spawnCli("client.ts", ["3000", "--allow-invalid-cert"]).exited;
    assert.equal(end.code, 2);
    assert.match(end.stderr, /--allow-invalid-cert needs --local-https/);
  },
});

Deno.test({
  name: "--allow-invalid-cert: a refused request leaves the proxy connection usable; " +
    "localhost falls back to ::1",
  ...T,
  async fn() {
    // The app listens on ::1 only: the dialer must fall back from 127.0.0.1.
    await using app = serveApp(() => new Response("over tls\n"), {
      hostname: "::1",
      tls: { cert: text("self-signed.pem"), key: text("self-signed.key") },
    });
    const log = logRecorder();
    await using server = await startTestServer({ logger: log });
    await using hop = tcpHop(server.addr.port); // counts the client's connections to the server
    await using _tunnel = await openTestTunnel(server, app.addr.port, {
      server: `http://${HOST}:${hop.port}`,
      subdomain: "six",
      localHost: "localhost",
      localHttps: true,
      allowInvalidCert: true,
      pool: 1,
    });
    // One request; then its proxy connection is back in the server's pool.
    const request = async (head: string): Promise<string> => {
      const streams = log.count("Stream done");
      const answer = await rawRequest(server.addr.port, head);
      await waitFor(() => log.count("Stream done") > streams, 5_000, "the stream to end");
      return answer;
    };
    const ok = "GET / HTTP/1.1\r\nHost: six.localhost\r\nConnection: close\r\n\r\n";
    assert.match(await request(ok), /^HTTP\/1\.1 200 [^]*over tls/);
    // The control connection, the pool's one, and the one that replaced it while it was busy.
    await waitFor(() => hop.connections === 3, 5_000, "the pool to be topped up");
    const smuggle = "POST / HTTP/1.1\r\nHost: six.localhost\r\nContent-Length: 1\r\n" +
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert.match(await request(smuggle), /^HTTP\/1\.1 400 /);
    for (let i = 0; i < 3; i++) {
      assert.match(await request(ok), /^HTTP\/1\.1 200 [^]*over tls/);
    }
    // Had the refusal cost its connection, the next visitor would have taken the last idle
    // one and the pool would have dialled a fourth to stay topped up.
    assert.equal(hop.connections, 3, "the connection that carried the refusal was reused");
  },
});
