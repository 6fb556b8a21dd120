// `deno task soak` (not in CI): the server and clients as real processes under
// normal traffic next to a hostile mix, for DURATION seconds; every WINDOW seconds
// a line with the processes' RSS and descriptors and the normal traffic's
// latency. Normal traffic comes from 127.0.0.1 and the hostile mix from ::1, so
// that each has its own per-IP limits, as two hosts would.
//
// Hostile mix (HOSTILE=0 turns it off): silent connections and half ClientHellos
// to the TLS port, POSTs abandoned while they wait for a tunnel with no free
// connection, and a tunnel whose idle connections a NAT drops (through a relay
// that silences them) while it is visited.
//
// Normal traffic mixes 1-line answers (keep-alive and Connection: close), 64 KiB
// downloads and 256 KiB uploads; the clients' inspectors are on (their default).
// At the end, a memory verdict: after the warm-up (the first tenth, at least two
// windows), the RSS trend of each process in MiB per 10 minutes, and its range.
//
// DURATION (s, default 120), WINDOW (s, 10), HOSTILE (1), PACE (ms between one
// loop's requests, 0: as fast as they go; a long memory soak need not load both cores).

import { fdCount, LOCAL_SERVER_ARGS, rssKiB, sleep, spawnDeno } from "../bench/procs.ts";
import { concatBytes } from "../lib/bytes.ts";
import { encodeFrame, encodeUpgradeRequest, PROTOCOL_VERSION } from "../lib/protocol.ts";

const DURATION_S = Number(Deno.env.get("DURATION") ?? 120);
const WINDOW_S = Number(Deno.env.get("WINDOW") ?? 10);
const HOSTILE = Deno.env.get("HOSTILE") !== "0";
const PACE_MS = Number(Deno.env.get("PACE") ?? 0);
/** A NAT drops connections idle this long (past the server's --accept-after-quiet of 2 s). */
const NAT_IDLE_MS = 3_000;
const BIG = new Uint8Array(64 * 1024).fill(98);
const UPLOAD = new Uint8Array(256 * 1024).fill(117);
const V4 = "127.0.0.1";
const V6 = "::1";
// deno-lint-ignore no-console -- the report is the output
const say = (line: string): void => console.log(line);
const encoder = new TextEncoder();
const fixture = (name: string): string =>
  new URL(`../tests/fixtures/${name}`, import.meta.url).pathname;

const work = await Deno.makeTempDir({ prefix: "gotunnel-soak-" });
const app = Deno.serve({ port: 0, hostname: V4, onListen() {} }, async (req) => {
  if (req.method === "POST") await req.arrayBuffer();
  return new Response(new URL(req.url).pathname === "/big" ? BIG : "ok\n");
});
const server = await spawnDeno("server.ts", [
  ...LOCAL_SERVER_ARGS.filter((a) => !a.startsWith("--hostname")),
  "--hostname=::",
  "--log-level=info",
  "--tls-port=0",
  `--tls-cert=${fixture("localhost.pem")}`,
  `--tls-key=${fixture("localhost.key")}`,
  "--sniff-timeout=2s",
  "--proxy-ping=2s",
  "--accept-timeout=1s",
  "--proxy-wait=3s",
  "--max-tunnels-per-ip=0",
  "--max-sessions-per-ip-per-minute=0",
], `${work}/server.log`);
// The URL line names the TLS port (URLs are https://); the log names the plain one.
const tlsPort = Number(new URL(server.line).port);
const port = Number(
  /Listening url=\S+ addr=\S+:(\d+)/.exec(await waitForLog(`${work}/server.log`))?.[1],
);
const clientArgs = (sub: string, via = port) => [
  `${V4}:${app.addr.port}`,
  "--server",
  `http://${V4}:${via}`,
  "--subdomain",
  sub,
  "--quiet",
  "--log-level=warn",
  "--inspect=127.0.0.1:0",
];
const client = await spawnDeno("client.ts", clientArgs("soak"), `${work}/client.log`);
await sleep(1_000);
const idle = { server: rssKiB(server.pid), fds: fdCount(server.pid), client: rssKiB(client.pid) };

