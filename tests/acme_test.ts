// Automatic HTTPS against a real ACME server (Debian's pebble, tests/pebble.ts):
// wildcard by DNS-01, per-name by HTTP-01, restart, renewal, CA outage, 429.

import assert from "node:assert/strict";
import tls from "node:tls";
import type { Tunnel } from "../lib/client/tunnel.ts";
import type { ServerAcme } from "../lib/server/acme/service.ts";
import type { TunnelServer } from "../lib/server/server.ts";
import {
  connect,
  decode,
  encode,
  HOST,
  logRecorder,
  needs,
  openTestTunnel,
  readAll,
  spawnCli,
  startApp,
  startTestServer,
  T,
  waitFor,
  writeAllTo,
} from "./helpers.ts";
import { type Pebble, PEBBLE_CA_FILE, startPebble } from "./pebble.ts";

const DOMAIN = "tunnel.test";
/** Pebble and its DNS must be installed (CI installs them; a developer machine may ignore these). */
const PEBBLE = { ...needs("pebble", "pebble-challtestsrv"), ...T };
/** Retries and polls short enough for a test, long enough to be seen. */
const TIMINGS = {
  pollMinMs: 20,
  pollMaxMs: 200,
  retryMinMs: 100,
  retryMaxMs: 400,
  refusedRetryMinMs: 200,
  refusedRetryMaxMs: 1_000,
};
/** How long a certificate may take in a test (pebble answers in well under a second). */
const CERT_WAIT_MS = 15_000;

function acmeOptions(pebble: Pebble, certDir: string, extra: Partial<ServerAcme> = {}): ServerAcme {
  return {
    email: "ops@example.com",
    agreeToTerms: true,
    directoryUrl: pebble.directoryUrl,
    caCerts: pebble.caCerts,
    certDir,
    port: 0,
    timings: TIMINGS,
    ...extra,
  };
}

/** A Gotunnel server with ACME from `pebble`, whose HTTP-01 validations reach its plain port. */
async function acmeServer(
  pebble: Pebble,
  certDir: string,
  extra: Partial<ServerAcme> = {},
  more: Parameters<typeof startTestServer>[0] = {},
) {
  const log = logRecorder();
  const server = await startTestServer({
    domain: DOMAIN,
    logger: log,
    acme: acmeOptions(pebble, certDir, extra),
    ...more,
  });
  pebble.httpTarget = server.addr.port;
  return { server, log };
}

/** A tunnel that keeps every URL its onReady was called with. */
async function watchedTunnel(
  server: TunnelServer,
  port: number,
  subdomain: string,
): Promise<Tunnel & { urls: string[] }> {
  const urls: string[] = [];
  const tunnel = await openTestTunnel(server, port, {
    subdomain,
    onReady: (url) => urls.push(url),
  });
  return Object.assign(tunnel, { urls });
}

/** `GET /whoami` over TLS to the TLS port with SNI `host`, trusting only `root`: the JSON body. */
async function httpsWhoami(
  port: number,
  host: string,
  root: string,
): Promise<Record<string, unknown>> {
  const conn = await Deno.startTls(await connect(port), { hostname: host, caCerts: [root] });
  try {
    await writeAllTo(
      conn,
      encode(`GET /whoami HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    );
    const text = decode(await readAll(conn));
    assert.match(text, /^HTTP\/1\.1 200 /);
    return JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
  } finally {
    conn.close();
  }
}

/** The certificate the TLS port serves for SNI `host` (checked against `root`), or the handshake's error. */
function servedCertificate(
  port: number,
  host: string,
  root: string,
): Promise<{ serial: string; validTo: string } | { error: string }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: HOST, port, servername: host, ca: [root] }, () => {
      const peer = socket.getPeerCertificate();
      resolve({ serial: peer.serialNumber, validTo: peer.valid_to });
      socket.destroy();
    });
    socket.on("error", (e) => {
      resolve({ error: e.message });
      socket.destroy();
    });
  });
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "gotunnel-certs-" });
  try {
    return await fn(`${dir}/certs`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "wildcard by DNS-01: https://x.tunnel.test is served, verified by pebble's root with SNI",
  ...PEBBLE,
  fn: () =>
    withTempDir(async (certDir) => {
      await using pebble = await startPebble();
      await using app = startApp();
      const started = performance.now();
      const { server, log } = await acmeServer(pebble, certDir, { dnsHook: pebble.dnsHook });
      await using _server = server;
      await using tunnel = await watchedTunnel(server, app.addr.port, "x");
      await waitFor(
        () => tunnel.urls.some((u) => u.startsWith("https:")),
        CERT_WAIT_MS,
        "https URL",
      );
      const elapsed = performance.now() - started;
      const tlsPort = server.tlsAddr!.port;
      assert.equal(tunnel.urls.at(-1), `https://x.${DOMAIN}:${tlsPort}`);
      assert.equal(tunnel.url, `https://x.${DOMAIN}:${tlsPort}`);
      assert.equal(server.url, `https://${DOMAIN}:${tlsPort}`);
      const root = await pebble.root();
      assert.equal((await httpsWhoami(tlsPort, `x.${DOMAIN}`, root)).xfp, "https");
      // The same wildcard covers a name registered later: its welcome is https at once.
      await using later = await watchedTunnel(server, app.addr.port, "later");
      assert.deepEqual(later.urls, [`https://later.${DOMAIN}:${tlsPort}`]);
      assert.equal((await httpsWhoami(tlsPort, `later.${DOMAIN}`, root)).name, "app");
      assert.equal(pebble.orders.length, 1);
      log.info("measured", { first_certificate_ms: Math.round(elapsed) });
      // deno-lint-ignore no-console -- the measurement the closing note quotes
      console.error(`DNS-01: start to first valid certificate served: ${Math.round(elapsed)} ms`);
    }),
});

