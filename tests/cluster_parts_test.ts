// The cluster's pure parts: node hello and welcome, node ids and addresses, the
// cluster key file, stored records, the lookup cache, Redis URLs.

import assert from "node:assert/strict";
import { UsageError } from "../lib/cli.ts";
import { DEFAULT_CLUSTER_TIMINGS, MAX_NODE_ID_LENGTH } from "../lib/server/cluster/timings.ts";
import { LookupCache } from "../lib/server/cluster/cache.ts";
import { DirectoryError } from "../lib/server/cluster/errors.ts";
import { importClusterKey, readOrCreateClusterKey } from "../lib/server/cluster/key.ts";
import {
  createNodeHello,
  createNodeWelcome,
  HelloVerifier,
  type NodeHello,
  verifyNodeWelcome,
} from "../lib/server/cluster/node_auth.ts";
import {
  checkNodeId,
  defaultNodeAddr,
  defaultNodeId,
  formatNodeAddr,
  parseNodeAddr,
} from "../lib/server/cluster/node_id.ts";
import {
  checkItem,
  decodeChange,
  decodeEntry,
  decodeNode,
  encodeNode,
} from "../lib/server/cluster/records.ts";
import { parseRedisUrl, redactRedisUrl } from "../lib/server/cluster/redis_url.ts";
import { DirectoryView } from "../lib/server/cluster/view.ts";

const key = await importClusterKey(new Uint8Array(32).fill(1));
const otherKey = await importClusterKey(new Uint8Array(32).fill(2));

Deno.test("a node hello is accepted once by its addressee, and its welcome by its sender", async () => {
  const verifier = new HelloVerifier(key, "b:8080");
  const hello = await createNodeHello(key, "a:8080", "b:8080");
  const checked = await verifier.verify(JSON.parse(JSON.stringify(hello)));
  assert.deepEqual(checked, { ok: true, message: hello });
  assert.deepEqual(await verifier.verify(hello), { ok: false, reason: "replayed hello" });
  const welcome = await createNodeWelcome(key, hello);
  assert.deepEqual(welcome.from, "b:8080");
  assert.equal((await verifyNodeWelcome(key, JSON.parse(JSON.stringify(welcome)), hello)).ok, true);
});

Deno.test("a node hello is refused: wrong key, another addressee, stale or future time, tampered", async () => {
  const now = 1_700_000_000_000;
  const verifier = new HelloVerifier(key, "b:8080", { windowMs: 30_000 });
  const reason = async (hello: unknown, at = now) => {
    const result = await verifier.verify(hello, at);
    assert.equal(result.ok, false);
    return (result as { reason: string }).reason;
  };
  assert.match(await reason(await createNodeHello(otherKey, "a:8080", "b:8080", now)), /wrong MAC/);
  assert.match(
    await reason(await createNodeHello(key, "a:8080", "c:8080", now)),
    /meant for c:8080/,
  );
  const old = await createNodeHello(key, "a:8080", "b:8080", now - 30_001);
  assert.match(await reason(old), /30001 ms off/);
  const future = await createNodeHello(key, "a:8080", "b:8080", now + 30_001);
  assert.match(await reason(future), /-30001 ms off/);
  const good = await createNodeHello(key, "a:8080", "b:8080", now);
  for (const change of [{ from: "x:1" }, { nonce: "A".repeat(22) }, { time: now + 1 }]) {
    assert.match(await reason({ ...good, ...change }), /wrong MAC/);
  }
  // The tampered ones did not use up the nonce: the real hello still passes, once.
  assert.equal((await verifier.verify(good, now)).ok, true);
  assert.equal(await reason(good), "replayed hello");
  // At the edge of the window, both ways.
  assert.equal((await verifier.verify(old, now - 1)).ok, true);
});

