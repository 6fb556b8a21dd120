// The admin listener: /metrics (checked by a strict exposition parser) moving
// with known traffic, /api/tunnels, the token, loopback rules, and the CLI flags.

import assert from "node:assert/strict";
import { encodeFrame, PROTOCOL_VERSION } from "../lib/protocol.ts";
import type { AdminStatus } from "../lib/server/admin_status.ts";
import type { TunnelServer } from "../lib/server/server.ts";
import { closeQuietly } from "../lib/io.ts";
import { type ParsedFamily, parseExposition, sampleValue } from "./exposition.ts";
import {
  connect,
  encode,
  HOST,
  openTestTunnel,
  rawClient,
  rawRequest,
  readAll,
  spawnCli,
  startApp,
  startTestServer,
  T,
  tcpHop,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

const TOKEN = "admin-token-0123456789";

/** GETs `path` from the server's admin listener. */
function admin(server: TunnelServer, path: string, init: RequestInit = {}): Promise<Response> {
  assert.ok(server.adminAddr, "the server has an admin listener");
  return fetch(`http://${HOST}:${server.adminAddr.port}${path}`, init);
}

/** Scrapes `/metrics` and parses it strictly. */
async function scrape(server: TunnelServer, token?: string): Promise<Map<string, ParsedFamily>> {
  const res = await admin(server, "/metrics", {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(await res.text());
}

/** A value from a fresh scrape. */
async function metric(
  server: TunnelServer,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  return sampleValue(await scrape(server), name, labels);
}

/** Sends `head` on a new connection and reads the whole answer, as bytes. */
async function exchange(port: number, head: string): Promise<Uint8Array> {
  const conn = await connect(port);
  try {
    await writeAllTo(conn, encode(head));
    return await readAll(conn);
  } finally {
    closeQuietly(conn);
  }
}

Deno.test({
  name: "/metrics parses strictly, follows the naming rules, and moves with known traffic",
  ...T,
  async fn() {
    await using app = startApp("metered-app");
    await using server = await startTestServer({
      admin: { port: 0 },
      limits: { sniffTimeoutMs: 300 },
    });
    const port = server.addr.port;
    const before = await scrape(server);
    for (const family of before.values()) {
      assert.match(family.name, /^gotunnel_[a-z_]+$/);
      if (family.type === "counter") assert.match(family.name, /_total$/);
      else assert.doesNotMatch(family.name, /_total$/);
      assert.ok(family.help && family.help.length > 10, `${family.name} has a HELP`);
    }
    assert.ok(sampleValue(before, "gotunnel_process_resident_memory_bytes") > 0);
    assert.ok(sampleValue(before, "gotunnel_process_heap_used_bytes") > 0);
    const at = (name: string, labels: Record<string, string> = {}) =>
      sampleValue(before, name, labels);

    await using tunnel = await openTestTunnel(server, app.addr.port, { subdomain: "metered" });
    await waitFor(
      async () => await metric(server, "gotunnel_proxy_attaches_total", { result: "attached" }) > 0,
      5_000,
      "a proxy connection to attach",
    );
    // One relayed request of known size each way.
    const request =
      `GET / HTTP/1.1\r\nHost: metered.localhost:${port}\r\nConnection: close\r\n\r\n`;
    const answer = await exchange(port, request);
    assert.match(new TextDecoder().decode(answer), /^HTTP\/1\.1 200 [^]*hello from metered-app/);
    // Refusals, one of each.
    assert.match(
      await rawRequest(port, "GET / HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n"),
      / 404 /,
    );
    assert.match(await rawRequest(port, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), / 400 /);
    const big = `GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"a".repeat(17_000)}\r\n\r\n`;
    assert.match(await rawRequest(port, big), / 431 /);
    assert.match(await rawRequest(port, "GET / HTTP/1.1\r\n"), / 408 /);
    assert.match(await rawRequest(port, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), / 200 /);
    assert.equal(await rawRequest(port, "SSH-2.0-OpenSSH_9.6\r\n\r\n"), "");
    const wrongVersion = encodeFrame({ type: "hello", version: PROTOCOL_VERSION + 98 });
    const { conn } = await rawClient(port, wrongVersion);
    closeQuietly(conn);

    const inBytes = request.length;
    await waitFor(
      async () => await metric(server, "gotunnel_relayed_bytes_total", { direction: "in" }) > 0,
      5_000,
      "the relayed connection to be counted",
    );
    await waitFor(
      async () =>
        await metric(server, "gotunnel_handshake_failures_total", { reason: "version" }) > 0,
      5_000,
      "the refused hello to be counted",
    );
    const after = await scrape(server);
    const moved = (name: string, labels: Record<string, string> = {}) =>
      sampleValue(after, name, labels) - at(name, labels);
    const outcome = (o: string) => moved("gotunnel_public_connections_total", { outcome: o });
    assert.deepEqual(
      Object.fromEntries(["routed", "404", "400", "431", "408", "page", "closed"].map((o) => [
        o,
        outcome(o),
      ])),
      { routed: 1, "404": 1, "400": 1, "431": 1, "408": 1, page: 1, closed: 1 },
    );
    assert.ok(outcome("client") >= 2, "the tunnel's control and proxy connections");
    for (const o of ["502", "503", "504", "limit", "abandoned", "redirect", "tls_error"]) {
      assert.equal(outcome(o), 0, o);
    }
    assert.equal(moved("gotunnel_relayed_bytes_total", { direction: "in" }), inBytes);
    assert.equal(moved("gotunnel_relayed_bytes_total", { direction: "out" }), answer.length);
    assert.equal(sampleValue(after, "gotunnel_relayed_connections"), 0);
    assert.equal(sampleValue(after, "gotunnel_tunnels"), 1);
    assert.ok(sampleValue(after, "gotunnel_idle_proxy_connections") >= 1);
    assert.equal(moved("gotunnel_tunnel_registrations_total", { result: "registered" }), 1);
    assert.equal(moved("gotunnel_handshake_failures_total", { reason: "version" }), 1);
    assert.equal(moved("gotunnel_proxy_wait_seconds_count"), 1);
    assert.ok(moved("gotunnel_sniff_duration_seconds_count") >= 8, "every connection sniffed");
    // Without --metrics-per-tunnel, no tunnel name appears anywhere.
    for (const family of after.values()) {
      for (const sample of family.samples) {
        assert.ok(!Object.values(sample.labels).includes("metered"), sample.name);
      }
    }
    await tunnel.close();
  },
});

Deno.test({
  name: "a held name counts a hold, a 502 and a refusal; its client's return counts a reclaim",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer({ admin: { port: 0 } });
    await using hop = tcpHop(server.addr.port);
    let ready = 0;
    await using _tunnel = await openTestTunnel(server, app.addr.port, {
      server: `http://${HOST}:${hop.port}`,
      subdomain: "held",
      onReady: () => void ready++,
    });
    await waitFor(
      () => hop.turns(0).join(" ").startsWith("client server client"),
      5_000,
      "the client to answer its welcome",
    );
    hop.cut();
    await waitFor(() => server.tunnelCount === 0, 5_000, "the server to see the cut");
    assert.equal(await metric(server, "gotunnel_lease_holds_total"), 1);
    assert.equal(await metric(server, "gotunnel_leases_held"), 1);
    const get = `GET / HTTP/1.1\r\nHost: held.localhost\r\nConnection: close\r\n\r\n`;
    assert.match(await rawRequest(server.addr.port, get), /^HTTP\/1\.1 502 /);
    await assert.rejects(openTestTunnel(server, 9, { subdomain: "held" }));
    await waitFor(() => ready === 2, 10_000, "the client to come back with its lease");
    const after = await scrape(server);
    assert.equal(sampleValue(after, "gotunnel_lease_reclaims_total"), 1);
    assert.equal(sampleValue(after, "gotunnel_leases_held"), 0);
    assert.equal(sampleValue(after, "gotunnel_public_connections_total", { outcome: "502" }), 1);
    assert.equal(
      sampleValue(after, "gotunnel_tunnel_registrations_total", { result: "subdomain-reserved" }),
      1,
    );
    assert.equal(
      sampleValue(after, "gotunnel_tunnel_registrations_total", { result: "registered" }),
      2,
    );
  },
});

Deno.test({
  name: "/api/tunnels lists each tunnel with its numbers; --metrics-per-tunnel labels series",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer({ admin: { port: 0, perTunnelMetrics: true } });
    await using tunnel = await openTestTunnel(server, app.addr.port, { subdomain: "listed" });
    const get = `GET / HTTP/1.1\r\nHost: listed.localhost\r\nConnection: close\r\n\r\n`;
    for (let i = 0; i < 3; i++) assert.match(await rawRequest(server.addr.port, get), / 200 /);
    const status = async (): Promise<AdminStatus> =>
      await (await admin(server, "/api/tunnels")).json();
    await waitFor(
      async () =>
        (await status()).tunnels[0]?.streams === 3 &&
        (await status()).tunnels[0]?.bytesOut !== 0 && (await status()).totals.relayedStreams === 0,
      5_000,
      "three streams to end",
    );
    const { tunnels, totals, version } = await status();
    assert.equal(version, "0.1.0");
    assert.equal(tunnels.length, 1);
    const [t] = tunnels;
    assert.equal(t!.name, "listed");
    assert.match(t!.client, /^127\.0\.0\.1:\d+$/);
    assert.ok(Math.abs(Date.parse(t!.since) - Date.now()) < 30_000);
    assert.equal(t!.bytesIn, 3 * get.length);
    assert.equal(t!.streamsPerSecond, 3 / 60);
    assert.equal(totals.tunnels, 1);
    assert.equal(totals.streams, 3);
    assert.equal(totals.bytesIn, 3 * get.length);
    assert.equal(totals.bytesOut, t!.bytesOut);
    const info = server.tunnels()[0]!;
    assert.equal(info.bytesOut, t!.bytesOut);
    assert.equal(info.streamsTotal, 3);
    const metrics = await scrape(server);
    const labels = { tunnel: "listed", direction: "in" };
    assert.equal(
      sampleValue(metrics, "gotunnel_tunnel_relayed_bytes_total", labels),
      3 * get.length,
    );
    assert.equal(sampleValue(metrics, "gotunnel_tunnel_streams_total", { tunnel: "listed" }), 3);
    assert.equal(sampleValue(metrics, "gotunnel_tunnel_open_streams", { tunnel: "listed" }), 0);
    await tunnel.close();
    await waitFor(() => server.tunnelCount === 0, 5_000, "the tunnel to go");
    const gone = await scrape(server);
    assert.equal(gone.get("gotunnel_tunnel_streams_total")?.samples.length, 0);
  },
});

Deno.test({
  name:
    "with an admin token, the data needs it (401 otherwise, on loopback too); the page does not",
  ...T,
  async fn() {
    await using server = await startTestServer({ admin: { port: 0, token: TOKEN } });
    for (const path of ["/metrics", "/api/tunnels"]) {
      for (
        const headers of [
          {},
          { Authorization: "Bearer wrong-token-0123456789" },
          { Authorization: `Bearer ${TOKEN}x` },
          { Authorization: `Basic ${btoa(`x:${TOKEN}`)}` },
          { Authorization: TOKEN },
        ]
      ) {
        const res = await admin(server, path, { headers });
        assert.equal(res.status, 401, `${path} ${JSON.stringify(headers)}`);
        assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm="gotunnel"/);
        await res.body?.cancel();
      }
      const ok = await admin(server, path, { headers: { Authorization: `Bearer ${TOKEN}` } });
      assert.equal(ok.status, 200, path);
      await ok.body?.cancel();
    }
    await scrape(server, TOKEN);
    const page = await admin(server, "/dashboard");
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
    assert.doesNotMatch(await page.text(), /gotunnel_|0\.1\.0/); // the page holds no data
  },
});