Deno.test({
  name: "HTTP-01: the apex at start, a reserved name when registered; others stay on http",
  ...PEBBLE,
  fn: () =>
    withTempDir(async (certDir) => {
      await using pebble = await startPebble();
      await using app = startApp();
      const started = performance.now();
      const { server, log } = await acmeServer(pebble, certDir, { names: ["app"] });
      await using _server = server;
      await waitFor(() => server.url.startsWith("https:"), CERT_WAIT_MS, "the apex certificate");
      const apexMs = performance.now() - started;
      const tlsPort = server.tlsAddr!.port;
      const plainPort = server.addr.port;
      await using reserved = await watchedTunnel(server, app.addr.port, "app");
      await using random = await watchedTunnel(server, app.addr.port, "rnd");
      // Until its certificate exists, the reserved name works over http, and is told later.
      assert.equal(reserved.urls[0], `http://app.${DOMAIN}:${plainPort}`);
      await waitFor(
        () => reserved.urls.length === 2,
        CERT_WAIT_MS,
        "the reserved name's https URL",
      );
      assert.equal(reserved.urls[1], `https://app.${DOMAIN}:${tlsPort}`);
      const root = await pebble.root();
      assert.equal((await httpsWhoami(tlsPort, `app.${DOMAIN}`, root)).xfp, "https");
      // The name that is not reserved: no order, no https, its handshakes refused; http works.
      assert.deepEqual(random.urls, [`http://rnd.${DOMAIN}:${plainPort}`]);
      assert.equal(pebble.orders.length, 2);
      assert.ok("error" in await servedCertificate(tlsPort, `rnd.${DOMAIN}`, root));
      assert.equal(log.count("Ordering certificate"), 2);
      // deno-lint-ignore no-console -- the measurement the closing note quotes
      console.error(`HTTP-01: start to apex certificate served: ${Math.round(apexMs)} ms`);
    }),
});

Deno.test({
  name: "HTTP-01: a custom hostname gets its own certificate once its tunnel registers",
  ...PEBBLE,
  fn: () =>
    withTempDir(async (certDir) => {
      await using pebble = await startPebble();
      await using app = startApp();
      const token = "token-for-shop-example-com";
      const { server } = await acmeServer(pebble, certDir, {}, {
        tokens: new Map([[token, ["host:shop.example.com"]]]),
      });
      await using _server = server;
      await waitFor(() => server.url.startsWith("https:"), CERT_WAIT_MS, "the apex certificate");
      const urls: string[] = [];
      await using _tunnel = await openTestTunnel(server, app.addr.port, {
        customDomain: "shop.example.com",
        token,
        onReady: (url) => urls.push(url),
      });
      assert.equal(urls[0], `http://shop.example.com:${server.addr.port}`);
      await waitFor(() => urls.length === 2, CERT_WAIT_MS, "the hostname's https URL");
      const tlsPort = server.tlsAddr!.port;
      assert.equal(urls[1], `https://shop.example.com:${tlsPort}`);
      const root = await pebble.root();
      assert.equal((await httpsWhoami(tlsPort, "shop.example.com", root)).xfp, "https");
      assert.equal(pebble.orders.length, 2); // the apex, then the hostname
    }),
});

Deno.test({
  name: "a visitor's SNI for a name with no tunnel orders nothing, even with per-name issuance",
  ...PEBBLE,
  fn: () =>
    withTempDir(async (certDir) => {
      await using pebble = await startPebble();
      const { server, log } = await acmeServer(pebble, certDir, { perName: true });
      await using _server = server;
      await waitFor(() => server.url.startsWith("https:"), CERT_WAIT_MS, "the apex certificate");
      const root = await pebble.root();
      const port = server.tlsAddr!.port;
      for (const name of ["stranger", "x.y", "www"]) {
        assert.ok("error" in await servedCertificate(port, `${name}.${DOMAIN}`, root));
      }
      // The apex is served; a client without SNI gets it too.
      assert.ok("serial" in await servedCertificate(port, DOMAIN, root));
      assert.equal(pebble.orders.length, 1);
      assert.equal(log.count("Ordering certificate"), 1);
    }),
});

