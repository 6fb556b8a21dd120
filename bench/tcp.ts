// deno-lint-ignore-file no-console -- a benchmark reports on stdout
// `deno run -A bench/tcp.ts [--mib N] [--runs N]`: iperf-style bulk transfers through
// a TCP tunnel (server.ts --tcp-ports and client.ts --tcp, real processes) against the
// same transfers straight to the app, one direction at a time, on 127.0.0.1. The app
// is a process of its own (this script with --app), as an iperf server would be.
// Prints markdown rows `| measure | direct | gotunnel | ratio |` (MB/s, median of the runs).

import { LOCAL_SERVER_ARGS, spawnDeno } from "./procs.ts";

const args = Deno.args;
const flag = (name: string, fallback: number): number => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
/** MiB moved per transfer; runs per measure (the median is kept). */
const MIB = flag("mib", 256);
const RUNS = flag("runs", 3);
const BYTES = MIB * 1024 * 1024;
/** Each transfer must end within this (the bench never hangs). */
const TRANSFER_TIMEOUT_MS = 60_000;
const HOST = "127.0.0.1";
const CHUNK = new Uint8Array(256 * 1024).fill(0x5a);

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/**
 * The app (run with --app, in a process of its own): the first byte says `U`
 * (read to the end, answer "k") or `D` (send BYTES, close). Prints its port.
 */
function serveApp(): void {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(256 * 1024);
        try {
          const n = await conn.read(buffer);
          if (n === null) return;
          if (buffer[0] === 0x55) { // U: sink
            while (await conn.read(buffer) !== null);
            await writeAll(conn, new Uint8Array([0x6b]));
          } else { // D: source
            for (let sent = 0; sent < BYTES; sent += CHUNK.length) {
              await writeAll(conn, CHUNK.subarray(0, Math.min(CHUNK.length, BYTES - sent)));
            }
          }
          await conn.closeWrite();
        } catch { /* the bench's connection went away */ }
        conn.close();
      })();
    }
  })().catch(() => {});
  console.log(`http://${HOST}:${listener.addr.port}`);
}

/** One transfer of BYTES to (`U`) or from (`D`) the app at `port`; MB/s. */
async function transfer(port: number, mode: "U" | "D"): Promise<number> {
  const conn = await Deno.connect({ hostname: HOST, port });
  conn.setNoDelay(true);
  const timer = setTimeout(() => conn.close(), TRANSFER_TIMEOUT_MS);
  const started = performance.now();
  try {
    await writeAll(conn, new TextEncoder().encode(mode));
    const buffer = new Uint8Array(256 * 1024);
    if (mode === "U") {
      for (let sent = 0; sent < BYTES; sent += CHUNK.length) {
        await writeAll(conn, CHUNK.subarray(0, Math.min(CHUNK.length, BYTES - sent)));
      }
      await conn.closeWrite();
      if (await conn.read(buffer) !== 1) throw new Error("the app did not confirm the upload");
    } else {
      let got = 0;
      for (let n; (n = await conn.read(buffer)) !== null;) got += n;
      if (got !== BYTES) throw new Error(`downloaded ${got} of ${BYTES} bytes`);
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  return BYTES / 1e6 / ((performance.now() - started) / 1000);
}

const median = (values: number[]): number => values.sort((a, b) => a - b)[values.length >> 1]!;

/** Four consecutive free ports of 127.0.0.1 (each bound and released). */
function freePorts(): string {
  for (let attempt = 0; attempt < 20; attempt++) {
    const from = 20_000 + Math.floor(Math.random() * 40_000);
    const bound: Deno.Listener[] = [];
    try {
      for (let p = from; p < from + 4; p++) bound.push(Deno.listen({ hostname: HOST, port: p }));
      return `${from}-${from + 3}`;
    } catch {
      /* taken: elsewhere */
    } finally {
      bound.forEach((l) => l.close());
    }
  }
  throw new Error("Cannot find 4 free ports in a row");
}

if (args.includes("--app")) {
  serveApp();
} else {
  await bench();
}

async function bench(): Promise<void> {
  const work = await Deno.makeTempDir({ prefix: "gotunnel-bench-tcp-" });
  const appProcess = await spawnDeno(
    "bench/tcp.ts",
    ["--app", "--mib", String(MIB)],
    `${work}/app.log`,
  );
  const app = { port: Number(new URL(appProcess.line).port) };
  const server = await spawnDeno(
    "server.ts",
    [...LOCAL_SERVER_ARGS, "--tcp-ports", freePorts()],
    `${work}/server.log`,
  );
  const client = await spawnDeno("client.ts", [
    `${HOST}:${app.port}`,
    "--tcp",
    "--server",
    `http://${HOST}:${new URL(server.line).port}`,
    "--log-level=warn",
  ], `${work}/client.log`);
  try {
    const tunnelPort = Number(new URL(client.line.replace(/^tcp:/, "http:")).port);
    const rows: string[] = [];
    for (const [label, mode] of [["upload", "U"], ["download", "D"]] as const) {
      const direct: number[] = [];
      const tunnel: number[] = [];
      for (let run = 0; run < RUNS; run++) { // interleaved, so drift hits both alike
        direct.push(await transfer(app.port, mode));
        tunnel.push(await transfer(tunnelPort, mode));
      }
      const [d, t] = [median(direct), median(tunnel)];
      rows.push(
        `| TCP tunnel bulk ${label} MB/s (${MIB} MiB) | ${d.toFixed(0)} | ${t.toFixed(0)} | ${
          (t / d).toFixed(2)
        }× |`,
      );
    }
    console.log(
      `TCP tunnel (server.ts --tcp-ports, client.ts --tcp), ${MIB} MiB one way, median of ${RUNS}; ` +
        `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, 127.0.0.1`,
    );
    console.log("");
    console.log("| measure | direct | gotunnel | ratio |");
    console.log("|---|---:|---:|---:|");
    for (const row of rows) console.log(row);
  } finally {
    await client.stop();
    await server.stop();
    await appProcess.stop();
    await Deno.remove(work, { recursive: true });
  }
}
