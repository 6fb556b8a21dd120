// Reconnect leases: a tunnel's own client, and only it, gets its name back after a failure.

import assert from "node:assert/strict";
import { TunnelError } from "../lib/errors.ts";
import {
  helloFrames,
  type Hop,
  HOST,
  logRecorder,
  openTestTunnel,
  rawClient,
  rawRequest,
  spawnCli,
  startApp,
  startTestServer,
  T,
  tcpHop,
  waitFor,
} from "./helpers.ts";
import { LeaseStore } from "../lib/client/lease_store.ts";

const get = (port: number, host: string) =>
  rawRequest(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
const reserved = (e: unknown): boolean =>
  e instanceof TunnelError && e.code === "subdomain-reserved" && (e.retryAfterMs ?? 0) > 0 &&
  /reserved for its previous client for another \d+ s/.test(e.message);

/**
 * Resolves once the client has answered its welcome through `hop` (its first
 * connection, the control one): only a client heard from after the welcome has
 * its name held for it.
 */
const welcomeAnswered = (hop: Hop): Promise<void> =>
  waitFor(
    () => hop.turns(0).join(" ").startsWith("client server client"),
    5_000,
    "the client to answer its welcome",
  );

Deno.test({
  name:
    "a cut-off client reclaims its name with its lease; meanwhile others are refused and visitors get 502",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer();
    await using hop = tcpHop(server.addr.port);
    let ready = 0;
    await using tunnel = await openTestTunnel(server, app.addr.port, {
      server: `http://${HOST}:${hop.port}`,
      subdomain: "keep",
      onReady: () => void ready++,
    });
    await welcomeAnswered(hop);
    hop.cut(); // no bye: the server holds the name for the lease time
    await waitFor(() => server.tunnelCount === 0, 5_000, "the server to see the cut");
    assert.match(
      await get(server.addr.port, "keep.localhost"),
      /^HTTP\/1\.1 502 [^]*reconnecting/,
    );
    await assert.rejects(openTestTunnel(server, 9, { subdomain: "keep" }), reserved);
    await waitFor(() => ready === 2, 10_000, "the client to come back");
    assert.equal(tunnel.subdomain, "keep");
    assert.match(
      await get(server.addr.port, "keep.localhost"),
      /^HTTP\/1\.1 200 [^]*hello from app/,
    );
  },
});

Deno.test({
  name: "after the lease runs out the name is free: 404, then anyone may claim it",
  ...T,
  async fn() {
    await using server = await startTestServer({ leaseMs: 400 });
    await using hop = tcpHop(server.addr.port);
    const gone = await openTestTunnel(server, 9, {
      server: `http://${HOST}:${hop.port}`,
      subdomain: "brief",
    });
    await welcomeAnswered(hop);
    hop.refuse(); // it cannot come back
    hop.cut();
    await waitFor(() => server.tunnelCount === 0, 5_000, "the server to see the cut");
    assert.match(await get(server.addr.port, "brief.localhost"), /^HTTP\/1\.1 502 /);
    await assert.rejects(openTestTunnel(server, 9, { subdomain: "brief" }), reserved);
    await waitFor(
      async () => /^HTTP\/1\.1 404 /.test(await get(server.addr.port, "brief.localhost")),
      5_000,
      "the lease to run out and the name to be unknown",
    );
    const other = await openTestTunnel(server, 9, { subdomain: "brief" });
    await other.close();
    await gone.close();
  },
});

Deno.test({
  name: "bye frees the name at once; a second live client with the same lease is refused, " +
    "and takes over with replace (the first stops)",
  ...T,
  async fn() {
    await using server = await startTestServer();
    const first = await openTestTunnel(server, 9, { subdomain: "free" });
    await first.close();
    const second = await openTestTunnel(server, 9, { subdomain: "free" }); // no wait, no lease
    await second.close();
    const file = await Deno.makeTempFile();
    try {
      const a = await openTestTunnel(server, 9, { subdomain: "mine", leaseFile: file });
      await waitFor(() => Deno.readTextFileSync(file).includes("mine"), 5_000, "the lease file");
      await assert.rejects(
        openTestTunnel(server, 9, { subdomain: "mine", leaseFile: file }),
        (e) =>
          e instanceof TunnelError && e.code === "subdomain-taken" && /--replace/.test(e.message),
      );
      const b = await openTestTunnel(server, 9, {
        subdomain: "mine",
        leaseFile: file,
        replace: true,
      });
      await assert.rejects(a.finished, (e) => e instanceof TunnelError && e.code === "replaced");
      assert.equal(server.tunnelCount, 1);
      await b.close();
      assert.doesNotMatch(await Deno.readTextFile(file), /mine/); // bye forgot the lease
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name: "200 clients reclaim their names after a restart of a server with a stable lease key",
  ...T,
  async fn() {
    const leaseKey = crypto.getRandomValues(new Uint8Array(32));
    const limits = { maxTunnelsPerIp: 0, maxSessionsPerIpPerMinute: 0, maxSniffingPerIp: 0 };
    let server = await startTestServer({ leaseKey, leaseGrace: false, limits }); // a first start
    const port = server.addr.port;
    const ready = new Map<string, number>();
    const tunnels = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        openTestTunnel(server, 9, {
          subdomain: `c${i}`,
          pool: 1,
          onReady: () => void ready.set(`c${i}`, (ready.get(`c${i}`) ?? 0) + 1),
        })),
    );
    try {
      await server.close();
      server = await startTestServer({ port, leaseKey, limits });
      // During the grace period nobody without a lease may take a name.
      await assert.rejects(openTestTunnel(server, 9, { subdomain: "c7" }), reserved);
      await waitFor(() => server.tunnelCount === 200, 20_000, "all 200 to come back");
      assert.ok([...ready.values()].every((n) => n === 2));
      assert.deepEqual(tunnels.map((t) => t.subdomain), tunnels.map((_, i) => `c${i}`));
    } finally {
      await Promise.all(tunnels.map((t) => t.close()));
      await server.close();
    }
  },
});

