// `deno task bench`: the same load directly to an app and through a Gotunnel tunnel, in one run.
//
// Needs wrk, nginx and curl (Debian: `apt-get install -y wrk nginx curl`). Everything
// listens on 127.0.0.1; every run is bounded. Prints a markdown table of absolute
// figures and ratios against the direct connection.
//
// Knobs (environment): DURATION (s per wrk run, 5), RUNS (wrk runs per row, median, 3),
// CONNS (50), THREADS (2), BULK_MB (100), BULK_REPS (5), SERVER_ARGS / CLIENT_ARGS
// (extra flags for server.ts / client.ts).

import {
  type Child,
  cpuSeconds,
  freePort,
  have,
  LOCAL_SERVER_ARGS,
  median,
  rssKiB,
  run,
  sleep,
  spawnCommand,
  spawnDeno,
  waitTcp,
} from "./procs.ts";

const HELP = `deno task bench: the same load directly to an app (nginx) and through a tunnel.

Needs wrk, nginx and curl (apt-get install -y wrk nginx curl). Everything on 127.0.0.1.
Settings (environment variables, with their defaults):
  DURATION=5      seconds per wrk run
  RUNS=3          wrk runs per row, interleaved direct/tunnel; the median is reported
  CONNS=50        wrk connections
  THREADS=2       wrk threads
  BULK_MB=100     size of the bulk download and upload
  BULK_REPS=5     bulk transfers per direction (median)
  ONLY="keepalive close 64k download upload"   rows to run
  SERVER_ARGS=""  extra flags for server.ts
  CLIENT_ARGS=""  extra flags for client.ts
Prints a markdown table: each figure direct and through the tunnel, and the ratio.`;

if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
  // deno-lint-ignore no-console -- the help is the output
  console.log(HELP);
  Deno.exit(0);
}

const env = (name: string, fallback: number): number => Number(Deno.env.get(name) ?? fallback);
const DURATION = env("DURATION", 5);
const RUNS = env("RUNS", 3);
const CONNS = env("CONNS", 50);
const THREADS = env("THREADS", 2);
const BULK_MB = env("BULK_MB", 100);
const BULK_REPS = env("BULK_REPS", 5);
const ONLY = (Deno.env.get("ONLY") ?? "keepalive close 64k download upload").split(/[ ,]+/);
const SERVER_ARGS = (Deno.env.get("SERVER_ARGS") ?? "").split(" ").filter(Boolean);
const CLIENT_ARGS = (Deno.env.get("CLIENT_ARGS") ?? "").split(" ").filter(Boolean);

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

async function writeRandomFile(path: string, bytes: number): Promise<void> {
  const file = await Deno.open(path, { create: true, write: true, truncate: true });
  const chunk = new Uint8Array(1024 * 1024);
  for (let left = bytes; left > 0; left -= chunk.length) {
    crypto.getRandomValues(chunk.subarray(0, 65536));
    for (let at = 65536; at < chunk.length; at += 65536) chunk.copyWithin(at, 0, 65536);
    await file.write(chunk.subarray(0, Math.min(left, chunk.length)));
  }
  file.close();
}

async function startNginx(): Promise<number> {
  const port = freePort();
  await Deno.mkdir(`${work}/www`);
  await Deno.mkdir(`${work}/tmp`);
  await writeRandomFile(`${work}/www/1k.bin`, 1024);
  await writeRandomFile(`${work}/www/64k.bin`, 65536);
  await writeRandomFile(`${work}/www/bulk.bin`, BULK_MB * 1024 * 1024);
  await Deno.chmod(`${work}/www`, 0o755);
  const conf = `worker_processes 1;
daemon off;
pid ${work}/nginx.pid;
error_log ${work}/nginx.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_timeout 65; keepalive_requests 1000000;
  client_body_temp_path ${work}/tmp/body; proxy_temp_path ${work}/tmp/proxy;
  fastcgi_temp_path ${work}/tmp/f; uwsgi_temp_path ${work}/tmp/u; scgi_temp_path ${work}/tmp/s;
  server { listen 127.0.0.1:${port}; root ${work}/www; }
}
`;
  await Deno.writeTextFile(`${work}/nginx.conf`, conf);
  children.push(
    await spawnCommand(
      "nginx",
      ["-p", work, "-e", `${work}/nginx.err`, "-c", `${work}/nginx.conf`],
      `${work}/nginx.log`,
      false,
    ),
  );
  await waitTcp(port);
  return port;
}

type Target = { name: string; port: number; host: string };

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

const toMs = (value: string, unit: string): number =>
  Number(value) * ({ us: 0.001, ms: 1, s: 1000 }[unit] ?? 1);

async function wrk(target: Target, path: string, extra: string[] = []): Promise<WrkResult> {
  const out = await run("wrk", [
    `-t${THREADS}`,
    `-c${CONNS}`,
    `-d${DURATION}s`,
    "--timeout",
    "10s",
    "--latency",
    "-H",
    `Host: ${target.host}`,
    ...extra,
    `http://127.0.0.1:${target.port}${path}`,
  ]);
  const latency = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, "m").exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    p50: latency("50"),
    p99: latency("99"),
    errors: non2xx + (errors ? errors.slice(1).reduce((s, n) => s + Number(n), 0) : 0),
  };
}

