// Starting and stopping: errors reject, shutdown is announced, callbacks cannot break a tunnel.

import assert from "node:assert/strict";
import { TunnelError } from "../lib/errors.ts";
import { closeQuietly } from "../lib/io.ts";
import { decodeServerFrame, encodeFrame, PROTOCOL_VERSION } from "../lib/protocol.ts";
import {
  logRecorder,
  nextFrame,
  openTestTunnel,
  rawClient,
  startStack,
  startTestServer,
  T,
  waitFor,
} from "./helpers.ts";

Deno.test({
  name: "startServer() rejects when the port is taken, and on a bad domain",
  ...T,
  async fn() {
    await using server = await startTestServer();
    await assert.rejects(startTestServer({ port: server.addr.port }), Deno.errors.AddrInUse);
    await assert.rejects(startTestServer({ domain: "not a domain" }), TypeError);
    await assert.rejects(startTestServer({ domain: "127.0.0.1" }), TypeError);
  },
});

Deno.test({
  name: "server.close() tells each client it is shutting down before closing",
  ...T,
  async fn() {
    const server = await startTestServer();
    const { conn, reader } = await rawClient(
      server.addr.port,
      encodeFrame({ type: "hello", version: PROTOCOL_VERSION }),
    );
    try {
      assert.equal((await nextFrame(reader))?.type, "welcome");
      await server.close();
      assert.deepEqual(await nextFrame(reader), {
        type: "error",
        code: "shutdown",
        message: "Server is shutting down",
      });
      assert.equal(await reader.readFrame(decodeServerFrame), null);
    } finally {
      closeQuietly(conn);
    }
  },
});

Deno.test({
  name: "a throwing onReady callback is logged and the tunnel keeps working",
  ...T,
  async fn() {
    const log = logRecorder();
    await using stack = await startStack("cb", {
      onReady: () => {
        throw new Error("stdout closed");
      },
      logger: log,
    });
    assert.deepEqual(log.lines.filter((l) => l.level === "error").map((l) => l.message), [
      "onReady callback failed",
    ]);
    assert.equal(await (await stack.fetch("/")).text(), "hello from app\n");
  },
});

Deno.test({
  name: "an aborted signal stops openTunnel() and closes an open tunnel",
  ...T,
  async fn() {
    await using server = await startTestServer();
    // Already aborted: it gives up before it even connects, saying why.
    await assert.rejects(
      openTestTunnel(server, 9, { signal: AbortSignal.abort() }),
      (e) => e instanceof TunnelError && e.code === "connect" && /: cancelled$/.test(e.message),
    );
    const stop = new AbortController();
    const tunnel = await openTestTunnel(server, 9, { signal: stop.signal });
    assert.equal(server.tunnelCount, 1);
    stop.abort();
    await tunnel.finished;
    await waitFor(() => server.tunnelCount === 0, 5_000, "the tunnel to be closed on the server");
  },
});
