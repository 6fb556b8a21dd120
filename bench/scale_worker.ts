// Helper processes for `deno task bench:scale`, each printing one line when ready and
// holding its connections until SIGTERM:
//   tunnels SERVER_PORT COUNT        opens COUNT tunnels (default pool) to a local port
//   hold                             an app that accepts connections and holds them
//   visitors SERVER_PORT HOST COUNT  opens COUNT visitor connections with a request head

import { openTunnel, type Tunnel } from "../mod.ts";

const [mode, ...args] = Deno.args;
const say = (line: string): void => {
  Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
};
const stopped = new Promise<void>((resolve) => Deno.addSignalListener("SIGTERM", resolve));
const BATCH = Number(Deno.env.get("BATCH") ?? 250);
/** How soon the tunnels' pools go quiet (the library's default: 60 s). */
const QUIET_MS = Number(Deno.env.get("POOL_QUIET_MS") ?? 0);

if (mode === "tunnels") {
  const [port, count] = args.map(Number) as [number, number];
  const tunnels: Tunnel[] = [];
  for (let i = 0; i < count; i += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, count - i) }, (_, j) =>
      openTunnel({
        port: 9,
        localHost: "127.0.0.1",
        server: `http://127.0.0.1:${port}`,
        subdomain: `t${i + j}`,
        ...(QUIET_MS ? { poolQuietAfterMs: QUIET_MS } : {}),
      }));
    tunnels.push(...await Promise.all(batch));
  }
  say(`ready ${tunnels.length}`);
  await stopped;
  await Promise.all(tunnels.map((t) => t.close()));
} else if (mode === "hold") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  say(`http://127.0.0.1:${listener.addr.port}`);
  const accepting = (async () => {
    try {
      for await (const conn of listener) held.push(conn);
    } catch { /* closed */ }
  })();
  await stopped;
  listener.close();
  await accepting;
  for (const conn of held) conn.close();
} else if (mode === "visitors") {
  const [portText, host, countText] = args as [string, string, string];
  const head = new TextEncoder().encode(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  const conns: Deno.Conn[] = [];
  const count = Number(countText);
  for (let i = 0; i < count; i += BATCH) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(BATCH, count - i) }, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(portText) });
        await conn.write(head);
        return conn;
      }),
    );
    conns.push(...batch);
    await new Promise((r) => setTimeout(r, 50)); // let the tunnel's pool keep up
  }
  say(`ready ${conns.length}`);
  await stopped;
  for (const conn of conns) conn.close();
} else {
  say(`unknown mode ${mode}`);
  Deno.exit(2);
}
Deno.exit(0);
