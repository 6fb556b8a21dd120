// `deno task bench:scale`: server memory per idle tunnel and per idle relayed connection.
//
// Phase 1 opens TUNNELS tunnels (default pool each) from one process and reads the
// server's RSS, then again once the tunnels are quiet (no visitor for POOL_QUIET_MS,
// 5 s here instead of the default 60 s: each pool is down to 2 idle connections); phase 2 holds CONNS visitor connections open through one tunnel to
// an app that never answers. Each phase is undone and the RSS read again.
// All on 127.0.0.1. The server holds two sockets per relayed connection (visitor
// and proxy), so CONNS is capped below half the open-file limit (`ulimit -n`).

import { type Child, fdCount, LOCAL_SERVER_ARGS, rssKiB, sleep, spawnDeno } from "./procs.ts";

const TUNNELS = Number(Deno.env.get("TUNNELS") ?? 1000);
const limit = Number(
  new TextDecoder().decode(
    (await new Deno.Command("sh", { args: ["-c", "ulimit -n"], stdout: "piped" }).output()).stdout,
  ).trim(),
) || 1024;
const CONNS = Math.min(Number(Deno.env.get("CONNS") ?? 10_000), Math.floor((limit - 500) / 2));
const SETTLE_MS = 3000;
const QUIET_MS = 5000;

// deno-lint-ignore no-console -- progress for the person running the benchmark
const note = (s: string): void => console.error(`[scale] ${s}`);

const work = await Deno.makeTempDir({ prefix: "gotunnel-scale-" });
const children: Child[] = [];
const start = async (script: string, args: string[], name: string): Promise<Child> => {
  const child = await spawnDeno(script, args, `${work}/${name}.log`);
  children.push(child);
  return child;
};
const stop = async (child: Child): Promise<void> => {
  children.splice(children.indexOf(child), 1);
  await child.stop();
};
const mib = (kib: number): string => (kib / 1024).toFixed(1);

try {
  // Every tunnel and visitor comes from 127.0.0.1: lift the per-IP and per-tunnel limits.
  const server = await start("server.ts", [
    ...LOCAL_SERVER_ARGS,
    "--max-tunnels-per-ip",
    "0",
    "--max-sessions-per-ip-per-minute",
    "0",
    "--max-streams-per-tunnel",
    "0",
  ], "server");
  const port = new URL(server.line).port;
  await sleep(SETTLE_MS);
  const base = rssKiB(server.pid);

  note(`opening ${TUNNELS} tunnels`);
  const opened = performance.now();
  Deno.env.set("POOL_QUIET_MS", String(QUIET_MS));
  const tunnels = await start(
    "bench/scale_worker.ts",
    ["tunnels", port, String(TUNNELS)],
    "tunnels",
  );
  const tunnelsSeconds = (performance.now() - opened) / 1000;
  await sleep(SETTLE_MS);
  const withTunnels = rssKiB(server.pid);
  const tunnelFds = fdCount(server.pid);
  await sleep(QUIET_MS);
  const quiet = rssKiB(server.pid);
  const quietFds = fdCount(server.pid);
  await stop(tunnels);
  await sleep(SETTLE_MS);
  const afterTunnels = rssKiB(server.pid);

  note(`holding ${CONNS} idle relayed connections (open-file limit ${limit})`);
  const hold = await start("bench/scale_worker.ts", ["hold"], "hold");
  const client = await start("client.ts", [
    new URL(hold.line).port,
    "--server",
    `http://127.0.0.1:${port}`,
    "--subdomain",
    "hold",
    "--local-host",
    "127.0.0.1",
    "--log-level",
    "warn",
  ], "client");
  await sleep(SETTLE_MS);
  const beforeConns = rssKiB(server.pid);
  const visitors = await start(
    "bench/scale_worker.ts",
    ["visitors", port, `hold.localhost:${port}`, String(CONNS)],
    "visitors",
  );
  await sleep(SETTLE_MS);
  const withConns = rssKiB(server.pid);
  const connFds = fdCount(server.pid);
  const clientWithConns = rssKiB(client.pid);
  await stop(visitors);
  await sleep(SETTLE_MS);
  const afterConns = rssKiB(server.pid);

  const perTunnel = (withTunnels - base) / TUNNELS;
  const perQuietTunnel = (quiet - base) / TUNNELS;
  const perConn = (withConns - beforeConns) / CONNS;
  // deno-lint-ignore no-console -- the report is the output
  console.log([
    `Server RSS, Deno ${Deno.version.deno}, all on 127.0.0.1; ${
      SETTLE_MS / 1000
    } s settle before each reading`,
    "",
    "| phase | server RSS MiB | server fds | per item |",
    "|---|---:|---:|---:|",
    `| idle server | ${mib(base)} | | |`,
    `| ${TUNNELS} tunnels, default pool (opened in ${tunnelsSeconds.toFixed(1)} s) | ${
      mib(withTunnels)
    } | ${tunnelFds} | ${perTunnel.toFixed(1)} KiB per tunnel |`,
    `| the same tunnels quiet (2 idle proxies each) | ${mib(quiet)} | ${quietFds} | ${
      perQuietTunnel.toFixed(1)
    } KiB per tunnel |`,
    `| tunnels closed | ${mib(afterTunnels)} | | |`,
    `| one tunnel, before visitors | ${mib(beforeConns)} | | |`,
    `| ${CONNS} idle relayed connections | ${mib(withConns)} | ${connFds} | ${
      perConn.toFixed(1)
    } KiB per connection |`,
    `| connections closed | ${mib(afterConns)} | | |`,
    "",
    `Client RSS with ${CONNS} relayed connections: ${mib(clientWithConns)} MiB.`,
  ].join("\n"));
} finally {
  for (const child of children.reverse()) await child.stop();
  await Deno.remove(work, { recursive: true });
}
