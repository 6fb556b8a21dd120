// `deno task soak` (not in CI): many connect/relay/close cycles and tunnel
// connect/disconnect cycles in one process, then open sockets and RSS against
// the baseline. CYCLES (100,000) and TUNNEL_CYCLES (1,000) set the counts.

import { openTunnel, startServer } from "../mod.ts";

const CYCLES = Number(Deno.env.get("CYCLES") ?? 100_000);
const TUNNEL_CYCLES = Number(Deno.env.get("TUNNEL_CYCLES") ?? 1_000);
const CONCURRENCY = 20;
const HOST = "127.0.0.1";

const fds = (): number => [...Deno.readDirSync("/proc/self/fd")].length;
const rssMiB = (): string => (Deno.memoryUsage().rss / 1048576).toFixed(1);
// deno-lint-ignore no-console -- the report is the output
const say = (line: string): void => console.log(line);

const app = Deno.serve({ port: 0, hostname: HOST, onListen() {} }, () => new Response("ok"));
const limits = { maxTunnelsPerIp: 0, maxSessionsPerIpPerMinute: 0, maxSniffingPerIp: 0 };
const server = await startServer({ port: 0, hostname: HOST, limits });
const tunnel = await openTunnel({
  port: app.addr.port,
  localHost: HOST,
  server: `http://${HOST}:${server.addr.port}`,
  subdomain: "soak",
  leaseFile: false,
});
const request = new TextEncoder().encode(
  "GET / HTTP/1.1\r\nHost: soak.localhost\r\nConnection: close\r\n\r\n",
);

async function cycle(): Promise<boolean> {
  const conn = await Deno.connect({ hostname: HOST, port: server.addr.port });
  try {
    await conn.write(request);
    const buffer = new Uint8Array(4096);
    let text = "";
    for (let n; (n = await conn.read(buffer)) !== null;) {
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return text.startsWith("HTTP/1.1 200") && text.endsWith("ok");
  } finally {
    conn.close();
  }
}

/** Runs `count` cycles, CONCURRENCY at a time; returns how many failed. */
async function cycles(count: number, report: boolean): Promise<number> {
  let done = 0;
  let failed = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (done < count) {
      const n = ++done;
      if (!await cycle().catch(() => false)) failed++;
      if (report && n % 20_000 === 0) say(`  ${n} cycles, RSS ${rssMiB()} MiB, ${fds()} fds`);
    }
  }));
  return failed;
}

// Warm up at the same concurrency first: the tunnel's pool grows to it, and the
// baseline is the steady state that the soak must come back to.
await cycles(2_000, false);
await new Promise((r) => setTimeout(r, 1000));
const baseline = { fds: fds(), rss: rssMiB() };
say(`baseline after warm-up: ${baseline.fds} open fds, RSS ${baseline.rss} MiB`);

const started = performance.now();
const failed = await cycles(CYCLES, true);
const seconds = (performance.now() - started) / 1000;
say(
  `${CYCLES} connect/relay/close cycles in ${seconds.toFixed(1)} s (${
    (CYCLES / seconds).toFixed(0)
  }/s), ${failed} failed`,
);

for (let i = 0; i < TUNNEL_CYCLES; i++) {
  const t = await openTunnel({
    port: app.addr.port,
    localHost: HOST,
    server: `http://${HOST}:${server.addr.port}`,
    subdomain: `cycle${i % 10}`,
    pool: 2,
    leaseFile: false,
  });
  await t.close();
}
say(`${TUNNEL_CYCLES} tunnel connect/disconnect cycles; tunnels left: ${server.tunnelCount - 1}`);

await new Promise((r) => setTimeout(r, 3000));
say(
  `after: ${fds()} open fds (baseline ${baseline.fds}), RSS ${rssMiB()} MiB (baseline ${baseline.rss})`,
);
await tunnel.close();
await server.close();
await app.shutdown();
Deno.exit(failed === 0 && server.tunnelCount === 0 ? 0 : 1);
