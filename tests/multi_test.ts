// Several tunnels over one control connection: 20 from one config file (HTTP and
// TCP mixed) with no crossover, one whose name is taken while the rest come up,
// a config file that names a subset, and mistakes that exit 2 with line and column.

import assert from "node:assert/strict";
import {
  decode,
  encode,
  HOST,
  openTestTunnel,
  rawApp,
  rawRequest,
  readAll,
  serveApp,
  spawnCli,
  startApp,
  startTestServer,
  T,
  waitFor,
  writeAllTo,
} from "./helpers.ts";
import { dialPort, freePortRange } from "./tcp_helpers.ts";
import { afterRefusal } from "../lib/client/reconnect.ts";
import { openTunnels } from "../lib/client/tunnel.ts";
import { frameBatches } from "../lib/protocol.ts";

/** A TCP app that says its name, then echoes. */
function namedEcho(name: string) {
  return rawApp(async (conn) => {
    await writeAllTo(conn, encode(`${name}:`));
    const buffer = new Uint8Array(4096);
    for (let n; (n = await conn.read(buffer)) !== null;) {
      await writeAllTo(conn, buffer.subarray(0, n));
    }
    await conn.closeWrite();
  });
}

/** Writes `text` to a fresh temporary file; its path. */
async function tempFile(text: string): Promise<string> {
  const file = await Deno.makeTempFile({ suffix: ".yaml" });
  await Deno.writeTextFile(file, text);
  return file;
}

