// The cluster directory against a real redis-server (started per test on a free
// loopback port): races, renewal and expiry, owner-only release, pub/sub cache
// updates, reclaims by lease holder, Redis killed and restarted, deadlines, TLS.

import assert from "node:assert/strict";
import type { ClusterTimings } from "../lib/server/cluster/timings.ts";
import type { Logger } from "../lib/log.ts";
import type { Claim } from "../lib/server/cluster/claim.ts";
import { type Directory, openDirectory } from "../lib/server/cluster/directory.ts";
import type { DirectoryOptions } from "../lib/server/cluster/options.ts";
import { DirectoryError } from "../lib/server/cluster/errors.ts";
import type { DirectoryEntry } from "../lib/server/cluster/records.ts";
import { logRecorder, needs, rawApp, readAll, T, waitFor } from "./helpers.ts";
import { gate, startRedis, type TestRedis } from "./redis.ts";

const REDIS = { ...needs("redis-server", "redis-cli"), ...T };

/** Short waits, so that expiry and reconnects happen within a test. */
const FAST: Partial<ClusterTimings> = {
  connectTimeoutMs: 1_000,
  commandTimeoutMs: 500,
  reconnectMinMs: 20,
  reconnectMaxMs: 200,
  closeTimeoutMs: 200,
  claimTtlMs: 1_200,
  nodeTtlMs: 1_200,
};

/** A node's directory on `redis`, node id `id`. */
function join(
  redis: TestRedis,
  id: string,
  extra: Partial<DirectoryOptions> = {},
): Promise<Directory> {
  return openDirectory({
    redis: redis.url,
    node: id,
    addr: `127.0.0.1:${1000 + id.length}`,
    timings: FAST,
    ...(redis.caCerts ? { caCerts: redis.caCerts } : {}),
    ...extra,
  });
}

/** Closes every directory (after a test, pass or fail). */
async function closeAll(...directories: (Directory | undefined)[]): Promise<void> {
  await Promise.all(directories.map((d) => d?.close()));
}

/** Checks that Redis sees no client left: node:net sockets escape Deno's resource sanitizer. */
async function assertNoClients(redis: TestRedis): Promise<void> {
  assert.deepEqual(await redis.clients(), [], "every connection to Redis is closed");
}

/** The entry stored for `item`, read with redis-cli. */
async function stored(redis: TestRedis, item: string): Promise<Record<string, unknown> | null> {
  const text = await redis.cli("GET", `gotunnel:${item}`);
  return text === "" ? null : JSON.parse(text);
}

/** How many scripts Redis has run (EVAL and EVALSHA). */
async function scriptCalls(redis: TestRedis): Promise<number> {
  const stats = await redis.cli("INFO", "commandstats");
  return [...stats.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)].reduce((s, m) => s + +m[1]!, 0);
}

Deno.test({
  name: "20 claimers on three nodes race for one name: exactly one wins, the others see it",
  ...REDIS,
  async fn() {
    await using redis = await startRedis();
    const nodes = await Promise.all(["a", "b", "c"].map((id) => join(redis, id)));
    try {
      const results = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => nodes[i % 3]!.claim("name", "demo", { session: `s${i}`, holder: `h${i}` }),
        ),
      );
      const winners = results.filter((r) => r.ok);
      assert.equal(winners.length, 1);
      const won = winners[0]!.ok ? winners[0]!.claim : undefined;
      for (const r of results) {
        if (!r.ok) assert.equal(r.entry.session, won!.session);
      }
      assert.equal((await stored(redis, "name:demo"))?.s, won!.session);
      const owner = nodes.find((n) => n.claims().length === 1)!;
      assert.deepEqual(owner.claims(), [won]);
      assert.equal(nodes.filter((n) => n.claims().length > 0).length, 1);
    } finally {
      await closeAll(...nodes);
    }
    await assertNoClients(redis);
  },
});

