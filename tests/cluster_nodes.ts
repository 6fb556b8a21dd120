// Test helpers for server nodes of one cluster: nodes in this process (startServer
// with a cluster) or as real processes (server.ts with --redis), sharing a cluster
// key and a lease key, on one test Redis.

import { startServer, type TunnelServer } from "../lib/server/server.ts";
import type { ClusterOptions } from "../lib/server/cluster/node.ts";
import {
  type Cli,
  connect,
  decode,
  HOST,
  readAll,
  spawnCli,
  waitFor,
  writeAllTo,
} from "./helpers.ts";
import type { TestRedis } from "./redis.ts";

/** Keys every node of one test cluster shares (as files too, for node processes). */
export interface ClusterKeys {
  /** The cluster key. */
  cluster: Uint8Array;
  /** The lease key. */
  lease: Uint8Array;
  /** Files holding them. */
  clusterFile: string;
  leaseFile: string;
}

/** Fresh keys, written to temporary files. */
export function clusterKeys(): ClusterKeys {
  const cluster = crypto.getRandomValues(new Uint8Array(32));
  const lease = crypto.getRandomValues(new Uint8Array(32));
  const clusterFile = Deno.makeTempFileSync({ prefix: "gotunnel-cluster-key-" });
  const leaseFile = Deno.makeTempFileSync({ prefix: "gotunnel-lease-key-" });
  Deno.writeFileSync(clusterFile, cluster);
  Deno.writeFileSync(leaseFile, lease);
  return { cluster, lease, clusterFile, leaseFile };
}

/** A node in this process: `id` on `redis`, with `keys`. */
export function startNode(
  redis: TestRedis,
  keys: ClusterKeys,
  id: string,
  extra: Parameters<typeof startServer>[0] = {},
  cluster: Partial<ClusterOptions> = {},
): Promise<TunnelServer> {
  return startServer({
    port: 0,
    hostname: HOST,
    leaseKey: keys.lease,
    ...extra,
    cluster: { redis: redis.url, key: keys.cluster, nodeId: id, ...cluster },
  });
}

/** A node process: server.ts with --redis; its port read from the URL it prints. */
export interface NodeProcess {
  /** Its node id. */
  readonly id: string;
  /** Its public port on 127.0.0.1. */
  readonly port: number;
  /** The process. */
  readonly cli: Cli;
}

/** Starts server.ts as node `id` of the cluster on `redis`, with `args` added. */
export async function spawnNode(
  redis: TestRedis,
  keys: ClusterKeys,
  id: string,
  args: string[] = [],
): Promise<NodeProcess> {
  const cli = spawnCli("server.ts", [
    ...["--port", "0", "--hostname", HOST, "--domain", "localhost", "--log-level", "warn"],
    ...["--redis", redis.url, "--node-id", id],
    ...["--cluster-key-file", keys.clusterFile, "--lease-key-file", keys.leaseFile],
    ...args,
  ]);
  const url = await cli.firstLine();
  const port = Number(new URL(url).port);
  return { id, port, cli };
}

/** GET `path` with Host `host` through node `port` (`Connection: close`): status and body. */
export async function get(port: number, host: string, path = "/"): Promise<[number, string]> {
  using conn = await connect(port);
  await writeAllTo(
    conn,
    new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
  );
  const text = decode(await readAll(conn));
  return [Number(text.slice(9, 12)), text.slice(text.indexOf("\r\n\r\n") + 4)];
}

/** No client of Redis is left once every node closed (node:net sockets escape the sanitizer). */
export async function assertNoClients(redis: TestRedis): Promise<void> {
  await waitFor(async () => (await redis.clients()).length === 0, 5000, "Redis clients closed");
}
