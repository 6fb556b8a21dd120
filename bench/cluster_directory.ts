// `deno run -A bench/cluster_directory.ts`: what the cluster directory costs on the
// hot path. Starts its own redis-server (no persistence) on a free loopback port,
// two nodes' directories on it, and measures, in a few seconds:
//   - lookups a second answered from the cache (the hot path: no Redis),
//   - lookups a second that ask Redis (each one a miss: the cache is bypassed),
//   - claim latency, p50 and p99, over CLAIMS sequential claims (each a Lua script),
//   - how long a claim on one node takes to reach the other's cache (pub/sub).
// Needs redis-server (apt-get install -y redis-server). Every step is bounded.

import { openDirectory } from "../lib/server/cluster/directory.ts";
import { freePort, have, median, spawnCommand, waitTcp } from "./procs.ts";

const CLAIMS = Number(Deno.env.get("CLAIMS") ?? 1_000);
const CACHED_LOOKUPS = 1_000_000;
const REDIS_LOOKUPS = 2_000;
const DEADLINE_MS = 10_000;

if (!have("redis-server")) {
  // deno-lint-ignore no-console -- a CLI's error line
  console.error("Needs redis-server: apt-get install -y redis-server");
  Deno.exit(2);
}

const started = performance.now();
const deadline = setTimeout(() => {
  // deno-lint-ignore no-console -- a CLI's error line
  console.error(`Gave up after ${DEADLINE_MS} ms`);
  Deno.exit(1);
}, DEADLINE_MS);

const port = freePort();
const redisServer = await spawnCommand(
  "redis-server",
  [
    ...["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
  ],
  "/dev/null",
  false,
);
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
try {
  await waitTcp(port, 5_000);
  const redis = `redis://127.0.0.1:${port}`;
  await using a = await openDirectory({ redis, node: "a", addr: "127.0.0.1:1" });
  await using b = await openDirectory({ redis, node: "b", addr: "127.0.0.1:2" });

  // Claim latency: sequential, so each is one round trip and one script.
  const claimMs: number[] = [];
  for (let i = 0; i < CLAIMS; i++) {
    const t = performance.now();
    const result = await a.claim("name", `bench-${i}`, { session: `s${i}`, holder: `h${i}` });
    claimMs.push(performance.now() - t);
    if (!result.ok) throw new Error(`claim ${i} refused`);
  }
  claimMs.sort((x, y) => x - y);

  // Change to other node's cache: one claim, then poll b's cache without asking Redis.
  const spreadMs: number[] = [];
  for (let i = 0; i < 20; i++) {
    await b.lookup("name", `spread-${i}`); // cached absence
    const t = performance.now();
    await a.claim("name", `spread-${i}`, { session: `x${i}` });
    while (b.peek("name", `spread-${i}`)?.session !== `x${i}`) {
      await new Promise((r) => setTimeout(r, 0));
    }
    spreadMs.push(performance.now() - t);
  }

  // From the cache: b has heard every claim.
  await b.lookup("name", "bench-0");
  let t = performance.now();
  for (let i = 0; i < CACHED_LOOKUPS; i++) await b.lookup("name", `bench-${i % CLAIMS}`);
  const cachedPerSecond = CACHED_LOOKUPS / ((performance.now() - t) / 1000);
  t = performance.now();
  for (let i = 0; i < CACHED_LOOKUPS; i++) b.peek("name", `bench-${i % CLAIMS}`);
  const peekPerSecond = CACHED_LOOKUPS / ((performance.now() - t) / 1000);

  // From Redis: names nobody claimed and nobody looked up (each lookup a miss).
  t = performance.now();
  for (let i = 0; i < REDIS_LOOKUPS; i++) await b.lookup("name", `miss-${i}`);
  const redisPerSecond = REDIS_LOOKUPS / ((performance.now() - t) / 1000);
  t = performance.now();
  await Promise.all(
    Array.from({ length: REDIS_LOOKUPS }, (_, i) => b.lookup("name", `miss-parallel-${i}`)),
  );
  const redisParallelPerSecond = REDIS_LOOKUPS / ((performance.now() - t) / 1000);

  const f = (n: number) => Math.round(n).toLocaleString("en-US");
  const ms = (n: number) => n.toFixed(3);
  // deno-lint-ignore no-console -- the benchmark's report
  console.log(
    [
      `| measure (Deno ${Deno.version.deno}, redis-server on 127.0.0.1) | value |`,
      "| --- | ---: |",
      `| lookups/s from the cache (\`await lookup()\`) | ${f(cachedPerSecond)} |`,
      `| lookups/s from the cache (\`peek()\`, synchronous) | ${f(peekPerSecond)} |`,
      `| lookups/s from Redis, one at a time | ${f(redisPerSecond)} |`,
      `| lookups/s from Redis, ${REDIS_LOOKUPS} at once (pipelined) | ${
        f(redisParallelPerSecond)
      } |`,
      `| claim latency p50 / p99 (ms, ${CLAIMS} sequential) | ${ms(percentile(claimMs, 0.5))} / ${
        ms(percentile(claimMs, 0.99))
      } |`,
      `| claim on one node to the other's cache, median (ms, 20) | ${ms(median(spreadMs))} |`,
      `| whole run (s) | ${((performance.now() - started) / 1000).toFixed(1)} |`,
    ].join("\n"),
  );
} finally {
  await redisServer.stop();
  clearTimeout(deadline);
}