Deno.test({
  name: "without a token: only loopback names are answered, GET only, unknown paths 404",
  ...T,
  async fn() {
    await using server = await startTestServer({ admin: { port: 0 } });
    const port = server.adminAddr!.port;
    const raw = (head: string) => rawRequest(port, head + "Connection: close\r\n\r\n");
    assert.match(await raw("GET /metrics HTTP/1.1\r\nHost: evil.example\r\n"), /^HTTP\/1\.1 403 /);
    assert.match(await raw("GET /metrics HTTP/1.1\r\nHost: 10.0.0.1:9090\r\n"), /^HTTP\/1\.1 403 /);
    assert.match(
      await raw("GET /metrics HTTP/1.1\r\nHost: localhost:9090\r\n"),
      /^HTTP\/1\.1 200 /,
    );
    assert.match(await raw("GET /metrics HTTP/1.1\r\nHost: [::1]\r\n"), /^HTTP\/1\.1 200 /);
    assert.match(await raw("POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"), /^HTTP\/1\.1 405 /);
    assert.match(await raw("GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n"), /^HTTP\/1\.1 404 /);
    assert.match(
      await raw("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
      /^HTTP\/1\.1 308 [^]*location: \/dashboard/i,
    );
  },
});

Deno.test({
  name: "an admin connection that sends nothing is closed at the deadline; a huge head gets 431",
  ...T,
  async fn() {
    await using server = await startTestServer({
      admin: { port: 0 },
      limits: { sniffTimeoutMs: 200, maxSniffBytes: 4096 },
    });
    const port = server.adminAddr!.port;
    const silent = await connect(port);
    const started = performance.now();
    assert.equal((await readAll(silent)).length, 0); // closed by the server, nothing said
    assert.ok(performance.now() - started < 5_000);
    silent.close();
    const big = `GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX: ${"a".repeat(5000)}\r\n\r\n`;
    assert.match(await rawRequest(port, big), /^HTTP\/1\.1 431 /);
    assert.match(await rawRequest(port, "GET /metrics HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 400 /);
  },
});

Deno.test({
  name: "startServer() refuses an admin listener off loopback without a token, or a short token",
  ...T,
  async fn() {
    for (const hostname of ["0.0.0.0", "::", "192.0.2.1", "example.com"]) {
      await assert.rejects(
        startTestServer({ admin: { hostname, port: 0 } }),
        (e: Error) => e instanceof RangeError && /not on loopback: give it a token/.test(e.message),
      );
    }
    await assert.rejects(startTestServer({ admin: { port: 0, token: "short" } }), RangeError);
  },
});

Deno.test({
  name: "server.close() closes the admin listener too",
  ...T,
  async fn() {
    const server = await startTestServer({ admin: { port: 0 } });
    const port = server.adminAddr!.port;
    await server.close();
    await assert.rejects(Deno.connect({ hostname: HOST, port }), Deno.errors.ConnectionRefused);
  },
});

Deno.test({
  name:
    "server.ts --admin serves the dashboard and metrics; off loopback without a token it exits 2",
  ...T,
  async fn() {
    const refused = await spawnCli("server.ts", ["--port", "0", "--admin", "0.0.0.0:9090"]).exited;
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /Invalid --admin: .*not on loopback: give it a token/);
    const alone = await spawnCli("server.ts", ["--admin-token", TOKEN]).exited;
    assert.equal(alone.code, 2);
    assert.match(alone.stderr, /--admin-token and --metrics-per-tunnel need --admin ADDR/);
    const bad = await spawnCli("server.ts", ["--admin", "localhost"]).exited;
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Invalid --admin "localhost": use HOST:PORT/);

    const cli = spawnCli("server.ts", ["--port", "0", "--hostname", HOST, "--admin", `${HOST}:0`], {
      GOTUNNEL_ADMIN_TOKEN: TOKEN,
    });
    await cli.firstLine();
    let url = "";
    await waitFor(
      () => {
        url = /Admin listening url=(\S+) token=true/.exec(cli.output().stderr)?.[1] ?? "";
        return url !== "";
      },
      10_000,
      "the admin address in the log",
    );
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>Gotunnel server<\/title>/);
    const metricsUrl = url.replace("/dashboard", "/metrics");
    const denied = await fetch(metricsUrl);
    assert.equal(denied.status, 401);
    await denied.body?.cancel();
    const res = await fetch(metricsUrl, { headers: { Authorization: `Bearer ${TOKEN}` } });
    const families = parseExposition(await res.text());
    assert.equal(sampleValue(families, "gotunnel_tunnels"), 0);
    const end = await cli.stop("SIGTERM");
    assert.equal(end.code, 0, end.stderr);
  },
});