async function curlSpeed(target: Target, args: string[], field: string): Promise<number> {
  const out = await run("curl", [
    "-s",
    "-o",
    "/dev/null",
    "--max-time",
    "120",
    "-H",
    `Host: ${target.host}`,
    "-H",
    "Expect:",
    "-w",
    `%{http_code} %{${field}}`,
    ...args,
  ]);
  const [code, speed] = out.trim().split(" ");
  if (code !== "200") throw new Error(`curl got HTTP ${code} from ${target.name}`);
  return Number(speed) / 1e6;
}

const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : "n/a";
const mib = (kib: number): string => (kib / 1024).toFixed(1);

try {
  note(`work dir ${work}`);
  const appPort = await startNginx();
  const sink = await spawnDeno("bench/upload_sink.ts", [], `${work}/sink.log`);
  children.push(sink);
  const sinkPort = Number(new URL(sink.line).port);

  const server = await spawnDeno(
    "server.ts",
    [
      ...LOCAL_SERVER_ARGS,
      ...SERVER_ARGS,
    ],
    `${work}/server.log`,
  );
  children.push(server);
  const publicPort = Number(new URL(server.line).port);
  const tunnelArgs = (port: number, sub: string): string[] => [
    String(port),
    "--server",
    `http://127.0.0.1:${publicPort}`,
    "--subdomain",
    sub,
    "--local-host",
    "127.0.0.1",
    "--log-level",
    "warn",
    ...CLIENT_ARGS,
  ];
  const client = await spawnDeno("client.ts", tunnelArgs(appPort, "bench"), `${work}/client.log`);
  children.push(client);
  const sinkClient = await spawnDeno(
    "client.ts",
    tunnelArgs(sinkPort, "sink"),
    `${work}/sink-client.log`,
  );
  children.push(sinkClient);
  // The same app through a client with --raw: what HTTP awareness costs.
  const rawClient = await spawnDeno(
    "client.ts",
    [...tunnelArgs(appPort, "raw"), "--raw"],
    `${work}/raw-client.log`,
  );
  children.push(rawClient);
  // The same app through a client without its inspector (on in the others): what it costs.
  const plainClient = await spawnDeno(
    "client.ts",
    [...tunnelArgs(appPort, "plain"), "--no-inspect"],
    `${work}/plain-client.log`,
  );
  children.push(plainClient);
  await sleep(1000);
  const idle = { server: rssKiB(server.pid), client: rssKiB(client.pid) };
  const cpu0 = { server: cpuSeconds(server.pid), client: cpuSeconds(client.pid) };

  const direct: Target = { name: "direct", port: appPort, host: `127.0.0.1:${appPort}` };
  const tunnel: Target = {
    name: "gotunnel",
    port: publicPort,
    host: `bench.localhost:${publicPort}`,
  };
  const rawTunnel: Target = { name: "raw", port: publicPort, host: `raw.localhost:${publicPort}` };
  const plainTunnel: Target = {
    name: "no-inspect",
    port: publicPort,
    host: `plain.localhost:${publicPort}`,
  };
  const sinkDirect: Target = { name: "direct", port: sinkPort, host: `127.0.0.1:${sinkPort}` };
  const sinkTunnel: Target = {
    name: "gotunnel",
    port: publicPort,
    host: `sink.localhost:${publicPort}`,
  };

  // Correctness first: the tunnel must serve the same bytes.
  const check = await run("curl", [
    "-s",
    "-H",
    `Host: ${tunnel.host}`,
    `http://127.0.0.1:${publicPort}/64k.bin`,
  ]);
  const want = await Deno.readTextFile(`${work}/www/64k.bin`).catch(() => "");
  if (check.length !== want.length) throw new Error("the tunnel did not serve 64k.bin intact");

  const rows: [string, number, number, string][] = [];
  let awareVsRaw: string | undefined;
  let inspectorCost: string | undefined;
  const ratio = (t: number, d: number): string => fmt(t / d, 2);
  const wrkRow = async (
    label: string,
    path: string,
    extra: string[] = [],
    alsoRaw = false,
  ): Promise<void> => {
    const d: WrkResult[] = [];
    const t: WrkResult[] = [];
    const r: WrkResult[] = [];
    const p: WrkResult[] = [];
    for (let i = 0; i < RUNS; i++) { // interleaved, so drift hits all alike
      note(`${label}: run ${i + 1}/${RUNS}`);
      d.push(await wrk(direct, path, extra));
      t.push(await wrk(tunnel, path, extra));
      if (alsoRaw) r.push(await wrk(rawTunnel, path, extra));
      if (alsoRaw) p.push(await wrk(plainTunnel, path, extra));
    }
    const errors = [...d, ...t, ...r, ...p].reduce((s, x) => s + x.errors, 0);
    if (errors > 0) note(`${label}: ${errors} errors or non-2xx answers`);
    const dr = median(d.map((x) => x.rps));
    const tr = median(t.map((x) => x.rps));
    rows.push([`${label} req/s`, dr, tr, ratio(tr, dr)]);
    if (alsoRaw) {
      const pr = median(p.map((x) => x.rps));
      rows.push([`${label} req/s, client --no-inspect`, dr, pr, ratio(pr, dr)]);
      inspectorCost = `${label}: the client with its inspector (default) makes ${ratio(tr, pr)}× ` +
        `the req/s of the same client with --no-inspect (${fmt(tr, 0)} vs ${fmt(pr, 0)}).`;
      const rr = median(r.map((x) => x.rps));
      rows.push([`${label} req/s, client --raw`, dr, rr, ratio(rr, dr)]);
      awareVsRaw = `${label}: the HTTP-aware client (default) makes ${ratio(tr, rr)}× ` +
        `the req/s of the same client with --raw (${fmt(tr, 0)} vs ${fmt(rr, 0)}).`;
    }
    if (extra.length === 0 && path === "/1k.bin") {
      const d50 = median(d.map((r) => r.p50));
      const t50 = median(t.map((r) => r.p50));
      const d99 = median(d.map((r) => r.p99));
      const t99 = median(t.map((r) => r.p99));
      rows.push([`${label} p50 latency (ms)`, d50, t50, ratio(t50, d50)]);
      rows.push([`${label} p99 latency (ms)`, d99, t99, ratio(t99, d99)]);
    }
  };
  if (ONLY.includes("keepalive")) await wrkRow("1 KiB keep-alive", "/1k.bin", [], true);
  if (ONLY.includes("close")) {
    await wrkRow("1 KiB Connection: close", "/1k.bin", ["-H", "Connection: close"]);
  }
  if (ONLY.includes("64k")) await wrkRow("64 KiB keep-alive", "/64k.bin");

  const bulk = async (label: string, targets: [Target, Target], args: string[], field: string) => {
    const d: number[] = [];
    const t: number[] = [];
    for (let i = 0; i < BULK_REPS; i++) {
      note(`${label}: run ${i + 1}/${BULK_REPS}`);
      for (const [target, into] of [[targets[0], d], [targets[1], t]] as const) {
        into.push(
          await curlSpeed(target, [
            ...args,
            `http://127.0.0.1:${target.port}${args.length ? "/upload" : "/bulk.bin"}`,
          ], field),
        );
      }
    }
    rows.push([`${label} MB/s`, median(d), median(t), ratio(median(t), median(d))]);
  };
  if (ONLY.includes("download")) {
    await bulk(`${BULK_MB} MiB download`, [direct, tunnel], [], "speed_download");
  }
  if (ONLY.includes("upload")) {
    await bulk(`${BULK_MB} MiB upload`, [sinkDirect, sinkTunnel], [
      "--data-binary",
      `@${work}/www/bulk.bin`,
    ], "speed_upload");
  }

  const loaded = { server: rssKiB(server.pid), client: rssKiB(client.pid) };
  const cpu = {
    server: cpuSeconds(server.pid) - cpu0.server,
    client: cpuSeconds(client.pid) - cpu0.client,
  };
  await sleep(5000);
  const settled = { server: rssKiB(server.pid), client: rssKiB(client.pid) };

  const lines = [
    `Gotunnel ${
      JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url))).version
    }, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores; ` +
    `wrk -t${THREADS} -c${CONNS} -d${DURATION}s, median of ${RUNS} interleaved runs; ` +
    `bulk: curl, median of ${BULK_REPS}; app: nginx (uploads: a Deno sink); all on 127.0.0.1`,
    "",
    "| measure | direct | gotunnel | ratio |",
    "|---|---:|---:|---:|",
    ...rows.map(([label, d, t, r]) => {
      const digits = label.includes("latency") ? 2 : 0;
      return `| ${label} | ${fmt(d, digits)} | ${fmt(t, digits)} | ${r}× |`;
    }),
    ...(awareVsRaw ? ["", awareVsRaw] : []),
    ...(inspectorCost ? ["", inspectorCost] : []),
    "",
    "| process | idle RSS MiB | after load | 5 s later | CPU s during load | start-up ms |",
    "|---|---:|---:|---:|---:|---:|",
    `| server | ${mib(idle.server)} | ${mib(loaded.server)} | ${mib(settled.server)} | ${
      cpu.server.toFixed(1)
    } | ${server.readyMs.toFixed(0)} |`,
    `| client | ${mib(idle.client)} | ${mib(loaded.client)} | ${mib(settled.client)} | ${
      cpu.client.toFixed(1)
    } | ${client.readyMs.toFixed(0)} |`,
  ];
  // deno-lint-ignore no-console -- the report is the output
  console.log(lines.join("\n"));
} finally {
  for (const child of children.reverse()) await child.stop();
  await Deno.remove(work, { recursive: true });
}