Deno.test("a malformed node hello or welcome is refused with a reason, never thrown", async () => {
  const verifier = new HelloVerifier(key, "b:8080");
  const good = await createNodeHello(key, "a:8080", "b:8080");
  const bad: unknown[] = [
    null,
    "node-hello",
    [good],
    {},
    { ...good, type: "hello" },
    { ...good, version: 2 },
    { ...good, from: "A:8080" },
    { ...good, from: "bad id" },
    { ...good, to: 7 },
    { ...good, nonce: "short" },
    { ...good, time: "1" },
    { ...good, time: 1.5 },
    { ...good, mac: "x".repeat(44) },
    { ...good, mac: undefined },
  ];
  for (const message of bad) {
    const result = await verifier.verify(message);
    assert.equal(result.ok, false, JSON.stringify(message));
    // Refused for its shape, before any MAC is computed.
    assert.match((result as { reason: string }).reason, /^(not |version |bad )/);
  }
  assert.equal(verifier.remembered, 0);
  const welcome = await createNodeWelcome(key, good);
  const other = await createNodeHello(key, "a:8080", "b:8080");
  const refusals = [
    await verifyNodeWelcome(key, { ...welcome, mac: undefined }, good),
    await verifyNodeWelcome(otherKey, welcome, good),
    await verifyNodeWelcome(key, welcome, other), // a welcome to another hello (its nonce)
    await verifyNodeWelcome(key, { ...welcome, from: "c:8080" }, good),
    await verifyNodeWelcome(key, good, good),
  ];
  assert.deepEqual(refusals.map((r) => r.ok), [false, false, false, false, false]);
  assert.match((refusals[2] as { reason: string }).reason, /wrong MAC/);
  assert.match((refusals[3] as { reason: string }).reason, /not to this hello/);
});

Deno.test("the hello verifier remembers nonces within the window only, and refuses when full", async () => {
  const now = 1_700_000_000_000;
  const verifier = new HelloVerifier(key, "b:8080", { windowMs: 1_000, maxNonces: 3 });
  const hellos: NodeHello[] = [];
  for (let i = 0; i < 4; i++) hellos.push(await createNodeHello(key, "a:8080", "b:8080", now));
  for (const hello of hellos.slice(0, 3)) {
    assert.equal((await verifier.verify(hello, now)).ok, true);
  }
  assert.deepEqual(await verifier.verify(hellos[3], now), {
    ok: false,
    reason: "too many recent hellos",
  });
  const later = await createNodeHello(key, "a:8080", "b:8080", now + 1_500);
  assert.equal((await verifier.verify(later, now + 1_500)).ok, true);
  assert.equal(verifier.remembered, 1);
});

Deno.test("node ids: checked and lowercased; the default is hostname:port, cleaned", () => {
  assert.deepEqual(checkNodeId("Edge-1:8080"), { ok: true, id: "edge-1:8080" });
  for (const bad of ["", "-a", "a-", "a b", "a/b", "é", "a".repeat(MAX_NODE_ID_LENGTH + 1)]) {
    assert.equal(checkNodeId(bad).ok, false, bad);
  }
  assert.equal(defaultNodeId("Edge-1.Example", 8080), "edge-1.example:8080");
  assert.equal(defaultNodeId("my host_名", 80), "my-host:80");
  assert.equal(defaultNodeId("---", 80), "node:80");
  assert.equal(defaultNodeId("a".repeat(300), 65535).length, MAX_NODE_ID_LENGTH);
  assert.equal(checkNodeId(defaultNodeId("a".repeat(300), 65535)).ok, true);
});

Deno.test("--node-addr: HOST:PORT that another node can dial, or a clear error", () => {
  assert.deepEqual(parseNodeAddr("10.0.0.2:8080"), { hostname: "10.0.0.2", port: 8080 });
  assert.deepEqual(parseNodeAddr("Node-B.internal:443"), {
    hostname: "node-b.internal",
    port: 443,
  });
  assert.deepEqual(parseNodeAddr("[FD00::2]:8080"), { hostname: "fd00::2", port: 8080 });
  assert.equal(formatNodeAddr(parseNodeAddr("[fd00::2]:8080")), "[fd00::2]:8080");
  const errors: [string, RegExp][] = [
    ["10.0.0.2", /use HOST:PORT/],
    [":8080", /host is missing/],
    ["10.0.0.2:0", /outside 1-65535/],
    ["10.0.0.2:65536", /outside 1-65535/],
    ["0.0.0.0:8080", /not an address other nodes can dial/],
    ["[::]:8080", /not an address other nodes can dial/],
    ["fd00::2:8080", /use HOST:PORT/],
    ["bad_host!:80", /bad host name/],
  ];
  for (const [text, message] of errors) {
    assert.throws(
      () => parseNodeAddr(text),
      (e) => e instanceof UsageError && message.test(e.message),
    );
  }
  assert.deepEqual(defaultNodeAddr("10.0.0.2", 8080), { hostname: "10.0.0.2", port: 8080 });
  assert.deepEqual(defaultNodeAddr("::1", 8080), { hostname: "::1", port: 8080 });
  assert.throws(() => defaultNodeAddr("0.0.0.0", 8080), /--node-addr HOST:PORT is needed/);
  assert.throws(() => defaultNodeAddr("::", 8080), /--node-addr HOST:PORT is needed/);
});