Deno.test({
  name: "a claim lives while its node renews it, and lapses one TTL after the node stops",
  ...REDIS,
  async fn() {
    await using redis = await startRedis();
    const a = await join(redis, "a");
    const b = await join(redis, "b");
    try {
      const ttl = FAST.claimTtlMs!;
      const result = await a.claim("port", "5432", { session: "s1" });
      assert.equal(result.ok, true);
      // Three TTLs go by; the entry never lapses, since the node renews it.
      const end = performance.now() + 3 * ttl;
      while (performance.now() < end) {
        assert.equal(await redis.cli("EXISTS", "gotunnel:port:5432"), "1");
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal((await b.lookup("port", "5432"))?.session, "s1");
      await a.close(); // stops renewing; the claim is not released
      assert.equal(await redis.cli("EXISTS", "gotunnel:port:5432"), "1");
      const stopped = performance.now();
      await waitFor(
        async () => await redis.cli("EXISTS", "gotunnel:port:5432") === "0",
        ttl + 1_000,
        "the claim to lapse",
      );
      assert.ok(performance.now() - stopped > ttl / 3, "it lapsed by its TTL, not at close");
      await waitFor(async () => await b.lookup("port", "5432") === undefined, ttl + 1_000, "b");
      assert.equal((await b.claim("port", "5432", { session: "s2" })).ok, true);
    } finally {
      await closeAll(a, b);
    }
    await assertNoClients(redis);
  },
});

Deno.test({
  name: "only the owner releases a claim: another session or node is refused",
  ...REDIS,
  async fn() {
    await using redis = await startRedis();
    const a = await join(redis, "a");
    const b = await join(redis, "b");
    try {
      const result = await a.claim("host", "app.example.com", { session: "s1", holder: "h1" });
      assert.ok(result.ok);
      const claim = result.claim;
      assert.equal(await b.release({ ...claim, session: "intruder" }), "not-owner");
      assert.equal(await b.release(claim), "not-owner"); // the right session, but not b's
      assert.equal(await a.release({ ...claim, session: "s2" }), "not-owner");
      assert.deepEqual(a.claims(), [claim], "a refused release leaves the claim renewed");
      assert.equal((await stored(redis, "host:app.example.com"))?.s, "s1");
      assert.equal(await a.release(claim), "released");
      assert.equal(await stored(redis, "host:app.example.com"), null);
      assert.deepEqual(a.claims(), []);
      assert.equal(await a.release(claim), "gone");
    } finally {
      await closeAll(a, b);
    }
    await assertNoClients(redis);
  },
});

Deno.test({
  name: "published changes keep the other nodes' caches current; cached lookups ask Redis nothing",
  ...REDIS,
  async fn() {
    await using redis = await startRedis();
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((id) => join(redis, id)));
    try {
      assert.equal(await c!.lookup("name", "demo"), undefined);
      assert.equal(c!.peek("name", "demo"), null);
      const result = await a!.claim("name", "demo", { session: "s1", holder: "h1" });
      assert.ok(result.ok);
      await waitFor(() => c!.peek("name", "demo")?.session === "s1", 2_000, "c to hear the claim");
      await waitFor(() => b!.peek("name", "demo")?.node === "a", 2_000, "b to hear the claim");
      const before = await scriptCalls(redis);
      for (let i = 0; i < 1_000; i++) assert.equal((await c!.lookup("name", "demo"))?.node, "a");
      assert.equal(await scriptCalls(redis), before, "1,000 cached lookups, no script run");
      assert.equal(await a!.release(result.claim, { holdMs: 5_000 }), "held");
      await waitFor(() => c!.peek("name", "demo")?.session === "", 2_000, "c to hear the hold");
      assert.equal(c!.peek("name", "demo")?.holder, "h1");
      const again = await a!.claim("name", "demo", { session: "s2", holder: "h1" });
      assert.ok(again.ok);
      await waitFor(
        () => c!.peek("name", "demo")?.session === "s2",
        2_000,
        "c to hear the reclaim",
      );
      assert.equal(await a!.release(again.claim), "released");
      await waitFor(() => c!.peek("name", "demo") === null, 2_000, "c to hear the release");
      await waitFor(() => b!.peek("name", "demo") === null, 2_000, "b to hear the release");
    } finally {
      await closeAll(a!, b!, c!);
    }
    await assertNoClients(redis);
  },
});

