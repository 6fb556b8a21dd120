// Node connections reused across visitors, against a real redis-server: visitors
// through a forwarding node ride a few pooled node connections, and a stream
// that ends badly (a visitor's reset) takes its node connection with it, so no
// later visitor gets one out of step.

import assert from "node:assert/strict";
import { NODE_POOL_DIAL_AHEAD } from "../lib/server/cluster/timings.ts";
import type { TunnelServer } from "../lib/server/server.ts";
import {
  connect,
  encode,
  HOST,
  logRecorder,
  needs,
  openTestTunnel,
  startApp,
  T,
  writeAllTo,
} from "./helpers.ts";
import { assertNoClients, clusterKeys, get, startNode } from "./cluster_nodes.ts";
import { startRedis } from "./redis.ts";

const REDIS = { ...needs("redis-server", "redis-cli"), ...T };

/** Node connections `node` accepted from other nodes so far, from its `/metrics`. */
async function nodeConnections(node: TunnelServer): Promise<number> {
  const response = await fetch(`http://${HOST}:${node.adminAddr!.port}/metrics`);
  const text = await response.text();
  return Number(
    /^gotunnel_public_connections_total\{outcome="node"\} (\d+)$/m.exec(text)?.[1] ?? 0,
  );
}

Deno.test({
  name:
    "cluster: 20 Connection: close visitors in a row through B ride a few reused node connections",
  ...REDIS,
  async fn() {
    await using redis = await startRedis();
    const keys = clusterKeys();
    const app = startApp();
    {
      await using a = await startNode(redis, keys, "a", { admin: { port: 0 } });
      await using b = await startNode(redis, keys, "b");
      await using _web = await openTestTunnel(a, app.addr.port, { subdomain: "web" });
      const host = `web.localhost:${b.addr.port}`;
      for (let i = 0; i < 20; i++) {
        assert.deepEqual(await get(b.addr.port, host, `/n${i}`), [200, "hello from app\n"]);
      }
      assert.equal(a.cluster()!.forwarded.in, 20);
      assert.equal(b.cluster()!.forwarded.out, 20);
      // One dialled for the first visitor, the pool filled behind it; none per visitor.
      const dialled = await nodeConnections(a);
      assert.ok(dialled >= 1 && dialled <= NODE_POOL_DIAL_AHEAD + 2, `${dialled} node connections`);
    }
    await app.shutdown();
    await assertNoClients(redis);
  },
});

Deno.test({
  name:
    "cluster: a visitor through B that resets mid-download leaves no broken node connection behind",
  ...REDIS,
  async fn() {
    await using redis = await startRedis();
    const keys = clusterKeys();
    const app = startApp();
    const log = logRecorder();
    {
      await using a = await startNode(redis, keys, "a", { admin: { port: 0 } });
      await using b = await startNode(redis, keys, "b", { logger: log });
      await using _web = await openTestTunnel(a, app.addr.port, { subdomain: "web" });
      const host = `web.localhost:${b.addr.port}`;
      for (let i = 0; i < 3; i++) assert.equal((await get(b.addr.port, host, "/name"))[0], 200);
      const before = await nodeConnections(a);
      // 64 MiB asked for, 1 MiB read, then a reset (closed with bytes unread).
      const conn = await connect(b.addr.port);
      await writeAllTo(conn, encode(`GET /bytes/${64 << 20} HTTP/1.1\r\nHost: ${host}\r\n\r\n`));
      const buffer = new Uint8Array(64 * 1024);
      for (let got = 0; got < 1 << 20;) got += (await conn.read(buffer)) ?? Infinity;
      conn.close();
      // Every visitor after it gets its own answer, on connections in step.
      for (let i = 0; i < 10; i++) {
        const [status, body] = await get(b.addr.port, host, "/whoami");
        assert.equal(status, 200);
        assert.equal(JSON.parse(body).name, "app");
      }
      assert.equal(
        log.count("Node connection failed before its answer"),
        0,
        "no broken link taken",
      );
      const after = await nodeConnections(a);
      assert.ok(after - before <= 2, `${after - before} node connections dialled after the reset`);
      assert.equal(a.cluster()!.forwarded.in, 14);
    }
    await app.shutdown();
    await assertNoClients(redis);
  },
});
