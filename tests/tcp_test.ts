// TCP tunnels: bytes both ways by SHA-256 with half-close, many visitors at once,
// ports refused (taken, outside the range, not in the token's scope), the per-IP
// limit, leases that hold a port, and listeners closed when their tunnel ends.

import assert from "node:assert/strict";
import { TunnelError } from "../lib/errors.ts";
import { openTunnels } from "../lib/client/tunnel.ts";
import type { TokenScope } from "../lib/server/auth.ts";
import { closeQuietly } from "../lib/io.ts";
import {
  decode,
  encode,
  HOST,
  openTestTunnel,
  readAll,
  spawnCli,
  startApp,
  startTestServer,
  T,
  waitFor,
  writeAllTo,
} from "./helpers.ts";
import { dialPort, echoApp, echoBulk, fdsOf, freePortRange, refused } from "./tcp_helpers.ts";

const MIB = 1024 * 1024;
/** Bytes each way of the bulk test (1 GiB: about 3 s here); GOTUNNEL_TCP_BULK_MIB changes it. */
const BULK_MIB = Number(Deno.env.get("GOTUNNEL_TCP_BULK_MIB") ?? 1024);

Deno.test({
  name: `a TCP tunnel relays ${BULK_MIB} MiB each way to an echo app, by SHA-256, half-close kept`,
  timeout: Math.max(30_000, BULK_MIB * 300),
  async fn() {
    await using app = echoApp();
    await using server = await startTestServer({ tcpPorts: [freePortRange(4)] });
    await using tunnel = await openTestTunnel(server, app.port, { tcp: true });
    assert.match(tunnel.url, /^tcp:\/\/localhost:\d+$/);
    assert.equal(tunnel.url, `tcp://localhost:${tunnel.remotePort}`);
    const conn = await dialPort(tunnel.remotePort!);
    const started = performance.now();
    try {
      const { sent, received, receivedBytes } = await echoBulk(conn, BULK_MIB * MIB);
      assert.equal(receivedBytes, BULK_MIB * MIB);
      assert.equal(received, sent);
    } finally {
      conn.close();
    }
    const seconds = (performance.now() - started) / 1000;
    // deno-lint-ignore no-console -- the figure the README quotes
    console.log(`${BULK_MIB} MiB each way in ${seconds.toFixed(1)} s`);
  },
});

Deno.test({
  name: "a TCP visitor's half-close reaches the app, and the app's answer still comes back",
  ...T,
  async fn() {
    await using app = echoApp();
    await using server = await startTestServer({ tcpPorts: [freePortRange(2)] });
    await using tunnel = await openTestTunnel(server, app.port, { tcp: true });
    using conn = await dialPort(tunnel.remotePort!);
    await writeAllTo(conn, encode("half"));
    await conn.closeWrite(); // the echo app answers only after our end of stream... and then ends
    assert.equal(decode(await readAll(conn)), "half");
  },
});

Deno.test({
  name: "200 TCP visitors at once each get their own bytes back",
  ...T,
  async fn() {
    await using app = echoApp();
    await using server = await startTestServer({ tcpPorts: [freePortRange(2)] });
    await using tunnel = await openTestTunnel(server, app.port, { tcp: true, pool: 32 });
    const one = async (i: number): Promise<void> => {
      using conn = await dialPort(tunnel.remotePort!);
      const mine = encode(`visitor ${i} `.repeat(100 + i));
      const [, back] = await Promise.all([
        writeAllTo(conn, mine).then(() => conn.closeWrite()),
        readAll(conn),
      ]);
      assert.equal(decode(back), decode(mine), `visitor ${i}`);
    };
    await Promise.all(Array.from({ length: 200 }, (_, i) => one(i)));
    assert.equal(app.accepted, 200, "one app connection per visitor");
  },
});