Deno.test({
  name: "a lease holder reclaims its name through another node; another holder cannot",
  ...REDIS,
  async fn() {
    await using redis = await startRedis();
    const lost: [Claim, DirectoryEntry | undefined][] = [];
    const a = await join(redis, "a", { onLost: (claim, now) => lost.push([claim, now]) });
    const b = await join(redis, "b");
    const c = await join(redis, "c");
    try {
      // A live session on a live node: its own holder may not take it over by default.
      const first = await a.claim("name", "demo", { session: "s1", holder: "h1" });
      assert.ok(first.ok);
      const refused = await b.claim("name", "demo", { session: "s2", holder: "h1" });
      assert.equal(refused.ok, false);
      assert.equal(refused.entry.session, "s1");
      assert.equal(
        (await b.claim("name", "demo", { session: "s2", holder: "h1", takeover: "never" })).ok,
        false,
      );
      // Held for its holder after its session ended: only that holder gets it.
      assert.equal(await a.release(first.claim, { holdMs: 5_000 }), "held");
      const reserved = await b.claim("name", "demo", { session: "s3", holder: "h2" });
      assert.ok(!reserved.ok);
      assert.equal(reserved.entry.session, "");
      assert.ok(reserved.entry.expiresAt > Date.now() + 4_000, "held for the hold time");
      assert.equal((await b.claim("name", "demo", { session: "s3" })).ok, false);
      const back = await b.claim("name", "demo", { session: "s4", holder: "h1" });
      assert.ok(back.ok);
      assert.equal(back.replaced?.session, "");
      assert.equal((await stored(redis, "name:demo"))?.n, "b");

      // A node that is gone (its record retired): its names go to their holders at once.
      const onC = await c.claim("name", "other", { session: "s5", holder: "h5" });
      assert.ok(onC.ok);
      await c.close();
      assert.equal((await b.claim("name", "other", { session: "s6", holder: "h6" })).ok, false);
      const moved = await b.claim("name", "other", { session: "s7", holder: "h5" });
      assert.ok(moved.ok);
      assert.equal(moved.replaced?.node, "c");

      // `always` replaces a live session of the same holder; its node hears that it lost it.
      const live = await a.claim("port", "2222", { session: "s8", holder: "h8" });
      assert.ok(live.ok);
      const forced = await b.claim("port", "2222", {
        session: "s9",
        holder: "h8",
        takeover: "always",
      });
      assert.ok(forced.ok);
      assert.equal(forced.replaced?.session, "s8");
      await waitFor(() => lost.length === 1, 2_000, "a to hear that it lost port 2222");
      assert.equal(lost[0]![0].session, "s8");
      assert.equal(lost[0]![1]?.session, "s9");
      assert.deepEqual(a.claims(), []);
      assert.equal(
        (await b.claim("port", "2222", { session: "s10", holder: "h10", takeover: "always" })).ok,
        false,
      );
    } finally {
      await closeAll(a, b, c);
    }
    await assertNoClients(redis);
  },
});

