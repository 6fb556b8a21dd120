// `deno task bench`: the same load directly to an app and through Gotunnel tunnels, in one run.
//
// Needs wrk, nginx and curl (Debian: `apt-get install -y wrk nginx curl`). Everything
// listens on 127.0.0.1; every run is bounded. Prints markdown tables: each rate direct and
// through the tunnel with its errors and the ratio, then each process's memory and CPU.

import { curlSpeed, startNginx, type Target, wrk, type WrkResult } from "./loads.ts";
import {
  type Child,
  cpuSeconds,
  have,
  LOCAL_SERVER_ARGS,
  median,
  peakRssKiB,
  resetPeakRss,
  rssKiB,
  run,
  sleep,
  spawnDeno,
} from "./procs.ts";

const HELP = `deno task bench: the same load directly to an app (nginx) and through tunnels.

Needs wrk, nginx and curl (apt-get install -y wrk nginx curl). Everything on 127.0.0.1.
Settings (environment variables, with their defaults):
  DURATION=5      seconds per wrk run
  RUNS=5          wrk runs per row, interleaved direct/tunnels; the median is reported
  CONNS=50        wrk connections
  THREADS=2       wrk threads
  BULK_MB=100     size of the bulk download and upload
  BULK_REPS=5     bulk transfers per direction (median)
  SETTLE=60       seconds to wait after the load before the last memory reading
  ONLY="keepalive close 64k download upload tcp cluster"   rows to run (tcp: bench/tcp.ts, a
                  TCP tunnel's bulk MB/s each way, BULK_MB and BULK_REPS; cluster: bench/cluster.ts,
                  two nodes on a redis-server, through the node that holds the tunnel and through
                  the other one; both after the memory readings)
  V8_FLAGS=""     V8 flags for the server and clients (e.g. --max-semi-space-size=2)
  SERVER_ARGS=""  extra flags for server.ts
  CLIENT_ARGS=""  extra flags for client.ts
Prints markdown tables: each rate direct and through the tunnel (errors beside it) and the
ratio; then RSS idle, peak, 2 s and SETTLE s after the load, and CPU, of each process.`;

if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
  // deno-lint-ignore no-console -- the help is the output
  console.log(HELP);
  Deno.exit(0);
}

const env = (name: string, fallback: number): number => Number(Deno.env.get(name) ?? fallback);
const words = (name: string, fallback = ""): string[] =>
  (Deno.env.get(name) ?? fallback).split(/[ ,]+/).filter(Boolean);
const WRK = { seconds: env("DURATION", 5), conns: env("CONNS", 50), threads: env("THREADS", 2) };
const RUNS = env("RUNS", 5);
const BULK_MB = env("BULK_MB", 100);
const BULK_REPS = env("BULK_REPS", 5);
const SETTLE_S = env("SETTLE", 60);
const ONLY = words("ONLY", "keepalive close 64k download upload tcp cluster");
const V8_FLAGS = words("V8_FLAGS");
const DENO_FLAGS = V8_FLAGS.length > 0 ? [`--v8-flags=${V8_FLAGS.join(",")}`] : [];

// deno-lint-ignore no-console -- progress for the person running the benchmark
const note = (s: string): void => console.error(`[bench] ${s}`);

const missing = ["wrk", "nginx", "curl"].filter((t) => !have(t));
if (missing.length > 0) {
  note(`missing ${missing.join(", ")}: install with  apt-get install -y wrk nginx curl`);
  Deno.exit(2);
}

const work = await Deno.makeTempDir({ prefix: "gotunnel-bench-" });
await Deno.chmod(work, 0o755);
const children: Child[] = [];

const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : "n/a";
const mib = (kib: number): string => (kib / 1024).toFixed(1);
const ratio = (t: number, d: number): string => `${fmt(t / d, 2)}×`;

/** A table row: a measure, direct, through the tunnel, errors (direct / tunnel), ratio. */
type Row = [string, string, string, string, string];