Deno.test({
  name:
    "TCP ports: a taken one, one outside the range and one the token does not allow are refused",
  ...T,
  async fn() {
    const [from, to] = freePortRange(3);
    await using server = await startTestServer({
      tcpPorts: [[from, to]],
      tokens: new Map<string, TokenScope>([
        ["a-token-with-any-port", "*"],
        ["a-token-for-one-port", [`tcp:${from}`]],
      ]),
    });
    const any = { tcp: true, token: "a-token-with-any-port" } as const;
    await using first = await openTestTunnel(server, 9, { ...any, remotePort: from + 1 });
    assert.equal(first.remotePort, from + 1);
    const refusal = (code: string, pattern: RegExp) => (e: unknown) =>
      e instanceof TunnelError && e.code === code && pattern.test(e.message);
    await assert.rejects(
      openTestTunnel(server, 9, { ...any, remotePort: from + 1 }),
      refusal("port-taken", /already in use/),
    );
    await assert.rejects(
      openTestTunnel(server, 9, { ...any, remotePort: to + 1 }),
      refusal("invalid-port", new RegExp(`outside this server's ports \\(${from}-${to}\\)`)),
    );
    const scoped = { tcp: true, token: "a-token-for-one-port" } as const;
    await assert.rejects(
      openTestTunnel(server, 9, { ...scoped, remotePort: from + 2 }),
      refusal("unauthorized", new RegExp(`may not open TCP port ${from + 2}: only ${from}`)),
    );
    await using mine = await openTestTunnel(server, 9, scoped); // a free one of its own
    assert.equal(mine.remotePort, from);
    // A port the server's host uses is taken too (this one is bound by the test).
    const squatter = Deno.listen({ hostname: HOST, port: to });
    try {
      await assert.rejects(
        openTestTunnel(server, 9, { ...any, remotePort: to }),
        refusal("port-taken", /in use on the server's host/),
      );
    } finally {
      squatter.close();
    }
    // A client that says bye frees its port at once: the listener is closed.
    await first.close();
    await waitFor(() => refused(from + 1), 5_000, "the port to be free after bye");
    // A server without --tcp-ports has none.
    await using plain = await startTestServer();
    await assert.rejects(
      openTestTunnel(plain, 9, { tcp: true }),
      refusal("invalid-port", /no TCP ports/),
    );
  },
});

Deno.test({
  name: "TCP visitors over the tunnel's stream limit are closed at once",
  ...T,
  async fn() {
    await using app = echoApp();
    await using server = await startTestServer({
      tcpPorts: [freePortRange(2)],
      limits: { maxStreamsPerTunnel: 1 },
    });
    await using tunnel = await openTestTunnel(server, app.port, { tcp: true });
    using held = await dialPort(tunnel.remotePort!);
    await writeAllTo(held, encode("x"));
    assert.equal(await held.read(new Uint8Array(8)), 1);
    using second = await dialPort(tunnel.remotePort!);
    assert.equal((await readAll(second).catch(() => new Uint8Array())).length, 0, "closed");
  },
});

Deno.test({
  name: "TCP visitors over the per-IP limit are closed at once; the tunnel's others go on",
  ...T,
  async fn() {
    await using app = echoApp();
    await using server = await startTestServer({
      tcpPorts: [freePortRange(2)],
      limits: { maxTcpConnectionsPerIp: 3 },
      admin: { hostname: HOST, port: 0 },
    });
    await using tunnel = await openTestTunnel(server, app.port, { tcp: true });
    const held = await Promise.all([1, 2, 3].map(() => dialPort(tunnel.remotePort!)));
    try {
      for (const conn of held) { // each is relayed: its bytes come back
        await writeAllTo(conn, encode("x"));
        assert.equal(await conn.read(new Uint8Array(8)), 1);
      }
      const fourth = await dialPort(tunnel.remotePort!);
      assert.equal((await readAll(fourth).catch(() => new Uint8Array())).length, 0, "closed");
      fourth.close();
      held.pop()!.close();
      // Its slot is free once the server has seen the close.
      await waitFor(
        async () => {
          const again = await dialPort(tunnel.remotePort!);
          try {
            await writeAllTo(again, encode("y"));
            return (await again.read(new Uint8Array(8)).catch(() => null)) === 1;
          } finally {
            again.close();
          }
        },
        5_000,
        "a slot to be free again",
      );
    } finally {
      held.forEach((c) => closeQuietly(c));
    }
  },
});

Deno.test({
  name:
    "a killed client's TCP port is held during its lease, reclaimed after a restart, freed after",
  timeout: 60_000,
  async fn() {
    await using app = echoApp();
    const [from, to] = freePortRange(4);
    const server = spawnCli("server.ts", [
      ...["--port", "0", "--hostname", HOST, "--tcp-ports", `${from}-${to}`, "--lease", "5s"],
    ]);
    try {
      const serverPort = new URL(await server.firstLine()).port;
      const baseline = fdsOf(server.pid);
      const args = [`${HOST}:${app.port}`, "--tcp", "--remote-port", String(from + 2)];
      args.push("--server", `http://${HOST}:${serverPort}`);
      const first = spawnCli("client.ts", args);
      assert.equal(await first.firstLine(), `tcp://localhost:${from + 2}`);
      await waitFor(() => /Forwarding/.test(first.output().stderr), 5_000, "the banner");
      assert.ok(fdsOf(server.pid) > baseline, "the port's listener");
      await first.stop("SIGKILL");
      // Held: the port still listens, and closes each visitor at once; another client is refused.
      await waitFor(
        async () => {
          const conn = await dialPort(from + 2);
          await writeAllTo(conn, encode("anyone?")).catch(() => {});
          const got = await readAll(conn).catch(() => new Uint8Array());
          conn.close();
          return got.length === 0;
        },
        5_000,
        "the session to end",
      );
      await assert.rejects(
        openTestTunnel({ addr: { port: Number(serverPort) } }, 9, {
          tcp: true,
          remotePort: from + 2,
        }),
        (e) =>
          e instanceof TunnelError && e.code === "port-reserved" && /another \d s/.test(e.message),
      );
      // The same client, restarted: its lease (in its lease file) gets the port back at once.
      const second = spawnCli("client.ts", args);
      assert.equal(await second.firstLine(), `tcp://localhost:${from + 2}`);
      using conn = await dialPort(from + 2);
      await writeAllTo(conn, encode("back"));
      await conn.closeWrite();
      assert.equal(decode(await readAll(conn)), "back");
      await second.stop("SIGKILL");
      // After the lease the listener is closed, and the server holds what it held before.
      await waitFor(() => refused(from + 2), 10_000, "the port to be free");
      await waitFor(() => fdsOf(server.pid) <= baseline, 5_000, "the descriptors back");
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name: "a restarted server gives a client's HTTP and TCP tunnels back over one new connection",
  ...T,
  async fn() {
    await using app = echoApp();
    const web = startApp("web");
    const ports = freePortRange(20);
    const leaseKey = crypto.getRandomValues(new Uint8Array(32));
    let server = await startTestServer({ tcpPorts: [ports], leaseKey, leaseGrace: false });
    const port = server.addr.port;
    const lines: string[] = [];
    const group = await openTunnels({
      server: `http://${HOST}:${port}`,
      leaseFile: false,
      tunnels: [
        { name: "web", port: web.addr.port, localHost: HOST, subdomain: "web" },
        { name: "echo", port: app.port, localHost: HOST, tcp: true },
      ],
      onReady: (url) => lines.push(url),
    });
    try {
      const tcpUrl = group.tunnels[1]!.url;
      assert.deepEqual(lines, [`http://web.localhost:${port}`, tcpUrl]);
      await server.close();
      // The same key and port, as a restarted server has: each name comes back with its lease.
      server = await startTestServer({ port, tcpPorts: [ports], leaseKey });
      await waitFor(() => lines.length === 4, 10_000, "both tunnels again");
      assert.deepEqual(lines.slice(2), [`http://web.localhost:${port}`, tcpUrl]);
      using conn = await dialPort(group.tunnels[1]!.remotePort!);
      await writeAllTo(conn, encode("again"));
      await conn.closeWrite();
      assert.equal(decode(await readAll(conn)), "again");
      assert.equal(new Set(server.tunnels().map((t) => t.peer)).size, 1);
    } finally {
      await group.close();
      await server.close();
      await web.shutdown();
    }
  },
});
