// Benchmark loads: an nginx app serving fixed files, wrk for request rates and
// latency, curl for bulk transfers, each result parsed from the tool's output.

import { type Child, freePort, run, spawnCommand, waitTcp } from "./procs.ts";

/** Where a load goes: a port on 127.0.0.1 and the Host header that routes it. */
export interface Target {
  /** A label for progress lines. */
  name: string;
  /** The port on 127.0.0.1. */
  port: number;
  /** The Host header sent. */
  host: string;
}

/** One wrk run: requests a second, latency percentiles, and every kind of error summed. */
export interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  /** Connect, read, write and timeout errors plus non-2xx/3xx answers. */
  errors: number;
}

/** How wrk is run. */
export interface WrkSettings {
  threads: number;
  conns: number;
  seconds: number;
}

/** Writes `bytes` of incompressible data (one random 64 KiB block repeated) to `path`. */
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

/**
 * Starts nginx (one worker) in `work`, serving /1k.bin, /64k.bin and
 * /bulk.bin (`bulkMiB`) from `work/www`; returns its port and process.
 */
export async function startNginx(work: string, bulkMiB: number): Promise<[number, Child]> {
  const port = freePort();
  await Deno.mkdir(`${work}/www`);
  await Deno.mkdir(`${work}/tmp`);
  await writeRandomFile(`${work}/www/1k.bin`, 1024);
  await writeRandomFile(`${work}/www/64k.bin`, 65536);
  await writeRandomFile(`${work}/www/bulk.bin`, bulkMiB * 1024 * 1024);
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
  const nginx = await spawnCommand(
    "nginx",
    ["-p", work, "-e", `${work}/nginx.err`, "-c", `${work}/nginx.conf`],
    `${work}/nginx.log`,
    false,
  );
  await waitTcp(port);
  return [port, nginx];
}

const toMs = (value: string, unit: string): number =>
  Number(value) * ({ us: 0.001, ms: 1, s: 1000 }[unit] ?? 1);

/** Runs wrk against `target` + `path` and parses its report. */
export async function wrk(
  target: Target,
  path: string,
  settings: WrkSettings,
  extra: string[] = [],
): Promise<WrkResult> {
  const out = await run("wrk", [
    `-t${settings.threads}`,
    `-c${settings.conns}`,
    `-d${settings.seconds}s`,
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

/**
 * One curl transfer to `target`: a download of /bulk.bin, or with `upload`
 * (a file path) a POST of it to /upload; returns MB/s (curl's `speed_*`).
 */
export async function curlSpeed(target: Target, upload?: string): Promise<number> {
  const field = upload ? "speed_upload" : "speed_download";
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
    ...(upload ? ["--data-binary", `@${upload}`] : []),
    `http://127.0.0.1:${target.port}${upload ? "/upload" : "/bulk.bin"}`,
  ]);
  const [code, speed] = out.trim().split(" ");
  if (code !== "200") throw new Error(`curl got HTTP ${code} from ${target.name}`);
  return Number(speed) / 1e6;
}