Deno.test("--cluster-key-file: created owner-only with 32 random bytes, then read; a short one refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/cluster.key`;
    const first = await readOrCreateClusterKey(path);
    assert.equal(first.created, true);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.equal((await Deno.readFile(path)).length, 32);
    const again = await readOrCreateClusterKey(path);
    assert.equal(again.created, false);
    assert.equal(again.key.fingerprint, first.key.fingerprint);
    assert.notEqual(first.key.fingerprint, key.fingerprint);
    // Same bytes, same key: a hello made with one is accepted with the other.
    const copy = await importClusterKey(await Deno.readFile(path));
    const hello = await createNodeHello(first.key, "a:1", "b:1");
    assert.equal((await new HelloVerifier(copy, "b:1").verify(hello)).ok, true);
    await Deno.writeFile(`${dir}/short.key`, new Uint8Array(16));
    await assert.rejects(() => readOrCreateClusterKey(`${dir}/short.key`), RangeError);
    await assert.rejects(() => importClusterKey(new Uint8Array(31)), /31 bytes: 32\+ needed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stored records: items checked, entries and changes read, strangers ignored", () => {
  assert.equal(checkItem("name", "demo"), undefined);
  assert.equal(checkItem("port", "65535"), undefined);
  assert.equal(checkItem("host", "app.example.com"), undefined);
  const bad: [string, string][] = [["port", "0"], ["port", "65536"], ["port", "08"], ["name", ""]];
  for (const [kind, value] of bad) {
    assert.notEqual(checkItem(kind as "port", value), undefined, `${kind} ${value}`);
  }
  assert.notEqual(checkItem("name", "a b"), undefined);
  assert.notEqual(checkItem("name", "a\nb"), undefined);
  assert.notEqual(checkItem("name", "x".repeat(254)), undefined);
  assert.notEqual(checkItem("node" as "name", "a"), undefined);
  assert.deepEqual(decodeEntry('{"n":"a","s":"s","h":"h","r":4}', 100, 1000), {
    node: "a",
    session: "s",
    holder: "h",
    expiresAt: 1100,
    revision: 4,
  });
  for (const bad of ["", "{", "[]", '{"n":"a","s":1,"h":""}', "null"]) {
    assert.equal(decodeEntry(bad, 0, 0), undefined, bad);
  }
  const record = { id: "a:1", addr: "10.0.0.1:1", keyFingerprint: "fp", instance: "i" };
  assert.deepEqual(decodeNode("a:1", encodeNode(record)), record);
  assert.equal(decodeNode("a:1", '{"addr":1}'), undefined);
  assert.deepEqual(decodeChange('{"op":"set","k":"name:a","e":"{}","ttl":5,"r":2}'), {
    op: "set",
    item: "name:a",
    entry: "{}",
    ttlMs: 5,
    revision: 2,
  });
  assert.deepEqual(decodeChange('{"op":"node","id":"a:1"}'), { op: "node", id: "a:1" });
  for (const bad of ["hello", "{}", '{"op":"set","k":"x"}', '{"op":"del"}']) {
    assert.equal(decodeChange(bad), undefined, bad);
  }
});

