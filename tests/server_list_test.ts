// Several servers (nodes of one cluster): tried in turn, the next at once after a failed
// connect; the lease presented to whichever node is used; the CLI's ways to list them.

import assert from "node:assert/strict";
import { TunnelError } from "../lib/errors.ts";
import { readClientCommand } from "../lib/client/command.ts";
import { LeaseStore } from "../lib/client/lease_store.ts";
import { ServerList, splitServerList } from "../lib/client/server_list.ts";
import { UsageError } from "../lib/cli.ts";
import { silentLogger } from "../lib/log.ts";
import {
  HOST,
  logRecorder,
  openTestTunnel,
  rawRequest,
  startApp,
  startTestServer,
  T,
  waitFor,
} from "./helpers.ts";

const get = (port: number, host: string) =>
  rawRequest(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
const url = (server: { addr: { port: number } }): string => `http://${HOST}:${server.addr.port}`;
const reserved = (e: unknown): boolean =>
  e instanceof TunnelError && e.code === "subdomain-reserved";

/** A URL where nothing listens: a port that was free a moment ago. */
function deadUrl(): string {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = listener.addr.port;
  listener.close();
  return `http://${HOST}:${port}`;
}

Deno.test({
  name: "a client whose first server is down comes up on the next one in the same round",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer();
    const log = logRecorder();
    const dead = deadUrl();
    // At start there is no backoff at all: a failed round rejects. So coming up at all
    // means the live server was tried right after the dead one.
    await using tunnel = await openTestTunnel(server, app.addr.port, {
      server: [dead, url(server)],
      subdomain: "second",
      logger: log,
    });
    assert.equal(tunnel.url, `http://second.localhost:${server.addr.port}`);
    assert.match(
      await get(server.addr.port, "second.localhost"),
      /^HTTP\/1\.1 200 [^]*hello from app/,
    );
    assert.equal(log.count(`Connected to ${url(server)}`), 1);
    assert.equal(log.count(`Cannot connect to ${dead}, trying ${url(server)}`), 1);
    assert.equal(log.count("Reconnecting"), 0);
  },
});

Deno.test({
  name: "a client whose every server is down says why for each one",
  ...T,
  async fn() {
    const [a, b] = [deadUrl(), deadUrl()];
    await assert.rejects(
      openTestTunnel({ addr: { port: 0 } }, 9, { server: [a, b] }),
      (e) =>
        e instanceof TunnelError && e.code === "connect" &&
        e.message.startsWith("Cannot connect to any of the 2 servers: ") &&
        e.message.includes(`${a}: connection refused`) &&
        e.message.includes(`${b}: connection refused`),
    );
  },
});

Deno.test({
  name: "a client moves to another node of its cluster when its server goes, " +
    "and keeps its subdomain there by its lease",
  ...T,
  async fn() {
    const leaseKey = crypto.getRandomValues(new Uint8Array(32));
    await using app = startApp();
    const one = await startTestServer({ leaseKey, leaseGrace: false });
    // A node that may have just restarted: for now a name needs its lease.
    await using two = await startTestServer({ leaseKey });
    await assert.rejects(openTestTunnel(two, 9, { subdomain: "same" }), reserved);
    const log = logRecorder();
    const urls: string[] = [];
    const servers = [url(one), deadUrl(), url(two)];
    try {
      await using tunnel = await openTestTunnel(one, app.addr.port, {
        server: servers,
        subdomain: "same",
        logger: log,
        onReady: (u) => urls.push(u),
      });
      assert.deepEqual(urls, [`http://same.localhost:${one.addr.port}`]);
      await one.close(); // its sessions are cut and its port closed: the node is gone
      await waitFor(() => urls.length === 2, 15_000, "the tunnel to come up on the second node");
      assert.equal(urls[1], `http://same.localhost:${two.addr.port}`);
      assert.equal(tunnel.subdomain, "same");
      assert.match(
        await get(two.addr.port, "same.localhost"),
        /^HTTP\/1\.1 200 [^]*hello from app/,
      );
      assert.deepEqual(
        log.lines.filter((l) => l.message.startsWith("Connected to ")).map((l) => l.message),
        [`Connected to ${url(one)}`, `Connected to ${url(two)}`],
      );
      // One round: the first node and the dead one were passed over at once.
      assert.equal(log.count("Reconnect failed"), 0);
      const dead = servers[1]!;
      assert.equal(log.count(`Cannot connect to ${url(one)}, trying ${dead}`), 1);
      assert.equal(log.count(`Cannot connect to ${dead}, trying ${url(two)}`), 1);
    } finally {
      await one.close();
    }
  },
});

