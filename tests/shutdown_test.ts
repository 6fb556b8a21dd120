// Graceful shutdown: stop accepting, tell clients, let streams finish, then close.

import assert from "node:assert/strict";
import { sleep } from "../lib/io.ts";
import {
  connect,
  decode,
  encode,
  HOST,
  logRecorder,
  openTestTunnel,
  rawApp,
  readAll,
  readUntil,
  spawnCli,
  startTestServer,
  T,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

/** An app that answers each request slowly: the head at once, the body after `ms`. */
const slowApp = (ms: number) =>
  rawApp(async (conn, _index, closing) => {
    await conn.read(new Uint8Array(1024));
    await writeAllTo(conn, encode("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"));
    await sleep(ms, closing);
    await writeAllTo(conn, encode("done"));
  });

/** Whether a new connection to `port` is refused, or accepted and closed without an answer. */
async function notServing(port: number): Promise<boolean> {
  try {
    const conn = await connect(port);
    const answer = await readAll(conn).catch(() => new Uint8Array(0));
    conn.close();
    return answer.length === 0;
  } catch (e) {
    return e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.ConnectionReset;
  }
}

Deno.test({
  name: "shutdown() lets an in-flight response finish, refuses new connections, then closes",
  ...T,
  async fn() {
    await using app = slowApp(600);
    const server = await startTestServer();
    const tunnel = await openTestTunnel(server, app.port, { subdomain: "slow" });
    try {
      const visitor = await connect(server.addr.port);
      await writeAllTo(visitor, encode("GET / HTTP/1.1\r\nHost: slow.localhost\r\n\r\n"));
      const head = await readUntil(visitor, /\r\n\r\n/); // the app is in the middle of its answer
      const started = Date.now();
      const stopping = server.shutdown(10_000);
      assert.ok(await notServing(server.addr.port));
      const answer = head + decode(await readAll(visitor));
      visitor.close();
      assert.match(answer, /^HTTP\/1\.1 200 OK[^]*done$/);
      await stopping;
      const took = Date.now() - started;
      assert.ok(took >= 400 && took < 5_000, `shutdown took ${took} ms`);
    } finally {
      await tunnel.close();
      await server.close();
    }
  },
});

Deno.test({
  name: "shutdown() with nothing in flight is quick, and close() cuts a long one short",
  ...T,
  async fn() {
    const idle = await startTestServer();
    const started = Date.now();
    await idle.shutdown();
    assert.ok(Date.now() - started < 1_000);

    await using app = slowApp(20_000);
    const server = await startTestServer();
    const log = logRecorder();
    await using _tunnel = await openTestTunnel(server, app.port, {
      subdomain: "long",
      logger: log,
    });
    using visitor = await connect(server.addr.port);
    await writeAllTo(visitor, encode("GET / HTTP/1.1\r\nHost: long.localhost\r\n\r\n"));
    await readUntil(visitor, /\r\n\r\n/); // the app is in the middle of its answer
    const stopping = server.shutdown(30_000);
    // Clients are told once the server has stopped accepting; then it waits for the stream.
    await waitFor(() => log.count("Server says") === 1, 5_000, "the client to be told");
    const cut = Date.now();
    await server.close();
    await stopping;
    assert.ok(Date.now() - cut < 1_000);
  },
});

Deno.test({
  name: "server.ts drains on the first SIGTERM and exits at once on the second",
  ...T,
  async fn() {
    await using app = slowApp(20_000);
    const server = spawnCli("server.ts", ["--port", "0", "--hostname", HOST]);
    const port = Number(new URL(await server.firstLine()).port);
    const target = { addr: { port } };
    await using _tunnel = await openTestTunnel(target, app.port, { subdomain: "drain" });
    using visitor = await connect(port);
    await writeAllTo(visitor, encode("GET / HTTP/1.1\r\nHost: drain.localhost\r\n\r\n"));
    await readUntil(visitor, /\r\n\r\n/); // the stream is held open by the app
    server.kill("SIGTERM");
    // It closes its listener in the same turn as it says so.
    await waitFor(() => server.output().stderr.includes("Draining"), 5_000, "the drain to start");
    assert.ok(await notServing(port)); // no longer accepting
    const started = Date.now();
    const end = await server.stop("SIGTERM"); // the second signal: at once
    assert.equal(end.code, 0);
    assert.ok(Date.now() - started < 3_000);
    assert.match(end.stderr, /Draining/);
  },
});
