// Lost connections: server restarts, killed clients, silent peers on either side.

import assert from "node:assert/strict";
import { ByteReader, closeQuietly, FRAME_READER_CAPACITY, writeAll } from "../lib/io.ts";
import { concatBytes } from "../lib/bytes.ts";
import { decodeClientFrame, decodeServerFrame, UPGRADE_RESPONSE } from "../lib/protocol.ts";
import {
  decode,
  helloFrames,
  HOST,
  openTestTunnel,
  rawApp,
  rawClient,
  readAll,
  spawnCli,
  startApp,
  startTestServer,
  T,
  waitFor,
  welcomeFrames,
} from "./helpers.ts";

const FAST = { intervalMs: 50, peerTimeoutMs: 300 };

async function get(port: number, host: string, path = "/"): Promise<string> {
  using http = Deno.createHttpClient({ allowHost: true });
  const res = await fetch(`http://${HOST}:${port}${path}`, { client: http, headers: { host } });
  return `${res.status} ${await res.text()}`;
}

Deno.test({
  name: "the client reconnects by itself to a restarted server and gets its subdomain back",
  ...T,
  async fn() {
    const app = startApp();
    let server = await startTestServer();
    const port = server.addr.port;
    const urls: string[] = [];
    const tunnel = await openTestTunnel(server, app.addr.port, {
      subdomain: "back",
      onReady: (url) => urls.push(url),
    });
    try {
      assert.equal(await get(port, `back.localhost:${port}`), "200 hello from app\n");
      await server.close();
      server = await startTestServer({ port }); // the same port, as a restarted server has
      await waitFor(() => urls.length === 2, 10_000, "a second onReady");
      assert.deepEqual(urls, [`http://back.localhost:${port}`, `http://back.localhost:${port}`]);
      assert.equal(await get(port, `back.localhost:${port}`), "200 hello from app\n");
    } finally {
      await tunnel.close();
      await server.close();
      await app.shutdown();
    }
  },
});

Deno.test({
  name: "a client killed with SIGKILL can be restarted at once with the same subdomain",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer();
    const args = [
      String(app.addr.port),
      "--server",
      `http://${HOST}:${server.addr.port}`,
      "--subdomain",
      "phoenix",
      "--local-host",
      HOST,
    ];
    const host = `phoenix.localhost:${server.addr.port}`;
    const first = spawnCli("client.ts", args);
    assert.equal(await first.firstLine(), `http://${host}`);
    assert.equal(await get(server.addr.port, host), "200 hello from app\n");
    assert.equal((await first.stop("SIGKILL")).code, 137);
    await waitFor(() => server.tunnelCount === 0, 5_000, "the server to drop the session");
    const second = spawnCli("client.ts", args);
    assert.equal(await second.firstLine(), `http://${host}`);
    assert.equal(await get(server.addr.port, host), "200 hello from app\n");
    const end = await second.stop("SIGINT");
    assert.equal(end.code, 0, end.stderr);
    await waitFor(() => server.tunnelCount === 0, 5_000, "the name to be freed");
  },
});

Deno.test({
  name: "the server drops a client that sends no heartbeats",
  ...T,
  async fn() {
    await using server = await startTestServer({
      limits: { heartbeatIntervalMs: FAST.intervalMs, peerTimeoutMs: FAST.peerTimeoutMs },
    });
    const { conn, reader } = await rawClient(
      server.addr.port,
      helloFrames({ subdomain: "mute" }),
    );
    try {
      assert.equal((await reader.readFrame(decodeServerFrame))?.type, "welcome");
      assert.equal(server.tunnelCount, 1);
      const started = Date.now();
      // The server pings us, then gives up on our silence and closes.
      let pings = 0;
      for (let m; (m = await reader.readFrame(decodeServerFrame)) !== null;) {
        if (m.type === "ping") pings++;
      }
      const elapsed = Date.now() - started;
      assert.ok(pings >= 2, `only ${pings} pings`);
      assert.ok(
        elapsed >= FAST.peerTimeoutMs - 50 && elapsed < 3_000,
        `closed after ${elapsed} ms`,
      );
      await waitFor(() => server.tunnelCount === 0, 1_000, "the session to be removed");
    } finally {
      closeQuietly(conn);
    }
  },
});

Deno.test({
  name: "the client notices a silent server and reconnects",
  ...T,
  async fn() {
    // A fake server that welcomes every hello and then says nothing at all.
    const hellos: number[] = [];
    await using fake = rawApp(async (conn) => {
      const reader = new ByteReader(conn, FRAME_READER_CAPACITY);
      let text = "";
      while (!text.includes("\r\n\r\n")) {
        if (!await reader.fill()) return;
        text = decode(reader.buffered);
      }
      reader.consume(text.indexOf("\r\n\r\n") + 4);
      const first = await reader.readFrame(decodeClientFrame);
      if (first?.type === "hello") {
        hellos.push(Date.now());
        const welcome = welcomeFrames("quiet", "http://quiet.localhost");
        await writeAll(conn, concatBytes(UPGRADE_RESPONSE, welcome));
      }
      await readAll(conn); // and then nothing at all (proxy connections just hang) until it goes
    });
    await using _tunnel = await openTestTunnel(
      { addr: { port: fake.port } },
      9,
      { heartbeat: FAST, pool: 1 },
    );
    await waitFor(() => hellos.length >= 2, 5_000, "a second hello");
    const gap = hellos[1]! - hellos[0]!;
    assert.ok(gap >= FAST.peerTimeoutMs, `reconnected after ${gap} ms`);
  },
});