Deno.test({
  name: "a lease saved while on one node is read from the lease file for another node of the list",
  ...T,
  async fn() {
    const leaseKey = crypto.getRandomValues(new Uint8Array(32));
    const file = await Deno.makeTempFile();
    await using one = await startTestServer({ leaseKey, leaseGrace: false });
    await using two = await startTestServer({ leaseKey }); // a name needs its lease for now
    try {
      await using first = await openTestTunnel(one, 9, { subdomain: "filed", leaseFile: file });
      await waitFor(() => Deno.readTextFileSync(file).includes(url(one)), 5_000, "the lease");
      // A list without the node that issued the lease does not find it...
      await assert.rejects(
        openTestTunnel(two, 9, { subdomain: "filed", leaseFile: file }),
        reserved,
      );
      // ...one with it does, and presents it to the node it reaches first.
      await using second = await openTestTunnel(two, 9, {
        server: [url(two), url(one)],
        subdomain: "filed",
        leaseFile: file,
      });
      assert.equal(second.url, `http://filed.localhost:${two.addr.port}`);
      const saved = Object.keys(JSON.parse(await Deno.readTextFile(file)));
      assert.deepEqual(saved, [`${url(two)} filed`], "one entry per name for the cluster");
      assert.equal(first.subdomain, "filed");
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test("ServerList tries each server in turn and starts the next round with the one that worked", async () => {
  const servers = new ServerList(["http://a:1", "http://b:2", "http://c:3"]);
  const tried: string[] = [];
  const down = new Set(["a"]);
  const attempt = (t: { hostname: string }): Promise<string> => {
    tried.push(t.hostname);
    if (down.has(t.hostname)) {
      return Promise.reject(new TunnelError("connect", `Cannot connect to ${t.hostname}: down`));
    }
    return Promise.resolve(t.hostname);
  };
  assert.equal((await servers.connect(attempt, silentLogger)).value, "b");
  assert.deepEqual(tried.splice(0), ["a", "b"]);
  down.add("b");
  assert.equal((await servers.connect(attempt, silentLogger)).target.url, "http://c:3");
  assert.deepEqual(tried.splice(0), ["b", "c"], "the last one that worked first");
  assert.deepEqual(servers.order().map((t) => t.hostname), ["c", "a", "b"]);
  // A refusal every node gives alike ends the round.
  const refuse = (): Promise<string> =>
    Promise.reject(new TunnelError("unauthorized", "Cannot open tunnel: bad token"));
  await assert.rejects(servers.connect(refuse, silentLogger), /bad token/);
  // So does a bug.
  await assert.rejects(
    servers.connect(() => Promise.reject(new TypeError("oops")), silentLogger),
    TypeError,
  );
  // One server: its own error, as with a single URL.
  const one = new ServerList("http://a:1");
  await assert.rejects(
    one.connect(attempt, silentLogger),
    /^TunnelError: Cannot connect to a: down$/,
  );
});

Deno.test("server lists: commas, repeats dropped, each bad URL named with its place", () => {
  assert.deepEqual(splitServerList(" http://a , https://b:8443"), ["http://a", "https://b:8443"]);
  assert.throws(() => splitServerList("http://a,,http://b"), /Empty item/);
  assert.throws(() => splitServerList("http://a,"), /Empty item/);
  assert.deepEqual(new ServerList(["http://a", "http://a:80/", "http://b"]).urls, [
    "http://a",
    "http://b",
  ]);
  assert.throws(() => new ServerList([]), /server list is empty/);
  assert.throws(
    () => new ServerList(["http://a", "ftp://b"]),
    /^TypeError: Server 2 of 2: Unsupported scheme "ftp:" in server URL "ftp:\/\/b"/,
  );
  assert.throws(() => new ServerList("http://a/path"), /"http:\/\/a\/path" must be only scheme/);
});

Deno.test("LeaseStore: a lease is the cluster's, found under any of its servers, kept once", async () => {
  const file = `${await Deno.makeTempDir()}/leases.json`;
  const store = new LeaseStore(file);
  const lease = (n: number) => `v1.demo.nonce${n}.${1_700_000_000_000 + n}.sig`;
  await store.set("http://a", "demo", lease(1));
  assert.equal(await store.get(["http://b", "http://a"], "demo"), lease(1));
  assert.equal(await store.get("http://b", "demo"), undefined);
  await store.set(["http://b", "http://a"], "demo", lease(2)); // saved for b, forgotten for a
  assert.deepEqual(Object.keys(JSON.parse(await Deno.readTextFile(file))), ["http://b demo"]);
  assert.equal(await store.get(["http://a", "http://b"], "demo"), lease(2));
  await store.set(["http://a", "http://b"], "demo", undefined);
  assert.equal(await store.get(["http://a", "http://b"], "demo"), undefined);
  await Deno.remove(file.slice(0, file.lastIndexOf("/")), { recursive: true });
});

Deno.test("the CLI reads servers from repeated --server, comma lists, $GOTUNNEL_SERVER and the config file", async () => {
  const servers = async (args: string[], env: Record<string, string> = {}) => {
    const command = await readClientCommand(args, (name) => env[name]);
    return command.kind === "tunnels" ? command.options.server : undefined;
  };
  const A = "https://a.example", B = "https://b.example:8443", C = "http://c.example";
  assert.equal(await servers(["3000"]), "http://localhost:8080");
  assert.equal(await servers(["3000", "--server", A]), A, "one server stays a string");
  assert.deepEqual(await servers(["3000", "--server", A, `--server=${B}`]), [A, B]);
  assert.deepEqual(await servers(["3000", "--server", `${A},${B}`, "--server", C]), [A, B, C]);
  assert.deepEqual(await servers(["3000"], { GOTUNNEL_SERVER: `${A}, ${B}` }), [A, B]);
  assert.equal(await servers(["3000", "--server", C], { GOTUNNEL_SERVER: A }), C, "flags win");
  const dir = await Deno.makeTempDir();
  try {
    const config = `${dir}/gotunnel.yaml`;
    await Deno.writeTextFile(
      config,
      `server:\n  - ${A}\n  - ${B}\ntunnels:\n  web: {port: 3000}\n`,
    );
    assert.deepEqual(await servers(["--config", config], { GOTUNNEL_SERVER: C }), [A, B]);
    assert.equal(await servers(["--config", config, "--server", C]), C);
    await Deno.writeTextFile(config, `server: ${A},${B}\ntunnels:\n  web: {port: 3000}\n`);
    assert.deepEqual(await servers(["--config", config]), [A, B]);
    await Deno.writeTextFile(
      config,
      `server:\n  - ${A}\n  - ftp://b\ntunnels:\n  web: {port: 3000}\n`,
    );
    await assert.rejects(
      servers(["--config", config]),
      (e) =>
        e instanceof UsageError &&
        e.message === `${config}:3:5: server[1]: Unsupported scheme "ftp:" in server URL ` +
            `"ftp://b": use http:// or https://`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const bad: [string[], Record<string, string>, RegExp][] = [
    [["--server", A, "--server", "ftp://b"], {}, /^Invalid --server: [^]*"ftp:\/\/b"/],
    [["--server", `${A},http://b/x`], {}, /^Invalid --server: [^]*"http:\/\/b\/x" must be only/],
    [["--server", `${A},`], {}, /^Invalid --server: Empty item in the server list/],
    [[], { GOTUNNEL_SERVER: `${A},nope://c` }, /^Invalid \$GOTUNNEL_SERVER: [^]*"nope:\/\/c"/],
  ];
  for (const [args, env, message] of bad) {
    await assert.rejects(
      servers(["3000", ...args], env),
      (e) => e instanceof UsageError && message.test(e.message),
      args.join(" "),
    );
  }
});
