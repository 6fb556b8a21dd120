// The inspector's bounds under load: 2,000 requests with 2 MiB bodies (half uploads,
// half downloads) through client.ts, whose ring and body budget must hold and whose
// peak RSS must stay bounded (read from /proc, Linux only).

import assert from "node:assert/strict";
import { HOST, patternBytes, spawnCli, startTestServer, T, waitFor } from "./helpers.ts";
import { serveApp } from "./helpers.ts";

const REQUESTS = 2_000;
const BODY_BYTES = 2 * 1024 * 1024;
const CONCURRENCY = 4;
const MIB = 1024 * 1024;

/**
 * A field of /proc/PID/status in bytes (VmRSS, VmHWM: the peak). Read by `cat`: Deno
 * asks for --allow-all to read /proc, and the tests' permissions allow running programs.
 */
async function procBytes(pid: number, field: string): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stdout: "piped" })
    .output();
  const status = new TextDecoder().decode(out.stdout);
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status)![1]) * 1024;
}

Deno.test({
  name:
    "inspector: 2,000 requests with 2 MiB bodies keep the ring, the body budget and RSS bounded",
  ignore: Deno.build.os !== "linux",
  ...T,
  timeout: 120_000,
  async fn() {
    const big = patternBytes(BODY_BYTES);
    await using app = serveApp(async (req) => {
      if (req.method === "POST") {
        let n = 0;
        for await (const chunk of req.body!) n += chunk.length;
        return new Response(`${n}\n`);
      }
      return new Response(big);
    });
    await using server = await startTestServer();
    const client = spawnCli("client.ts", [
      String(app.addr.port),
      "--server",
      `http://${HOST}:${server.addr.port}`,
      "--subdomain",
      "memory",
      "--local-host",
      HOST,
      "--quiet",
    ]);
    const http = Deno.createHttpClient({ allowHost: true });
    try {
      await client.firstLine();
      await waitFor(() => /^Inspector /m.test(client.output().stderr), 5000, "the inspector");
      const inspector = /^Inspector (\S+)$/m.exec(client.output().stderr)![1]!;
      const status = async () => await (await fetch(`${inspector}/api/status`)).json();
      const idleRss = await procBytes(client.pid, "VmRSS");
      const started = performance.now();
      let next = 0;
      const worker = async () => {
        while (next < REQUESTS) {
          const i = next++;
          const res = await fetch(`http://${HOST}:${server.addr.port}/${i}`, {
            client: http,
            headers: { host: `memory.localhost:${server.addr.port}` },
            ...(i % 2 === 0 ? { method: "POST", body: big } : {}),
          });
          const body = new Uint8Array(await res.arrayBuffer());
          assert.equal(res.status, 200);
          assert.equal(body.length, i % 2 === 0 ? 8 : BODY_BYTES);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      const seconds = (performance.now() - started) / 1000;
      const after = await status();
      const peakRss = await procBytes(client.pid, "VmHWM");
      const rss = await procBytes(client.pid, "VmRSS");
      const list = (await (await fetch(`${inspector}/api/requests`)).json()).requests;
      // deno-lint-ignore no-console -- the figures the issue asks to report
      console.log(
        `${REQUESTS} × 2 MiB in ${seconds.toFixed(1)} s: client RSS idle ${
          (idleRss / MIB).toFixed(0)
        } MiB, ` +
          `peak ${(peakRss / MIB).toFixed(0)} MiB, after ${(rss / MIB).toFixed(0)} MiB; ` +
          `inspector keeps ${after.exchanges} exchanges, ${
            (after.bodyBytes / MIB).toFixed(1)
          } MiB of bodies`,
      );
      assert.equal(after.exchanges, 500, "the ring holds the last 500");
      assert.equal(list.length, 500);
      // The newest are kept (with several workers, the last request may reach the client
      // a little before others started before it).
      assert.ok(
        list.slice(0, CONCURRENCY).some((e: { target: string }) => e.target === `/${REQUESTS - 1}`),
        "the newest is kept",
      );
      assert.ok(after.bodyBytes <= 64 * MIB, `body budget: ${after.bodyBytes}`);
      assert.ok(after.bodyBytes >= 60 * MIB, "the budget is used, not wasted");
      const newest = await (await fetch(`${inspector}/api/requests/${list[0].id}`)).json();
      const posted = Number(newest.target.slice(1)) % 2 === 0; // even requests were uploads
      const body = posted ? newest.request.body : newest.response.body;
      assert.deepEqual([body.kept, body.truncated], [MIB, true], "each body kept up to 1 MiB");
      assert.ok(peakRss - idleRss < 256 * MIB, `peak RSS grew ${(peakRss - idleRss) / MIB} MiB`);
    } finally {
      http.close();
      const end = await client.stop("SIGINT");
      assert.equal(end.code, 0, end.stderr);
    }
  },
});