Deno.test({
  name:
    "Redis killed and restarted: the cache answers, claims are refused clearly, live claims return, a stolen one is reported",
  ...REDIS,
  async fn() {
    await using redis = await startRedis();
    await using cut = gate(redis.port); // a's way to Redis, which the test shuts
    const lost: [Claim, DirectoryEntry | undefined][] = [];
    // Claims long-lived, so that only the re-assertion on reconnect brings them back.
    const timings = { ...FAST, claimTtlMs: 60_000 };
    const a = await openDirectory({
      redis: `redis://127.0.0.1:${cut.port}`,
      node: "a",
      addr: "127.0.0.1:1001",
      timings,
      onLost: (claim, now) => lost.push([claim, now]),
    });
    const b = await join(redis, "b", { timings });
    const c = await join(redis, "c", { timings });
    let thief: Directory | undefined;
    try {
      const alpha = await a.claim("name", "alpha", { session: "sa", holder: "ha" });
      const gamma = await a.claim("port", "7000", { session: "sg", holder: "hg" });
      const beta = await b.claim("name", "beta", { session: "sb", holder: "hb" });
      assert.ok(alpha.ok && gamma.ok && beta.ok);
      assert.equal((await c.lookup("name", "alpha"))?.node, "a");
      assert.equal((await c.lookup("name", "beta"))?.node, "b");
      assert.equal(await c.lookup("name", "nobody"), undefined);

      await redis.kill();
      await waitFor(
        () => !a.available && !b.available && !c.available,
        2_000,
        "all to see Redis go",
      );
      // The cache answers, stale or not; what was never cached cannot be answered.
      assert.equal((await c.lookup("name", "alpha"))?.node, "a");
      assert.equal((await c.lookup("name", "beta"))?.session, "sb");
      assert.equal(await c.lookup("name", "nobody"), undefined);
      await assert.rejects(
        () => c.lookup("name", "never-seen"),
        (e) => e instanceof DirectoryError && e.code === "unavailable",
      );
      await assert.rejects(
        () => b.claim("name", "new", { session: "sn" }),
        (e) =>
          e instanceof DirectoryError && e.code === "unavailable" &&
          e.message === 'Cannot claim name "new": registry unavailable, retry',
      );

      cut.shut(); // a stays cut off while Redis comes back
      await redis.restart();
      thief = await join(redis, "d");
      const stolen = await thief.claim("name", "alpha", { session: "sd", holder: "hd" });
      assert.ok(stolen.ok, "alpha is free in the restarted Redis");
      // b and c come back by themselves; b re-asserts beta.
      await waitFor(async () => (await stored(redis, "name:beta"))?.s === "sb", 3_000, "beta back");
      await waitFor(
        async () => await redis.cli("EXISTS", "gotunnel:node:b") === "1",
        3_000,
        "b back",
      );

      cut.open();
      await waitFor(() => a.available, 3_000, "a to reconnect");
      await waitFor(() => lost.length === 1, 3_000, "a to report alpha lost");
      assert.equal(lost[0]![0].value, "alpha");
      assert.equal(lost[0]![1]?.node, "d");
      assert.deepEqual(a.claims().map((c) => c.value), ["7000"]);
      await waitFor(
        async () => (await stored(redis, "port:7000"))?.s === "sg",
        3_000,
        "gamma back",
      );
      assert.equal((await stored(redis, "name:alpha"))?.s, "sd");
      assert.equal(await redis.cli("EXISTS", "gotunnel:node:a"), "1");
      await waitFor(async () => (await c.lookup("name", "alpha"))?.node === "d", 3_000, "c sees d");
      assert.equal((await b.claim("name", "new", { session: "sn" })).ok, true);
    } finally {
      await closeAll(a, b, c, thief);
    }
    await assertNoClients(redis);
  },
});

Deno.test({
  name: "a Redis that stops answering: the command ends at its deadline, and the node reconnects",
  ...REDIS,
  async fn() {
    await using redis = await startRedis();
    const a = await join(redis, "a");
    try {
      await redis.cli("CLIENT", "PAUSE", "1500", "ALL");
      const asked = performance.now();
      await assert.rejects(
        () => a.lookup("name", "demo"),
        (e) => e instanceof DirectoryError && e.code === "unavailable",
      );
      const took = performance.now() - asked;
      assert.ok(took < FAST.commandTimeoutMs! + 300, `ended after ${took} ms`);
      await waitFor(() => a.available, 5_000, "a to reconnect once Redis answers again");
      assert.equal((await a.claim("name", "demo", { session: "s1" })).ok, true);
    } finally {
      await closeAll(a);
    }
    await assertNoClients(redis);
  },
});