Deno.test({
  name:
    "20 tunnels (14 HTTP, 6 TCP) from one config file share one control connection, no crossover",
  timeout: 60_000,
  async fn() {
    const [from, to] = freePortRange(10);
    await using server = await startTestServer({
      tcpPorts: [[from, to]],
      limits: { maxTunnelsPerIp: 0 },
    });
    const http = Array.from(
      { length: 14 },
      (_, i) =>
        serveApp((req) => new Response(`app${i} saw ${req.headers.get("x-forwarded-host")}`)),
    );
    const tcp = Array.from({ length: 6 }, (_, i) => namedEcho(`tcp${i}`));
    // A name another client holds already: that tunnel fails, the others come up.
    await using _squatter = await openTestTunnel(server, 9, { subdomain: "web3" });
    const lines = ["tunnels:"];
    http.forEach((app, i) =>
      lines.push(`  web${i}:`, `    port: ${app.addr.port}`, `    subdomain: web${i}`)
    );
    tcp.forEach((app, i) => lines.push(`  tcp${i}:`, `    port: ${app.port}`, "    tcp: true"));
    const file = await tempFile(lines.join("\n") + "\n");
    const client = spawnCli("client.ts", [
      ...["--config", file, "--server", `http://${HOST}:${server.addr.port}`, "--pool", "4"],
    ]);
    try {
      await waitFor(() => client.output().stdout.split("\n").length > 19, 15_000, "19 URL lines");
      const urls = client.output().stdout.trim().split("\n");
      // One line per tunnel that came up, in the file's order.
      const expected = [
        ...http.map((_, i) => `web${i}`).filter((n) => n !== "web3").map((n) =>
          `http://${n}.localhost:${server.addr.port}`
        ),
      ];
      assert.deepEqual(urls.slice(0, 13), expected);
      assert.equal(urls.slice(13).filter((u) => u.startsWith("tcp://localhost:")).length, 6);
      assert.match(
        client.output().stderr,
        /gotunnel-client: web3: Cannot register subdomain "web3": already in use/,
      );
      // One control connection: every tunnel of the client has the same peer.
      const mine = server.tunnels().filter((t) => t.subdomain !== "web3");
      assert.equal(mine.length, 19);
      assert.equal(new Set(mine.map((t) => t.peer)).size, 1);
      // No crossover: each name reaches its own app, each port its own.
      for (const [i] of http.entries()) {
        if (i === 3) continue;
        const host = `web${i}.localhost:${server.addr.port}`;
        const answer = await rawRequest(
          server.addr.port,
          `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
        );
        assert.match(answer, new RegExp(`\\r\\n\\r\\napp${i} saw ${host.replace(".", "\\.")}$`));
      }
      const ports = urls.slice(13).map((u) => Number(u.split(":").at(-1)));
      for (const [i, port] of ports.entries()) {
        using conn = await dialPort(port);
        await writeAllTo(conn, encode("ping"));
        await conn.closeWrite();
        assert.equal(decode(await readAll(conn)), `tcp${i}:ping`);
      }
      assert.match(client.output().stderr, /Forwarding tcp:\/\/localhost:\d+ → localhost:\d+/);
    } finally {
      const { code } = await client.stop();
      assert.equal(code, 0);
      await Deno.remove(file);
      for (const app of http) await app.shutdown();
      for (const app of tcp) await app[Symbol.asyncDispose]();
    }
  },
});

Deno.test({
  name: "client.ts --config FILE NAME starts that tunnel only; it exits 1 when none could open",
  ...T,
  async fn() {
    await using server = await startTestServer();
    await using _squatter = await openTestTunnel(server, 9, { subdomain: "taken" });
    const file = await tempFile(
      `server: http://${HOST}:${server.addr.port}\ntunnels:\n` +
        "  a: {port: 9, subdomain: alpha}\n  b: {port: 9, subdomain: beta}\n" +
        "  c: {port: 9, subdomain: taken}\n",
    );
    try {
      const one = spawnCli("client.ts", ["--config", file, "b"]);
      assert.equal(await one.firstLine(), `http://beta.localhost:${server.addr.port}`);
      await waitFor(() => server.tunnelCount === 2, 5_000, "one more tunnel");
      assert.equal((await one.stop()).code, 0);
      const none = await spawnCli("client.ts", ["--config", file, "c"]).exited;
      assert.equal(none.code, 1);
      assert.match(
        none.stderr,
        /gotunnel-client: Cannot register subdomain "taken": already in use/,
      );
      // Two tunnels of one client asking for the same name: the second is refused.
      await using server2 = await startTestServer();
      const twice = await openTunnels({
        server: `http://${HOST}:${server2.addr.port}`,
        leaseFile: false,
        tunnels: [{ name: "x", port: 9, subdomain: "same" }, {
          name: "y",
          port: 9,
          subdomain: "same",
        }],
      });
      assert.equal(twice.tunnels[0]!.url, `http://same.localhost:${server2.addr.port}`);
      assert.match(twice.tunnels[1]!.error!.message, /another tunnel of yours has it/);
      await twice.close();
      const unknown = await spawnCli("client.ts", ["--config", file, "zeta"]).exited;
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /No tunnel "zeta" in .* \(it has a, b, c\)/);
      const flag = await spawnCli("client.ts", ["--config", file, "--subdomain", "x"]).exited;
      assert.equal(flag.code, 2);
      assert.match(
        flag.stderr,
        /--subdomain describes one tunnel: with --config, say it in the file/,
      );
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name: "client.ts --config with a mistake exits 2 naming the file, line and column",
  ...T,
  async fn() {
    const file = await tempFile("tunnels:\n  web:\n    port: 3000\n    subdomian: web\n");
    try {
      const { code, stderr } = await spawnCli("client.ts", ["--config", file]).exited;
      assert.equal(code, 2);
      assert.match(
        stderr,
        new RegExp(`gotunnel-client: ${file}:4:5: web: unknown key "subdomian"`),
      );
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name: "client.ts downloads nothing with an empty DENO_DIR; --config fetches only npm:yaml",
  timeout: 60_000,
  async fn() {
    await using server = await startTestServer();
    const denoDir = await Deno.makeTempDir({ prefix: "gotunnel-deno-dir-" });
    const file = await tempFile("tunnels:\n  web: {port: 9, subdomain: fresh}\n");
    try {
      const where = ["--server", `http://${HOST}:${server.addr.port}`];
      const plain = spawnCli("client.ts", ["9", ...where], { DENO_DIR: denoDir });
      assert.match(await plain.firstLine(), /^http:\/\/[a-z0-9]+\.localhost:\d+$/);
      const { stderr } = await plain.stop();
      assert.doesNotMatch(stderr, /Download/);
      const yaml = `${denoDir}/npm/registry.npmjs.org/yaml`;
      assert.throws(() => Deno.statSync(yaml), Deno.errors.NotFound);
      // The config file's reader is loaded on demand, by a name the module graph does not hold.
      const configured = spawnCli("client.ts", ["--config", file, ...where], { DENO_DIR: denoDir });
      assert.equal(await configured.firstLine(), `http://fresh.localhost:${server.addr.port}`);
      const downloads = [...(await configured.stop()).stderr.matchAll(/Download (\S+)/g)];
      assert.ok(downloads.length > 0);
      assert.ok(
        downloads.every(([, url]) => /registry\.npmjs\.org\/yaml\b/.test(url!)),
        `${downloads}`,
      );
      assert.ok(Deno.statSync(yaml).isDirectory);
    } finally {
      await Deno.remove(denoDir, { recursive: true });
      await Deno.remove(file);
    }
  },
});

Deno.test("afterRefusal(): held names are waited out, taken ones retried after a reconnect for a while", () => {
  const start = { first: true, wait: false, takenSince: undefined, attempts: 0 };
  const again = { ...start, first: false };
  const reserved = { code: "port-reserved", retryAfterMs: 3_000 };
  assert.equal(afterRefusal(reserved, start), undefined, "at start, without --wait: an error");
  assert.equal(afterRefusal(reserved, { ...start, wait: true }), 3_250);
  assert.equal(afterRefusal(reserved, again), 3_250);
  assert.equal(afterRefusal({ code: "subdomain-taken" }, start), undefined);
  const now = 1_000_000;
  const taken = afterRefusal({ code: "port-taken" }, { ...again, takenSince: now - 1_000 }, now);
  assert.ok(taken !== undefined && taken >= 500 && taken <= 1_000);
  assert.equal(
    afterRefusal({ code: "port-taken" }, { ...again, takenSince: now - 120_000 }, now),
    undefined,
    "someone else holds it by now",
  );
  for (const code of ["invalid-port", "unauthorized", "replaced", "invalid-host"]) {
    assert.equal(afterRefusal({ code }, again), undefined, code);
  }
  assert.ok(afterRefusal({ code: "limit" }, again)! > 0, "a limit may pass");
});

Deno.test({
  name:
    "one inspector shows the exchanges of every HTTP tunnel by name, and replays to the right app",
  ...T,
  async fn() {
    const one = startApp("one");
    const two = startApp("two");
    await using server = await startTestServer();
    const group = await openTunnels({
      server: `http://${HOST}:${server.addr.port}`,
      leaseFile: false,
      inspect: { hostname: HOST, port: 0 },
      tunnels: [
        { name: "one", port: one.addr.port, localHost: HOST, subdomain: "one" },
        { name: "two", port: two.addr.port, localHost: HOST, subdomain: "two" },
      ],
    });
    try {
      const api = (path: string, init?: RequestInit) =>
        fetch(`${group.inspector!.url}${path}`, init);
      for (const name of ["one", "two"]) {
        const host = `${name}.localhost:${server.addr.port}`;
        assert.match(
          await rawRequest(
            server.addr.port,
            `GET /whoami HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
          ),
          new RegExp(`"name":"${name}"`),
        );
      }
      type Summary = {
        id: number;
        tunnel: string | null;
        status: number | null;
        replayOf: number | null;
      };
      const list = async (): Promise<Summary[]> =>
        (await (await api("/api/requests")).json()).requests;
      await waitFor(async () => (await list()).filter((r) => r.status === 200).length === 2);
      const second = (await list()).find((r) => r.tunnel === "two")!;
      assert.ok(second, "the exchange of tunnel two, by name");
      assert.equal((await list()).find((r) => r.tunnel === "one")?.status, 200);
      const replay = await api(`/api/requests/${second.id}/replay`, { method: "POST" });
      assert.equal(replay.status, 201);
      const { id } = await replay.json();
      const body = await (await api(`/api/requests/${id}/response/body`)).text();
      assert.match(body, /"name":"two"/, "replayed to tunnel two's app");
      const status = await (await api("/api/status")).json();
      assert.deepEqual(status.tunnels.map((t: { name: string }) => t.name), ["one", "two"]);
    } finally {
      await group.close();
      await one.shutdown();
      await two.shutdown();
    }
  },
});

Deno.test({
  name: "50 tunnels with long names: claims and grants span several frames, every tunnel comes up",
  ...T,
  async fn() {
    await using server = await startTestServer({ limits: { maxTunnelsPerIp: 0 } });
    const name = (i: number) => `${"n".repeat(60)}${String(i).padStart(2, "0")}`;
    const group = await openTunnels({
      server: `http://${HOST}:${server.addr.port}`,
      leaseFile: false,
      pool: 1,
      tunnels: Array.from(
        { length: 50 },
        (_, i) => ({ name: `t${i}`, port: 9, subdomain: name(i) }),
      ),
    });
    try {
      assert.deepEqual(
        group.tunnels.map((t) => t.url),
        Array.from({ length: 50 }, (_, i) => `http://${name(i)}.localhost:${server.addr.port}`),
      );
      assert.equal(server.tunnelCount, 50);
    } finally {
      await group.close();
    }
    assert.throws(() => frameBatches(["x".repeat(20_000)]), RangeError);
    assert.deepEqual(frameBatches([1, 2, 3], 69), [[1, 2], [3]]); // 64 + 2 bytes each
  },
});

Deno.test({
  name: "a token that no longer covers one tunnel of a client closes that one; the others stay",
  ...T,
  async fn() {
    const app = startApp("kept");
    const token = "token-for-a-and-b-0123";
    await using server = await startTestServer({ tokens: new Map([[token, ["a", "b"]]]) });
    const failed: string[] = [];
    const group = await openTunnels({
      server: `http://${HOST}:${server.addr.port}`,
      token,
      leaseFile: false,
      tunnels: [
        { name: "a", port: app.addr.port, localHost: HOST, subdomain: "a" },
        { name: "b", port: app.addr.port, localHost: HOST, subdomain: "b" },
      ],
      onFailed: (error, tunnel) => failed.push(`${tunnel.name}: ${error.code}`),
    });
    try {
      assert.equal(await server.reloadAuth(new Map([[token, ["a"]]])), 1);
      await waitFor(() => failed.length === 1, 5_000, "tunnel b to be told");
      assert.deepEqual(failed, ["b: unauthorized"]);
      const get = (name: string) =>
        rawRequest(
          server.addr.port,
          `GET / HTTP/1.1\r\nHost: ${name}.localhost\r\nConnection: close\r\n\r\n`,
        );
      assert.match(await get("a"), /^HTTP\/1\.1 200 [^]*hello from kept/);
      assert.match(await get("b"), /^HTTP\/1\.1 404 /);
      assert.deepEqual(server.tunnels().map((t) => t.subdomain), ["a"]);
    } finally {
      await group.close();
      await app.shutdown();
    }
  },
});
