// TLS termination on the server: https URLs, HTTP/1.1-only ALPN, certificate reload,
// redirects from plain HTTP, and clients that reach the server over TLS.

import assert from "node:assert/strict";
import { TunnelError } from "../lib/errors.ts";
import {
  connect,
  decode,
  encode,
  HOST,
  openTestTunnel,
  pingOverTls,
  pongApp,
  rawRequest,
  readFixtureText,
  spawnCli,
  startApp,
  startTestServer,
  T,
  waitFor,
} from "./helpers.ts";

const text = readFixtureText;
const cert = text("localhost.pem");
const key = text("localhost.key");
const ca = text("ca.pem");
const nextCert = text("localhost-next.pem");
const nextKey = text("localhost-next.key");
const nextCa = text("ca-next.pem");

async function httpsGet(port: number, host: string, caCerts: string[]): Promise<Response> {
  using client = Deno.createHttpClient({ caCerts, allowHost: true });
  const res = await fetch(`https://${HOST}:${port}/whoami`, { client, headers: { host } });
  await res.body?.cancel();
  return res;
}

/** Completes a TLS handshake with `port`, trusting `caCerts`; returns the ALPN protocol. */
async function handshake(port: number, caCerts: string[], alpn?: string[]): Promise<string | null> {
  using conn = await Deno.connectTls({
    hostname: HOST,
    port,
    caCerts,
    ...(alpn ? { alpnProtocols: alpn } : {}),
  });
  return (await conn.handshake()).alpnProtocol;
}

Deno.test({
  name: "with a certificate, tunnel URLs are https, visitors are served over TLS, ALPN is http/1.1",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer({ tls: { cert, key, port: 0 } });
    const tlsPort = server.tlsAddr!.port;
    assert.equal(server.url, `https://localhost:${tlsPort}`);
    await using tunnel = await openTestTunnel(server, app.addr.port, { subdomain: "demo" });
    assert.equal(tunnel.url, `https://demo.localhost:${tlsPort}`);
    const client = Deno.createHttpClient({ caCerts: [ca], allowHost: true });
    const res = await fetch(`https://${HOST}:${tlsPort}/whoami`, {
      client,
      headers: { host: `demo.localhost:${tlsPort}` },
    });
    assert.equal((await res.json()).name, "app");
    client.close();
    assert.equal(await handshake(tlsPort, [ca], ["h2", "http/1.1"]), "http/1.1");
    // The plain port still serves plain HTTP...
    assert.match(
      await rawRequest(
        server.addr.port,
        "GET / HTTP/1.1\r\nHost: demo.localhost\r\nConnection: close\r\n\r\n",
      ),
      /^HTTP\/1\.1 200 /,
    );
    // ...and still relays TLS by SNI untouched, to an app with a certificate of another CA:
    // a visitor that trusts only that CA completes its handshake with the app, not the server.
    await using tlsApp = pongApp({ cert: nextCert, key: nextKey });
    await using _relayed = await openTestTunnel(server, tlsApp.port, { subdomain: "tls" });
    const relayed = await pingOverTls(await connect(server.addr.port), "tls.localhost", [nextCa]);
    assert.equal(relayed, "pong:ping");
    // On the TLS port, the same name is the server's to answer, with its own certificate.
    await assert.rejects(handshake(tlsPort, [nextCa]));
  },
});