Deno.test({
  name: "node ids: one held by a live node is refused; the node records give each node's address",
  ...REDIS,
  async fn() {
    await using redis = await startRedis();
    const a = await join(redis, "a", { addr: "10.0.0.1:8080", keyFingerprint: "fp-a" });
    const b = await join(redis, "b", { addr: "10.0.0.2:8080", keyFingerprint: "fp-a" });
    try {
      await assert.rejects(
        () => join(redis, "A", { addr: "10.0.0.9:8080" }),
        (e) =>
          e instanceof DirectoryError && e.code === "node-id-taken" &&
          /node "a": a live node at 10\.0\.0\.1:8080/.test(e.message),
      );
      assert.deepEqual((await a.nodes()).map((n) => [n.id, n.addr]), [
        ["a", "10.0.0.1:8080"],
        ["b", "10.0.0.2:8080"],
      ]);
      assert.equal((await a.nodeRecord("b"))?.addr, "10.0.0.2:8080");
      assert.equal((await a.nodeRecord("b"))?.keyFingerprint, "fp-a");
      await b.close();
      await waitFor(async () => await a.nodeRecord("b") === undefined, 2_000, "b's record to go");
      // A node that died without retiring: its id is free once its record lapses.
      await redis.cli("SET", "gotunnel:node:c", '{"addr":"x:1","fp":"","i":"dead"}', "PX", "300");
      const c = await join(redis, "c");
      await c.close();
    } finally {
      await closeAll(a, b);
    }
    await assertNoClients(redis);
  },
});

Deno.test({
  name: "rediss:// with a password: TLS to Redis, and the password is never logged",
  ...REDIS,
  async fn() {
    const password = "s3cret-Redis-pass";
    await using redis = await startRedis({ password, tls: true });
    assert.match(redis.url, /^rediss:/);
    const log = logRecorder();
    const a = await join(redis, "a", { log: log as Logger });
    try {
      assert.equal((await a.claim("name", "demo", { session: "s1" })).ok, true);
      assert.equal((await stored(redis, "name:demo"))?.s, "s1");
      await redis.kill();
      await waitFor(() => log.count("Lost the connection to Redis") > 0, 2_000, "the loss logged");
      await redis.restart();
      await waitFor(() => log.count("Reconnected to Redis") > 0, 3_000, "the reconnect logged");
      await waitFor(
        async () => (await stored(redis, "name:demo"))?.s === "s1",
        3_000,
        "re-asserted",
      );
      await assert.rejects(
        () => join({ ...redis, url: redis.url.replace(password, "wrong") }, "b"),
        (e) => e instanceof DirectoryError && e.code === "redis" && !e.message.includes("wrong"),
      );
      const text = JSON.stringify(log.lines);
      assert.ok(text.includes("rediss://***@127.0.0.1"), text);
      assert.ok(!text.includes(password));
    } finally {
      await closeAll(a);
    }
    await assertNoClients(redis);
  },
});

Deno.test({
  name: "the cluster modules load no npm package unless a directory is opened",
  ...T,
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "lib/server/cluster/directory.ts"],
      cwd: new URL("..", import.meta.url),
      stdout: "piped",
      stderr: "null",
    }).output();
    const graph = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.ok(graph.modules.length > 5);
    const npm = graph.modules.filter((m: { specifier: string }) =>
      !m.specifier.startsWith("file:")
    );
    assert.deepEqual(npm, []);
  },
});

Deno.test({
  name:
    "a node that cannot reach Redis at start is refused within the connect timeout, its password unsaid",
  ...T,
  async fn() {
    // Nothing listens: refused at once.
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    const options = {
      node: "a",
      addr: "127.0.0.1:1",
      timings: { ...FAST, connectTimeoutMs: 300 },
    };
    await assert.rejects(
      () => openDirectory({ ...options, redis: `redis://:hunter2-secret@127.0.0.1:${port}` }),
      (e) =>
        e instanceof DirectoryError && e.code === "unavailable" &&
        e.message.startsWith(`Cannot connect to Redis at redis://***@127.0.0.1:${port}`) &&
        !e.message.includes("hunter2"),
    );
    // A black hole (accepts, never answers): refused at the connect deadline.
    await using silent = rawApp((conn) => readAll(conn));
    const asked = performance.now();
    await assert.rejects(
      () => openDirectory({ ...options, redis: `redis://127.0.0.1:${silent.port}` }),
      (e) => e instanceof DirectoryError && e.code === "unavailable" && /300 ms/.test(e.message),
    );
    const took = performance.now() - asked;
    assert.ok(took >= 290 && took < 1_000, `refused after ${took} ms`);
  },
});