/** Waits until the server's log has its HTTPS line; returns the log. */
async function waitForLog(file: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const text = await Deno.readTextFile(file).catch(() => "");
    if (text.includes("Listening for HTTPS")) return text;
    await sleep(50);
  }
  throw new Error(`no HTTPS line in ${file}`);
}

// ---- the hostile side ---------------------------------------------------------

/**
 * A relay to the server whose idle connections (no byte either way for
 * NAT_IDLE_MS), but the first (control), go silent on `drop()`, as a NAT drops
 * idle mappings. (A connection used within the server's --accept-after-quiet
 * window is trusted to be alive: a path that dies under a busy one is a
 * different fault, which the control connection's heartbeat catches.)
 */
function droppingRelay(): { port: number; drop(): void; close(): void } {
  const listener = Deno.listen({ hostname: V4, port: 0 });
  const pairs: [Deno.Conn, Deno.Conn, { silent: boolean; usedAt: number }][] = [];
  const pump = async (
    from: Deno.Conn,
    to: Deno.Conn,
    state: { silent: boolean; usedAt: number },
  ) => {
    const buffer = new Uint8Array(65536);
    try {
      for (let n; (n = await from.read(buffer)) !== null;) {
        if (!state.silent) {
          state.usedAt = Date.now();
          for (let at = 0; at < n;) at += await to.write(buffer.subarray(at, n));
        }
      }
    } catch { /* closed */ }
    try {
      from.close();
      to.close();
    } catch { /* closed */ }
  };
  (async () => {
    for await (const conn of listener) {
      const up = await Deno.connect({ hostname: V4, port }).catch(() => undefined);
      if (!up) {
        conn.close();
        continue;
      }
      const state = { silent: false, usedAt: Date.now() };
      pairs.push([conn, up, state]);
      void pump(conn, up, state);
      void pump(up, conn, state);
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    drop() {
      const now = Date.now();
      for (const [, , state] of pairs.slice(1)) {
        if (now - state.usedAt >= NAT_IDLE_MS) state.silent = true;
      }
    },
    close() {
      listener.close();
      for (const [a, b] of pairs) {
        try {
          a.close();
          b.close();
        } catch { /* closed */ }
      }
    },
  };
}

const stop = new AbortController();
const tally = {
  silentClosed: 0,
  halfClosed: 0,
  abandoned: 0,
  natOk: 0,
  natFailed: 0,
};

/** Every `ms`, runs `job` (not awaited), until the soak ends. */
async function every(ms: number, job: () => Promise<void>): Promise<void> {
  while (!stop.signal.aborted) {
    job().catch(() => {});
    await sleep(ms);
  }
}

/** Opens a connection from ::1, sends `bytes`, and holds it until the server closes it. */
async function holdUntilClosed(to: number, bytes: Uint8Array, count: keyof typeof tally) {
  const conn = await Deno.connect({ hostname: V6, port: to });
  try {
    if (bytes.length > 0) await conn.write(bytes);
    while ((await conn.read(new Uint8Array(1024))) !== null);
    tally[count]++;
  } catch {
    tally[count]++;
  } finally {
    conn.close();
  }
}

/** One request from `host` to the server; resolves with its status line, or "failed". */
async function request(host: string, hostname: string, body = ""): Promise<string> {
  const conn = await Deno.connect({ hostname, port });
  try {
    const head = body
      ? `POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`
      : `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
    await conn.write(encoder.encode(head + body));
    let text = "";
    const buffer = new Uint8Array(4096);
    for (let n; (n = await conn.read(buffer)) !== null;) {
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return text.split("\r\n")[0] ?? "failed";
  } catch {
    return "failed";
  } finally {
    conn.close();
  }
}

const hostile: Promise<void>[] = [];
let nat: Awaited<ReturnType<typeof spawnDeno>> | undefined;
let relay: ReturnType<typeof droppingRelay> | undefined;
let stuck: Deno.Conn | undefined;
if (HOSTILE) {
  const hello = Deno.readFileSync(fixture("chromium-clienthello.bin"));
  // A tunnel that never has a free connection: POSTs to it wait, and are abandoned.
  stuck = await Deno.connect({ hostname: V6, port });
  await stuck.write(concatBytes(
    encodeUpgradeRequest("localhost"),
    encodeFrame({ type: "hello", version: PROTOCOL_VERSION }),
    encodeFrame({ type: "claim", tunnels: [{ ref: "stuck", kind: "http", subdomain: "stuck" }] }),
  ));
  relay = droppingRelay();
  nat = await spawnDeno("client.ts", clientArgs("nat", relay.port), `${work}/nat-client.log`);
  const natRelay = relay;
  hostile.push(
    every(100, () => holdUntilClosed(tlsPort, new Uint8Array(), "silentClosed")),
    every(100, () => holdUntilClosed(tlsPort, hello.subarray(0, 200), "halfClosed")),
    every(100, async () => {
      const conn = await Deno.connect({ hostname: V6, port });
      await conn.write(encoder.encode(
        "POST /pay HTTP/1.1\r\nHost: stuck.localhost\r\nContent-Length: 5\r\n\r\nhello",
      ));
      await sleep(200);
      conn.close();
      tally.abandoned++;
    }),
    every(500, async () => {
      const status = await request("nat.localhost", V6);
      if (status.startsWith("HTTP/1.1 200")) tally.natOk++;
      else tally.natFailed++;
    }),
    every(10_000, () => Promise.resolve(natRelay.drop())),
  );
}

// ---- normal traffic, measured -------------------------------------------------

let latencies: number[] = [];
let errors = 0;
async function normalLoop(keepAlive: boolean): Promise<void> {
  const head = encoder.encode(
    `GET / HTTP/1.1\r\nHost: soak.localhost\r\n${keepAlive ? "" : "Connection: close\r\n"}\r\n`,
  );
  const buffer = new Uint8Array(4096);
  let conn: Deno.Conn | undefined;
  while (!stop.signal.aborted) {
    const started = performance.now();
    try {
      conn ??= await Deno.connect({ hostname: V4, port });
      await conn.write(head);
      let text = "";
      while (!text.endsWith("ok\n")) {
        const n = await conn.read(buffer);
        if (n === null) throw new Error("closed");
        text += new TextDecoder().decode(buffer.subarray(0, n));
      }
      if (!text.startsWith("HTTP/1.1 200")) errors++;
      latencies.push(performance.now() - started);
      if (!keepAlive) {
        conn.close();
        conn = undefined;
      }
      if (PACE_MS > 0) await sleep(PACE_MS);
    } catch {
      errors++;
      conn?.close();
      conn = undefined;
      await sleep(50);
    }
  }
  conn?.close();
}
/** Reads one answer with a Content-Length body from `conn`; its status line. */
async function readAnswer(conn: Deno.Conn, buffer: Uint8Array): Promise<string> {
  let seen: Uint8Array = new Uint8Array(0);
  for (;;) {
    const text = new TextDecoder().decode(seen);
    const end = text.indexOf("\r\n\r\n");
    const length = Number(/content-length: *(\d+)/i.exec(text)?.[1] ?? -1);
    if (end >= 0 && length >= 0 && seen.length >= end + 4 + length) return text.split("\r\n")[0]!;
    const n = await conn.read(buffer);
    if (n === null) throw new Error("closed");
    seen = concatBytes(seen, buffer.subarray(0, n));
  }
}

/** 64 KiB downloads and 256 KiB uploads in turn, on one keep-alive connection. */
async function bulkLoop(): Promise<void> {
  const get = encoder.encode("GET /big HTTP/1.1\r\nHost: soak.localhost\r\n\r\n");
  const post = concatBytes(
    encoder.encode(
      `POST /up HTTP/1.1\r\nHost: soak.localhost\r\nContent-Length: ${UPLOAD.length}\r\n\r\n`,
    ),
    UPLOAD,
  );
  const buffer = new Uint8Array(65536);
  let conn: Deno.Conn | undefined;
  for (let i = 0; !stop.signal.aborted; i++) {
    try {
      conn ??= await Deno.connect({ hostname: V4, port });
      const bytes = i % 2 === 0 ? get : post;
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
      if (!(await readAnswer(conn, buffer)).startsWith("HTTP/1.1 200")) errors++;
    } catch {
      errors++;
      conn?.close();
      conn = undefined;
      await sleep(50);
    }
    await sleep(Math.max(PACE_MS, 1));
  }
  conn?.close();
}
const normal = [
  ...Array.from({ length: 6 }, () => normalLoop(true)),
  ...Array.from({ length: 2 }, () => normalLoop(false)),
  ...Array.from({ length: 2 }, () => bulkLoop()),
];

const quantile = (xs: number[], q: number): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
};
const mib = (kib: number): string => (kib / 1024).toFixed(1);
const rows: { server: number; fds: number; client: number }[] = [];
say(
  `soak: ${DURATION_S} s, windows of ${WINDOW_S} s, hostile mix ${HOSTILE ? "on" : "off"}; ` +
    `logs in ${work}`,
);
say(
  "time | server RSS MiB | server fds | client RSS MiB | req/s | p50 ms | p99 ms | errors | " +
    "hostile: silent/half closed, abandoned, NAT ok/failed",
);
for (let t = WINDOW_S; t <= DURATION_S; t += WINDOW_S) {
  await sleep(WINDOW_S * 1000);
  const row = { server: rssKiB(server.pid), fds: fdCount(server.pid), client: rssKiB(client.pid) };
  rows.push(row);
  say(
    `${String(t).padStart(4)} s | ${mib(row.server)} | ${row.fds} | ${mib(row.client)} | ` +
      `${(latencies.length / WINDOW_S).toFixed(0)} | ${quantile(latencies, 0.5).toFixed(2)} | ` +
      `${quantile(latencies, 0.99).toFixed(2)} | ${errors} | ` +
      `${tally.silentClosed}/${tally.halfClosed}, ${tally.abandoned}, ${tally.natOk}/${tally.natFailed}`,
  );
  latencies = [];
  errors = 0;
}
stop.abort();
await Promise.all([...normal, ...hostile]);
await sleep(3_000); // what the hostile mix left behind is closed by its deadlines
const after = { server: rssKiB(server.pid), fds: fdCount(server.pid) };
const warm = rows[Math.min(1, rows.length - 1)]!;
say(
  `after the load, 3 s later: server ${mib(after.server)} MiB and ${after.fds} fds ` +
    `(idle before it: ${mib(idle.server)} MiB, ${idle.fds} fds; at ${WINDOW_S * 2} s: ` +
    `${mib(warm.server)} MiB, ${warm.fds} fds)`,
);
// The memory verdict: a least-squares trend over the windows after the warm-up.
const settled = rows.slice(Math.max(2, Math.ceil(rows.length / 10)));
if (settled.length >= 2) {
  for (const name of ["server", "client"] as const) {
    const ys = settled.map((r) => r[name] / 1024);
    const xs = settled.map((_, i) => i * WINDOW_S);
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
    const my = ys.reduce((a, b) => a + b, 0) / ys.length;
    const slope = xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0) /
      xs.reduce((s, x) => s + (x - mx) ** 2, 0);
    say(
      `${name} RSS after the warm-up: ${Math.min(...ys).toFixed(1)}-${
        Math.max(...ys).toFixed(1)
      } ` +
        `MiB, trend ${(slope * 600).toFixed(2)} MiB per 10 minutes`,
    );
  }
}
stuck?.close();
relay?.close();
await nat?.stop();
await client.stop();
await server.stop();
await app.shutdown();
Deno.exit(0);
