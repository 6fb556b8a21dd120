// The client's pool of idle proxy connections: its size while visitors come, a few
// connections only once the tunnel is quiet, and topped up by the next visitor.

import assert from "node:assert/strict";
import { openTestTunnel, rawApp, rawRequest, startTestServer, T, waitFor } from "./helpers.ts";
import { PROXY_POOL_QUIET_SIZE } from "../lib/limits.ts";

Deno.test({
  name:
    "a tunnel starts and ends quiet with 2 idle proxy connections; its first visitor tops it up",
  ...T,
  async fn() {
    await using app = rawApp(async (conn) => {
      await conn.read(new Uint8Array(4096));
      await conn.write(
        new TextEncoder().encode(
          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        ),
      );
    });
    await using server = await startTestServer();
    await using _tunnel = await openTestTunnel(server, app.port, {
      subdomain: "quiet",
      pool: 6,
      poolQuietAfterMs: 1_200, // past POOL_REFILL_MIN_AGE_MS: a lost connection would be replaced
    });
    const idle = () => server.tunnels().find((t) => t.subdomain === "quiet")?.idleProxies ?? -1;
    // A new tunnel starts quiet.
    await waitFor(() => idle() === PROXY_POOL_QUIET_SIZE, 3000, "the quiet pool");
    const request = "GET / HTTP/1.1\r\nHost: quiet.localhost\r\n\r\n";
    assert.match(await rawRequest(server.addr.port, request), /^HTTP\/1\.1 200 OK[^]*ok$/);
    await waitFor(() => idle() >= 6, 3000, "the pool topped up after a visitor");
    // Shrunk connections are not replaced as lost ones would be (at once): the pool gets small.
    await waitFor(() => idle() === PROXY_POOL_QUIET_SIZE, 3000, "the quiet pool again");
  },
});