try {
  note(`work dir ${work}`);
  const [appPort, nginx] = await startNginx(work, BULK_MB);
  children.push(nginx);
  const sink = await spawnDeno("bench/upload_sink.ts", [], `${work}/sink.log`);
  children.push(sink);
  const sinkPort = Number(new URL(sink.line).port);

  const serverArgs = [...LOCAL_SERVER_ARGS, ...words("SERVER_ARGS")];
  const server = await spawnDeno("server.ts", serverArgs, `${work}/server.log`, DENO_FLAGS);
  children.push(server);
  const publicPort = Number(new URL(server.line).port);
  const startClient = async (app: number, sub: string, ...more: string[]): Promise<Child> => {
    const args = [
      ...[String(app), "--server", `http://127.0.0.1:${publicPort}`, "--subdomain", sub],
      ...["--local-host", "127.0.0.1", "--log-level", "warn"],
      // Inspectors on free ports (not 4040-4050, which a developer's own client may hold).
      ...(more.length === 0 ? ["--inspect", "127.0.0.1:0"] : []),
      ...words("CLIENT_ARGS"),
      ...more,
    ];
    const child = await spawnDeno("client.ts", args, `${work}/${sub}.log`, DENO_FLAGS);
    children.push(child);
    return child;
  };
  const client = await startClient(appPort, "bench");
  await startClient(sinkPort, "sink");
  // The same app through a client without its inspector, and one with --raw (no HTTP
  // awareness at all): what each costs.
  const plain = await startClient(appPort, "plain", "--no-inspect");
  await startClient(appPort, "raw", "--raw");
  await sleep(1000);
  const measured = { server, client, "client --no-inspect": plain };
  const idle = Object.fromEntries(Object.entries(measured).map(([k, c]) => [k, rssKiB(c.pid)]));
  for (const child of Object.values(measured)) resetPeakRss(child.pid);
  const cpu0 = Object.fromEntries(
    Object.entries(measured).map(([k, c]) => [k, cpuSeconds(c.pid)]),
  );

  const at = (name: string, port: number, host: string): Target => ({ name, port, host });
  const direct = at("direct", appPort, `127.0.0.1:${appPort}`);
  const through = (sub: string): Target => at(sub, publicPort, `${sub}.localhost:${publicPort}`);
  const tunnel = through("bench");
  const noInspect = through("plain");
  const raw = through("raw");

  // Correctness first: the tunnel must serve the same bytes.
  const check = await run("curl", [
    "-s",
    "-H",
    `Host: ${tunnel.host}`,
    `http://127.0.0.1:${publicPort}/64k.bin`,
  ]);
  const want = await Deno.readTextFile(`${work}/www/64k.bin`).catch(() => "");
  if (check.length !== want.length) throw new Error("the tunnel did not serve 64k.bin intact");

  const rows: Row[] = [];
  const notes: string[] = [];
  const wrkRow = async (label: string, path: string, extra: string[], variants: Target[]) => {
    const results = new Map<Target, WrkResult[]>([[direct, []], [tunnel, []]]);
    for (const v of variants) results.set(v, []);
    for (let i = 0; i < RUNS; i++) { // interleaved, so drift hits all alike
      note(`${label}: run ${i + 1}/${RUNS}`);
      for (const [target, into] of results) into.push(await wrk(target, path, WRK, extra));
    }
    const rps = (t: Target) => median(results.get(t)!.map((r) => r.rps));
    const errors = (t: Target) => results.get(t)!.reduce((s, r) => s + r.errors, 0);
    const d = rps(direct);
    for (const [target] of results) {
      if (target === direct) continue;
      const suffix = target === tunnel
        ? ""
        : `, client ${target === raw ? "--raw" : "--no-inspect"}`;
      rows.push([
        `${label} req/s${suffix}`,
        fmt(d),
        fmt(rps(target)),
        `${errors(direct)} / ${errors(target)}`,
        ratio(rps(target), d),
      ]);
    }
    if (variants.includes(noInspect)) {
      notes.push(
        `${label}: the client with its inspector (default) makes ${
          ratio(rps(tunnel), rps(noInspect))
        } ` +
          `the req/s of the same client with --no-inspect.`,
      );
    }
    if (variants.includes(raw)) {
      notes.push(
        `${label}: the HTTP-aware client (default) makes ${ratio(rps(tunnel), rps(raw))} ` +
          `the req/s of the same client with --raw.`,
      );
    }
    if (path === "/1k.bin" && extra.length === 0) {
      for (const p of ["p50", "p99"] as const) {
        const dl = median(results.get(direct)!.map((r) => r[p]));
        const tl = median(results.get(tunnel)!.map((r) => r[p]));
        rows.push([`${label} ${p} latency (ms)`, fmt(dl, 2), fmt(tl, 2), "", ratio(tl, dl)]);
      }
    }
  };
  if (ONLY.includes("keepalive")) {
    await wrkRow("1 KiB keep-alive", "/1k.bin", [], [noInspect, raw]);
  }
  if (ONLY.includes("close")) {
    await wrkRow("1 KiB Connection: close", "/1k.bin", ["-H", "Connection: close"], [noInspect]);
  }
  if (ONLY.includes("64k")) await wrkRow("64 KiB keep-alive", "/64k.bin", [], [noInspect]);

  const bulk = async (label: string, targets: [Target, Target], upload?: string) => {
    const d: number[] = [];
    const t: number[] = [];
    for (let i = 0; i < BULK_REPS; i++) {
      note(`${label}: run ${i + 1}/${BULK_REPS}`);
      d.push(await curlSpeed(targets[0], upload));
      t.push(await curlSpeed(targets[1], upload));
    }
    rows.push([
      `${label} MB/s`,
      fmt(median(d)),
      fmt(median(t)),
      "0 / 0",
      ratio(median(t), median(d)),
    ]);
  };
  if (ONLY.includes("download")) await bulk(`${BULK_MB} MiB download`, [direct, tunnel]);
  if (ONLY.includes("upload")) {
    const sinkDirect = at("direct", sinkPort, `127.0.0.1:${sinkPort}`);
    await bulk(`${BULK_MB} MiB upload`, [sinkDirect, through("sink")], `${work}/www/bulk.bin`);
  }

  // Memory: the peak during the load, then 2 s and SETTLE s after it.
  const memory = Object.entries(measured).map(([name, child]) => ({
    name,
    child,
    idle: idle[name]!,
    peak: peakRssKiB(child.pid),
    cpu: cpuSeconds(child.pid) - cpu0[name]!,
    after2: 0,
    settled: 0,
  }));
  await sleep(2000);
  for (const m of memory) m.after2 = rssKiB(m.child.pid);
  note(`waiting ${SETTLE_S} s for memory to settle`);
  await sleep(Math.max(0, SETTLE_S - 2) * 1000);
  for (const m of memory) m.settled = rssKiB(m.child.pid);

  // A TCP tunnel's bulk rows (their own server and client processes, see bench/tcp.ts).
  if (ONLY.includes("tcp")) {
    note("TCP tunnel bulk (bench/tcp.ts)");
    const out = await run(Deno.execPath(), [
      "run",
      "-A",
      ...DENO_FLAGS,
      new URL("./tcp.ts", import.meta.url).pathname,
      "--mib",
      String(BULK_MB),
      "--runs",
      String(BULK_REPS),
    ]);
    for (const line of out.split("\n")) {
      const cells = line.split("|").map((c) => c.trim()).filter(Boolean);
      if (cells.length === 4 && /MB\/s/.test(cells[0]!)) {
        rows.push([`${cells[0]}`, cells[1]!, cells[2]!, "0 / 0", cells[3]!]);
      }
    }
  }

  // Two nodes of a cluster: the owning node against the forwarding one (bench/cluster.ts).
  let clusterTable: string[] = [];
  if (ONLY.includes("cluster")) {
    note("cluster: owning node against forwarding node (bench/cluster.ts)");
    const out = await run(Deno.execPath(), [
      "run",
      "-A",
      ...DENO_FLAGS,
      new URL("./cluster.ts", import.meta.url).pathname,
      ...["--runs", String(RUNS), "--seconds", String(WRK.seconds), "--mib", String(BULK_MB)],
    ]);
    clusterTable = ["", "Two cluster nodes (bench/cluster.ts): " + out.trim()];
  }

  const version = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)))
    .version;
  const lines = [
    `Gotunnel ${version}, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores; ` +
    `wrk -t${WRK.threads} -c${WRK.conns} -d${WRK.seconds}s, median of ${RUNS} interleaved runs; ` +
    `bulk: curl, median of ${BULK_REPS}; app: nginx (uploads: a Deno sink); all on 127.0.0.1; ` +
    `V8 flags: ${V8_FLAGS.length > 0 ? V8_FLAGS.join(" ") : "none"}`,
    "",
    "| measure | direct | gotunnel | errors (direct / tunnel) | ratio |",
    "|---|---:|---:|---:|---:|",
    ...rows.map((r) => `| ${r.join(" | ")} |`),
    "",
    ...notes,
    "",
    `| process | idle RSS MiB | peak | 2 s after | ${SETTLE_S} s after | after / idle | CPU s during load |`,
    "|---|---:|---:|---:|---:|---:|---:|",
    ...memory.map((m) =>
      `| ${m.name} | ${mib(m.idle)} | ${mib(m.peak)} | ${mib(m.after2)} | ${mib(m.settled)} | ` +
      `${fmt(m.settled / m.idle, 2)}× | ${m.cpu.toFixed(1)} |`
    ),
    ...clusterTable,
  ];
  // deno-lint-ignore no-console -- the report is the output
  console.log(lines.join("\n"));
} finally {
  for (const child of children.reverse()) await child.stop();
  await Deno.remove(work, { recursive: true });
}