Deno.test("the lookup cache keeps at most its bound, oldest out first; stale values stay", () => {
  const cache = new LookupCache<number>(3);
  for (let i = 0; i < 5; i++) cache.set(`k${i}`, i, 100);
  assert.equal(cache.size, 3);
  assert.equal(cache.get("k1"), undefined);
  cache.set("k2", 22, 100); // k2 becomes the newest
  cache.set("k5", 5, 100);
  assert.equal(cache.get("k3"), undefined);
  assert.equal(cache.get("k2")?.value, 22);
  cache.staleAll();
  assert.deepEqual(cache.get("k2"), { value: 22, freshUntil: 0 });
});

Deno.test("the directory view keeps the newest news, whatever order replies and messages come in", async () => {
  const entry = (session: string, r: number) => JSON.stringify({ n: "a", s: session, h: "", r });
  let answer: [string, number] = [entry("old", 3), 10_000];
  let release: () => void = () => {};
  const view = new DirectoryView(DEFAULT_CLUSTER_TIMINGS, async () => {
    await new Promise<void>((r) => release = r);
    return answer;
  });
  view.listening(true);
  // A lookup on its way when a change is heard: its answer is given, not cached.
  const asked = view.lookup("name:x");
  view.heard({ op: "set", item: "name:x", entry: entry("new", 5), ttlMs: 10_000, revision: 5 });
  release();
  assert.equal((await asked)?.session, "old");
  assert.equal(view.peek("name:x")?.session, "new");
  // An older message than what is cached changes nothing.
  view.heard({ op: "set", item: "name:x", entry: entry("older", 4), ttlMs: 10_000, revision: 4 });
  assert.equal(view.peek("name:x")?.session, "new");
  view.heard({ op: "del", item: "name:x", revision: 6 });
  assert.equal(view.peek("name:x"), null);
  // A lookup on its way when hearing starts again: it may have missed a change, so it
  // is given but not kept fresh.
  view.listening(false);
  answer = [entry("read-while-deaf", 6), 10_000];
  const crossing = view.lookup("name:y");
  view.listening(true);
  release();
  assert.equal((await crossing)?.session, "read-while-deaf");
  assert.equal(view.peek("name:y"), undefined);
  // Deaf: nothing is fresh; what Redis says is kept only for an outage.
  view.listening(false);
  assert.equal(view.peek("name:x"), undefined);
  answer = [entry("third", 7), 10_000];
  const deaf = view.lookup("name:x");
  release();
  assert.equal((await deaf)?.session, "third");
  assert.equal(view.peek("name:x"), undefined);
  assert.equal(view.size, 1);
});

Deno.test("the directory view answers from a stale entry when Redis is away, and only then", async () => {
  let fail: Error | undefined;
  const view = new DirectoryView({ ...DEFAULT_CLUSTER_TIMINGS, cacheMaxAgeMs: 0 }, () => {
    if (fail) return Promise.reject(fail);
    return Promise.resolve(['{"n":"a","s":"s","h":"","r":1}', 10_000]);
  });
  view.listening(true);
  assert.equal((await view.lookup("name:x"))?.node, "a");
  fail = new DirectoryError("unavailable", "Cannot look up: registry unavailable, retry");
  assert.equal((await view.lookup("name:x"))?.node, "a");
  await assert.rejects(() => view.lookup("name:y"), /registry unavailable, retry/);
  fail = new DirectoryError("redis", "Cannot look up: Redis answered WRONGTYPE");
  await assert.rejects(() => view.lookup("name:x"), /WRONGTYPE/);
});

Deno.test("Redis URLs: redis:// and rediss://, password redacted wherever the URL is shown", () => {
  assert.deepEqual(parseRedisUrl("redis://127.0.0.1:6379/0"), {
    url: "redis://127.0.0.1:6379/0",
    tls: false,
    redacted: "redis://127.0.0.1:6379/0",
  });
  const secret = parseRedisUrl("rediss://user:s3cr%40t@redis.internal:6380/2");
  assert.equal(secret.tls, true);
  assert.equal(secret.redacted, "rediss://***@redis.internal:6380/2");
  assert.equal(redactRedisUrl("redis://:p@h"), "redis://***@h");
  for (
    const bad of ["http://h", "redis://:pw@/0", "redis://:pw@h/x", "redis://:pw@h?db=1", "nope"]
  ) {
    assert.throws(
      () => parseRedisUrl(bad),
      (e) => e instanceof TypeError && !e.message.includes("pw"),
      bad,
    );
  }
});