Deno.test({
  name: "reloadTls() swaps the certificate for new connections and keeps open ones",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer({ tls: { cert, key, port: 0 } });
    const tlsPort = server.tlsAddr!.port;
    await using _tunnel = await openTestTunnel(server, app.addr.port, { subdomain: "demo" });
    const host = `demo.localhost:${tlsPort}`;
    const open = await Deno.connectTls({ hostname: HOST, port: tlsPort, caCerts: [ca] });
    await open.handshake();
    await assert.rejects(server.reloadTls("not a certificate", "not a key"));
    assert.equal((await httpsGet(tlsPort, host, [ca])).status, 200); // the old one still
    await server.reloadTls(nextCert, nextKey);
    assert.equal((await httpsGet(tlsPort, host, [nextCa])).status, 200);
    await assert.rejects(handshake(tlsPort, [ca])); // new connections: the new certificate
    // The connection opened before the reload goes on working.
    await open.write(
      encode(
        `GET /whoami HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      ),
    );
    const buffer = new Uint8Array(4096);
    const n = await open.read(buffer);
    assert.match(decode(buffer.subarray(0, n!)), /^HTTP\/1\.1 200/);
    open.close();
  },
});

Deno.test({
  name: "redirectHttp answers plain requests for tunnels with 308 to https, keeping the path",
  ...T,
  async fn() {
    await using server = await startTestServer({ tls: { cert, key, port: 0 }, redirectHttp: true });
    const tlsPort = server.tlsAddr!.port;
    const answer = await rawRequest(
      server.addr.port,
      "GET /a/b?c=1 HTTP/1.1\r\nHost: demo.localhost:8080\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 308 /);
    assert.match(
      answer,
      new RegExp(`\\r\\nLocation: https://demo\\.localhost:${tlsPort}/a/b\\?c=1\\r\\n`),
    );
    // The apex and clients on the plain port are not redirected.
    assert.match(
      await rawRequest(server.addr.port, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
      /^HTTP\/1\.1 200 /,
    );
    const tunnel = await openTestTunnel(server, 9, { subdomain: "plain" });
    await tunnel.close();
  },
});

Deno.test({
  name: "a client reaches the server over https with a private CA, and refuses an unknown one",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer({ tls: { cert, key, port: 0 } });
    const https = `https://${HOST}:${server.tlsAddr!.port}`;
    const tunnel = await openTestTunnel(server, app.addr.port, {
      subdomain: "sec",
      server: https,
      ca: [ca],
    });
    assert.match(
      await rawRequest(
        server.addr.port,
        "GET / HTTP/1.1\r\nHost: sec.localhost\r\nConnection: close\r\n\r\n",
      ),
      /^HTTP\/1\.1 200 [^]*hello from app/,
    );
    await tunnel.close();
    await assert.rejects(
      openTestTunnel(server, app.addr.port, { subdomain: "sec", server: https }),
      (e) => e instanceof TunnelError && e.code === "connect",
    );
  },
});

Deno.test({
  name: "server.ts serves https with --tls-cert/--tls-key and reloads them on SIGHUP",
  ...T,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/cert.pem`, cert);
      await Deno.writeTextFile(`${dir}/key.pem`, key);
      const server = spawnCli("server.ts", [
        "--port",
        "0",
        "--hostname",
        HOST,
        "--tls-cert",
        `${dir}/cert.pem`,
        "--tls-key",
        `${dir}/key.pem`,
        "--tls-port",
        "0",
      ]);
      const url = await server.firstLine();
      assert.match(url, /^https:\/\/localhost:\d+$/);
      const port = Number(new URL(url).port);
      assert.equal(await handshake(port, [ca]), null);
      await Deno.writeTextFile(`${dir}/cert.pem`, nextCert);
      await Deno.writeTextFile(`${dir}/key.pem`, nextKey);
      server.kill("SIGHUP");
      const reloaded = () => server.output().stderr.includes("TLS certificate reloaded");
      await waitFor(reloaded, 5_000, "the certificate to be reloaded on SIGHUP");
      assert.equal(await handshake(port, [nextCa]), null); // the new certificate is served
      const end = await server.stop("SIGTERM");
      assert.equal(end.code, 0, end.stderr);
      for (
        const args of [["--tls-cert", `${dir}/cert.pem`], ["--redirect-http"], ["--tls-port", "9"]]
      ) {
        const bad = await spawnCli("server.ts", ["--port", "0", "--hostname", HOST, ...args])
          .exited;
        assert.equal(bad.code, 2, args.join(" "));
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