Deno.test({
  name: "per-name issuance for any name: capped per hour, the rest wait",
  ...PEBBLE,
  fn: () =>
    withTempDir(async (certDir) => {
      await using pebble = await startPebble();
      await using app = startApp();
      const { server, log } = await acmeServer(pebble, certDir, {
        perName: true,
        ordersPerHour: 1,
      });
      await using _server = server;
      await using first = await watchedTunnel(server, app.addr.port, "first");
      await waitFor(() => first.urls.length === 2, CERT_WAIT_MS, "the first name's https URL");
      await using second = await watchedTunnel(server, app.addr.port, "second");
      await waitFor(
        () => log.count("Certificate order waits: per-name orders an hour are used up") === 1,
        CERT_WAIT_MS,
        "the cap",
      );
      assert.equal(second.urls.length, 1);
      assert.equal(pebble.orders.length, 2); // the apex and the first name
    }),
});

Deno.test({
  name: "a restart reuses the stored account and certificates and orders nothing",
  ...PEBBLE,
  fn: () =>
    withTempDir(async (certDir) => {
      await using pebble = await startPebble();
      const first = await acmeServer(pebble, certDir, { dnsHook: pebble.dnsHook });
      await waitFor(() => first.server.url.startsWith("https:"), CERT_WAIT_MS, "the certificate");
      await first.server.close();
      const root = await pebble.root();
      const { server, log } = await acmeServer(pebble, certDir, { dnsHook: pebble.dnsHook });
      await using _server = server;
      assert.ok(server.url.startsWith("https:"), "served from the store at once");
      assert.equal(log.count("Ordering certificate"), 0);
      assert.equal(log.count("ACME account registered"), 0);
      assert.ok("serial" in await servedCertificate(server.tlsAddr!.port, `a.${DOMAIN}`, root));
      assert.equal(pebble.orders.length, 1);
      for (const file of ["account.key", "account.json"]) {
        const folder = [...Deno.readDirSync(certDir)].find((e) => e.isDirectory)!.name;
        assert.equal(Deno.statSync(`${certDir}/${folder}/${file}`).mode! & 0o777, 0o600);
      }
    }),
});

Deno.test({
  name:
    "renewal at two thirds of a short life swaps the certificate; a keep-alive connection stays",
  ...PEBBLE,
  fn: () =>
    withTempDir(async (certDir) => {
      await using pebble = await startPebble({ validitySeconds: 9 });
      await using app = startApp();
      const { server, log } = await acmeServer(pebble, certDir, { dnsHook: pebble.dnsHook });
      await using _server = server;
      await using tunnel = await watchedTunnel(server, app.addr.port, "keep");
      await waitFor(() => tunnel.urls.some((u) => u.startsWith("https:")), CERT_WAIT_MS, "https");
      const root = await pebble.root();
      const port = server.tlsAddr!.port;
      const before = await servedCertificate(port, `keep.${DOMAIN}`, root);
      assert.ok("serial" in before);
      // A keep-alive connection made with the first certificate.
      const conn = await Deno.startTls(await connect(port), {
        hostname: `keep.${DOMAIN}`,
        caCerts: [root],
      });
      try {
        const ask = async () => {
          await writeAllTo(conn, encode(`GET /whoami HTTP/1.1\r\nHost: keep.${DOMAIN}\r\n\r\n`));
          const buffer = new Uint8Array(4096);
          const n = await conn.read(buffer);
          return decode(buffer.subarray(0, n ?? 0));
        };
        assert.match(await ask(), /^HTTP\/1\.1 200 /);
        await waitFor(() => log.count("Renewing certificate") === 1, CERT_WAIT_MS, "renewal");
        await waitFor(() => log.count("Certificate ready") === 2, CERT_WAIT_MS, "the renewed one");
        const after = await servedCertificate(port, `keep.${DOMAIN}`, root);
        assert.ok("serial" in after);
        assert.notEqual(after.serial, before.serial);
        assert.match(await ask(), /^HTTP\/1\.1 200 /, "the old connection still works");
      } finally {
        conn.close();
      }
    }),
});

