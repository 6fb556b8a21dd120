// Proxy connections carry one stream after another; a failed stream does not leak.

import assert from "node:assert/strict";
import {
  connect,
  decode,
  encode,
  HOST,
  openTestTunnel,
  rawApp,
  rawRequest,
  readAll,
  readUntil,
  startApp,
  startTestServer,
  streamingApp,
  T,
  tcpHop,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

Deno.test({
  name: "100 sequential visitors reuse the pooled proxy connections instead of dialling new ones",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer();
    await using hop = tcpHop(server.addr.port); // counts the client's connections
    await using _tunnel = await openTestTunnel(server, app.addr.port, {
      server: `http://${HOST}:${hop.port}`,
      subdomain: "reuse",
      pool: 2,
    });
    for (let i = 0; i < 100; i++) {
      const answer = await rawRequest(
        server.addr.port,
        `GET /bytes/${i * 100} HTTP/1.1\r\nHost: reuse.localhost\r\nConnection: close\r\n\r\n`,
      );
      assert.match(
        answer,
        new RegExp(`^HTTP/1\\.1 200 [^]*content-length: ${i * 100}\\r\\n`, "i"),
      );
    }
    // One control connection, the pool, and at most a couple of top-ups.
    assert.ok(hop.connections <= 1 + 2 + 2, `${hop.connections} connections for 100 visitors`);
  },
});

Deno.test({
  name:
    "a visitor that disappears mid-download closes the app's connection, and the tunnel goes on",
  ...T,
  async fn() {
    await using app = streamingApp();
    await using server = await startTestServer();
    await using _t = await openTestTunnel(server, app.port, { subdomain: "gone" });
    const visitor = await connect(server.addr.port);
    await writeAllTo(visitor, encode("GET / HTTP/1.1\r\nHost: gone.localhost\r\n\r\n"));
    const buffer = new Uint8Array(256 * 1024);
    let got = 0;
    while (got < 1024 * 1024) got += (await visitor.read(buffer)) ?? 0;
    visitor.close();
    await waitFor(() => app.state.failedAt > 0, 5_000, "the app's writes to fail");
    // The tunnel still serves the next visitor (the app answers it too).
    const next = await connect(server.addr.port);
    await writeAllTo(next, encode("GET / HTTP/1.1\r\nHost: gone.localhost\r\n\r\n"));
    assert.match(await readUntil(next, /\r\n\r\n/), /^HTTP\/1\.1 200 OK/);
    next.close();
  },
});

Deno.test({
  name: "bytes the app sends after the visitor's half-close still arrive, stream after stream",
  ...T,
  async fn() {
    // An app that echoes everything it read once the visitor has finished sending.
    await using app = rawApp(async (conn) => await writeAllTo(conn, await readAll(conn)));
    await using server = await startTestServer();
    await using _t = await openTestTunnel(server, app.port, {
      subdomain: "echo",
      pool: 1,
      raw: true, // the visitors send bytes, not HTTP requests with lengths
    });
    for (let i = 0; i < 20; i++) {
      const visitor = await connect(server.addr.port);
      const body = `POST / HTTP/1.1\r\nHost: echo.localhost\r\n\r\n${"z".repeat(i * 5000)}`;
      await writeAllTo(visitor, encode(body));
      await visitor.closeWrite();
      assert.equal(decode(await readAll(visitor)), body);
      visitor.close();
    }
  },
});