Deno.test({
  name:
    "client.ts killed with SIGKILL reclaims at once from its lease file; another waits with --wait",
  ...T,
  async fn() {
    await using server = await startTestServer({ leaseMs: 1500 });
    const args = ["9", "--server", `http://${HOST}:${server.addr.port}`, "--subdomain", "cli"];
    const first = spawnCli("client.ts", args);
    assert.equal(await first.firstLine(), `http://cli.localhost:${server.addr.port}`);
    await first.stop("SIGKILL");
    await waitFor(() => server.tunnelCount === 0, 5_000, "the server to see the kill");
    // Same cache folder: the lease is there, the name comes back at once.
    const again = spawnCli("client.ts", args);
    assert.equal(await again.firstLine(), `http://cli.localhost:${server.addr.port}`);
    await again.stop("SIGKILL");
    await waitFor(() => server.tunnelCount === 0, 5_000, "the server to see the kill");
    // Another user: refused with the time left, or with --wait, served once it is free.
    const elsewhere = await Deno.makeTempDir();
    try {
      const refused = await spawnCli("client.ts", args, { XDG_CACHE_HOME: elsewhere }).exited;
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /reserved for its previous client for another \d s/);
      const waiter = spawnCli("client.ts", [...args, "--wait"], { XDG_CACHE_HOME: elsewhere });
      assert.equal(await waiter.firstLine(), `http://cli.localhost:${server.addr.port}`);
      assert.equal((await waiter.stop("SIGINT")).code, 0);
    } finally {
      await Deno.remove(elsewhere, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "server.ts --lease-key-file creates the key once, and after a restart the client gets its name back",
  ...T,
  async fn() {
    const dir = await Deno.makeTempDir();
    const keyFile = `${dir}/lease.key`;
    try {
      const serverArgs = ["--port", "0", "--hostname", HOST, "--lease-key-file", keyFile];
      const first = spawnCli("server.ts", serverArgs);
      const port = new URL(await first.firstLine()).port;
      const key = await Deno.readFile(keyFile);
      assert.equal(key.length, 32);
      assert.equal((await Deno.stat(keyFile)).mode! & 0o777, 0o600);
      let ready = 0;
      const tunnel = await openTestTunnel({ addr: { port: Number(port) } }, 9, {
        subdomain: "stable",
        onReady: () => void ready++,
      });
      try {
        assert.equal((await first.stop("SIGKILL")).code, 137); // a crash, not a drain
        const second = spawnCli("server.ts", ["--port", port, ...serverArgs.slice(2)]);
        await second.firstLine();
        assert.deepEqual(await Deno.readFile(keyFile), key); // the same key, not a new one
        await waitFor(() => ready === 2, 10_000, "the client to reclaim its name");
        assert.equal(tunnel.subdomain, "stable");
        await tunnel.close();
        assert.equal((await second.stop("SIGTERM")).code, 0);
      } finally {
        await tunnel.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "after a restart, random names are handed out at once while named ones wait for leases",
  ...T,
  async fn() {
    await using server = await startTestServer({ leaseKey: new Uint8Array(32).fill(7) });
    const started = Date.now();
    const random = await openTestTunnel(server, 9);
    assert.ok(Date.now() - started < 1_000);
    await random.close();
    await assert.rejects(openTestTunnel(server, 9, { subdomain: "named" }), reserved);
  },
});

Deno.test({
  name: "a hello whose client never answers the welcome does not hold the name",
  ...T,
  async fn() {
    await using server = await startTestServer();
    const { conn } = await rawClient(
      server.addr.port,
      helloFrames({ subdomain: "ghost" }),
    );
    await waitFor(() => server.tunnelCount === 1, 5_000, "registration");
    conn.close(); // gone before saying anything after the welcome
    await waitFor(() => server.tunnelCount === 0, 5_000, "the session to end");
    const real = await openTestTunnel(server, 9, { subdomain: "ghost" });
    await real.close();
  },
});

Deno.test("LeaseStore.set() from many writers at once loses no lease", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/leases.json`;
    const stores = Array.from({ length: 10 }, () => new LeaseStore(file));
    const lease = (i: number): string => `v1.n${i}.nonce${i}.1764560000000.c2lnbmF0dXJl`;
    await Promise.all(stores.map((s, i) => s.set("http://x", `n${i}`, lease(i))));
    const store = new LeaseStore(file);
    for (let i = 0; i < 10; i++) assert.equal(await store.get("http://x", `n${i}`), lease(i));
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["leases.json", "leases.json.lock"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "closing a client while it is cut off keeps its lease (no bye reached the server)",
  ...T,
  async fn() {
    await using server = await startTestServer();
    await using hop = tcpHop(server.addr.port);
    const file = await Deno.makeTempFile();
    try {
      const log = logRecorder();
      const tunnel = await openTestTunnel(server, 9, {
        server: `http://${HOST}:${hop.port}`,
        subdomain: "kept",
        leaseFile: file,
        logger: log,
      });
      await welcomeAnswered(hop);
      hop.refuse();
      hop.cut();
      await waitFor(() => server.tunnelCount === 0, 5_000, "the server to see the cut");
      // Closed before it noticed, it would send a bye (lost on the way) and forget its lease.
      await waitFor(
        () => log.count("Lost connection to server") === 1,
        5_000,
        "the client to notice",
      );
      await tunnel.close();
      assert.match(await Deno.readTextFile(file), /kept/);
    } finally {
      await Deno.remove(file);
    }
  },
});
