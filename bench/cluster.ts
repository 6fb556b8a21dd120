// deno-lint-ignore-file no-console -- a benchmark reports on stdout
// `deno run -A bench/cluster.ts [--runs N] [--seconds N] [--mib N]`: two server nodes
// (server.ts --redis, real processes) on one redis-server, a client on node A, an
// nginx app; the same load through node A (which holds the tunnel) and through node
// B (which forwards each visitor to A over a node connection), interleaved.
// Prints markdown rows `| measure | owning node | forwarding node | ratio |`.

import { curlSpeed, startNginx, type Target, wrk } from "./loads.ts";
import {
  type Child,
  freePort,
  have,
  LOCAL_SERVER_ARGS,
  median,
  spawnCommand,
  spawnDeno,
  waitTcp,
} from "./procs.ts";

const args = Deno.args;
const flag = (name: string, fallback: number): number => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const RUNS = flag("runs", 3);
const SECONDS = flag("seconds", 5);
const MIB = flag("mib", 100);
const WRK = { threads: 2, conns: 50, seconds: SECONDS };

for (const tool of ["redis-server", "wrk", "nginx", "curl"]) {
  if (!have(tool)) {
    console.error(`bench/cluster.ts needs ${tool}: apt-get install -y redis-server wrk nginx curl`);
    Deno.exit(1);
  }
}

const work = await Deno.makeTempDir({ prefix: "gotunnel-bench-cluster-" });
await Deno.chmod(work, 0o755); // nginx's worker reads the files
const children: Child[] = [];
try {
  const redisPort = freePort();
  children.push(
    await spawnCommand(
      "redis-server",
      [
        ...["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      ],
      `${work}/redis.log`,
      false,
    ),
  );
  await waitTcp(redisPort);
  const [appPort, nginx] = await startNginx(work, MIB);
  children.push(nginx);
  const clusterKey = `${work}/cluster.key`;
  const leaseKey = `${work}/lease.key`;
  const node = async (id: string): Promise<number> => {
    const child = await spawnDeno("server.ts", [
      ...LOCAL_SERVER_ARGS,
      ...["--redis", `redis://127.0.0.1:${redisPort}`, "--node-id", id],
      ...["--cluster-key-file", clusterKey, "--lease-key-file", leaseKey],
    ], `${work}/${id}.log`);
    children.push(child);
    return Number(new URL(child.line).port);
  };
  const a = await node("a");
  const b = await node("b");
  children.push(
    await spawnDeno("client.ts", [
      String(appPort),
      ...["--server", `http://127.0.0.1:${a}`, "--subdomain", "bench", "--local-host", "127.0.0.1"],
      ...["--log-level", "warn", "--no-inspect"],
    ], `${work}/client.log`),
  );
  const targets: [Target, Target] = [
    { name: "owning node", port: a, host: `bench.localhost:${a}` },
    { name: "forwarding node", port: b, host: `bench.localhost:${b}` },
  ];
  const rows: string[][] = [];
  const compare = async (measure: string, one: (t: Target) => Promise<number>, digits = 0) => {
    const owner: number[] = [];
    const forwarded: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      owner.push(await one(targets[0]));
      forwarded.push(await one(targets[1]));
    }
    const [o, f] = [median(owner), median(forwarded)];
    const fmt = (n: number) => n.toLocaleString("en-US", { maximumFractionDigits: digits });
    rows.push([measure, fmt(o), fmt(f), `${(f / o).toFixed(2)}×`]);
    console.error(`${measure}: ${fmt(o)} / ${fmt(f)}`);
  };
  // A load with errors measures nothing: it stops the bench.
  const load = async (t: Target, extra: string[] = []) => {
    const result = await wrk(t, "/1k.bin", WRK, extra);
    if (result.errors > 0) throw new Error(`${result.errors} errors through the ${t.name}`);
    return result;
  };
  // Warm-up: the forwarding node's directory cache and node connections.
  await wrk(targets[1], "/1k.bin", { ...WRK, seconds: 1 });
  await compare("1 KiB keep-alive req/s", async (t) => (await load(t)).rps);
  await compare("1 KiB keep-alive p99 (ms)", async (t) => (await load(t)).p99, 2);
  await compare(
    "1 KiB `Connection: close` req/s",
    async (t) => (await load(t, ["-H", "Connection: close"])).rps,
  );
  await compare(`${MIB} MiB download MB/s`, (t) => curlSpeed(t));
  console.log(
    `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores; wrk -t${WRK.threads} ` +
      `-c${WRK.conns} -d${WRK.seconds}s, median of ${RUNS} interleaved runs; nginx app; all on 127.0.0.1`,
  );
  console.log("");
  console.log("| measure | owning node | forwarding node | ratio |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const row of rows) console.log(`| ${row.join(" | ")} |`);
} finally {
  for (const child of children.reverse()) await child.stop();
  await Deno.remove(work, { recursive: true }).catch(() => {});
}