Deno.test({
  name: "CA down at start: tunnels work on http, https appears once the CA is back",
  ...PEBBLE,
  fn: () =>
    withTempDir(async (certDir) => {
      await using pebble = await startPebble();
      await using app = startApp();
      pebble.down = true;
      const { server, log } = await acmeServer(pebble, certDir, { dnsHook: pebble.dnsHook });
      await using _server = server;
      await using tunnel = await watchedTunnel(server, app.addr.port, "down");
      assert.equal(tunnel.url, `http://down.${DOMAIN}:${server.addr.port}`);
      using client = Deno.createHttpClient({ allowHost: true });
      const res = await fetch(`http://${HOST}:${server.addr.port}/whoami`, {
        client,
        headers: { host: `down.${DOMAIN}` },
      });
      assert.equal((await res.json()).name, "app");
      // Tried again and again (the repeated warning itself is throttled in the log).
      await waitFor(() => log.count("Ordering certificate") >= 3, CERT_WAIT_MS, "retries");
      const failure = log.lines.find((l) => l.message === "Certificate order failed")!;
      assert.match(String(failure.fields?.error), /Cannot reach the ACME server/);
      const back = Date.now();
      pebble.down = false;
      await waitFor(() => tunnel.urls.some((u) => u.startsWith("https:")), CERT_WAIT_MS, "https");
      assert.ok(Date.now() - back < TIMINGS.retryMaxMs + 5_000);
      const root = await pebble.root();
      assert.equal((await httpsWhoami(server.tlsAddr!.port, `down.${DOMAIN}`, root)).name, "app");
    }),
});

Deno.test({
  name: "a CA that answers 429: the next order waits for its Retry-After",
  ...PEBBLE,
  fn: () =>
    withTempDir(async (certDir) => {
      await using pebble = await startPebble();
      pebble.rateLimit(1, 2);
      const { server, log } = await acmeServer(pebble, certDir, { dnsHook: pebble.dnsHook });
      await using _server = server;
      await waitFor(() => server.url.startsWith("https:"), CERT_WAIT_MS, "the certificate");
      assert.deepEqual(pebble.orders.map((o) => o.status), [429, 201]);
      const waited = pebble.orders[1]!.at - pebble.orders[0]!.at;
      assert.ok(waited >= 2_000, `waited ${waited} ms, not the 2 s Retry-After`);
      const failure = log.lines.find((l) => l.message === "Certificate order failed")!;
      assert.equal(failure.fields?.retry_in_ms, 2_000);
      assert.equal(
        (failure.fields?.problem as { type: string }).type,
        "urn:ietf:params:acme:error:rateLimited",
      );
    }),
});

Deno.test({
  name: "server.ts with --acme-dns-hook and client.ts give a working https:// URL in one go",
  ...PEBBLE,
  fn: () =>
    withTempDir(async (certDir) => {
      await using pebble = await startPebble();
      await using app = startApp();
      const server = spawnCli("server.ts", [
        ...["--port", "0", "--hostname", HOST, "--tls-port", "0", "--domain", DOMAIN],
        ...["--acme-email", "ops@example.com", "--acme-agree-tos"],
        ...["--acme-directory", pebble.directoryUrl, "--acme-ca", PEBBLE_CA_FILE],
        ...["--acme-dns-hook", pebble.dnsHook, "--cert-dir", certDir],
      ]);
      try {
        const port = new URL(await server.firstLine()).port;
        const client = spawnCli("client.ts", [
          `${HOST}:${app.addr.port}`,
          ...["--server", `http://${HOST}:${port}`, "--subdomain", "one"],
        ]);
        try {
          const https = /^https:\/\/one\.tunnel\.test:(\d+)$/m;
          await waitFor(() => https.test(client.output().stdout), CERT_WAIT_MS, "the https URL");
          const tlsPort = Number(https.exec(client.output().stdout)![1]);
          const root = await pebble.root();
          assert.equal((await httpsWhoami(tlsPort, `one.${DOMAIN}`, root)).xfp, "https");
        } finally {
          await client.stop();
        }
      } finally {
        const { stderr } = await server.stop();
        assert.match(stderr, /Certificate ready/);
      }
    }),
});

Deno.test({
  name: "a server without ACME loads no npm package (acme-client is imported only when ACME is on)",
  ...T,
  async fn() {
    const denoDir = await Deno.makeTempDir({ prefix: "gotunnel-deno-dir-" });
    try {
      const server = spawnCli("server.ts", ["--port", "0", "--hostname", HOST], {
        DENO_DIR: denoDir,
      });
      await server.firstLine();
      const { stderr } = await server.stop();
      assert.doesNotMatch(stderr, /Download/);
      const packages = `${denoDir}/npm/registry.npmjs.org`;
      assert.deepEqual([...Deno.readDirSync(denoDir)].length > 0, true);
      assert.throws(() => Deno.statSync(`${packages}/acme-client`), Deno.errors.NotFound);
    } finally {
      await Deno.remove(denoDir, { recursive: true });
    }
  },
});
