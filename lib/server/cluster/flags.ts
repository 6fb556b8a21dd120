// The cluster's command-line flags (`--redis` and its companions), read into
// the server's cluster options; their part of `--help`.

import { type FlagValue, UsageError } from "../../cli.ts";
import { readOrCreateKey } from "../key_file.ts";
import { checkNodeId, parseNodeAddr } from "./node_id.ts";
import type { ClusterOptions } from "./node.ts";
import { parseRedisUrl } from "./redis_url.ts";

/**
 * The cluster flags, as the server's flag parser takes them.
 *
 * @example
 * ```ts
 * import { CLUSTER_FLAGS } from "./flags.ts";
 * console.log(Object.keys(CLUSTER_FLAGS)); // ["redis", "node-id", "node-addr", "cluster-key-file", "redis-ca"]
 * ```
 */
export const CLUSTER_FLAGS = {
  redis: { type: "string" },
  "node-id": { type: "string" },
  "node-addr": { type: "string" },
  "cluster-key-file": { type: "string" },
  "redis-ca": { type: "string" },
} as const;

/**
 * The cluster's part of the server's `--help`.
 *
 * @example
 * ```ts
 * import { CLUSTER_USAGE } from "./flags.ts";
 * console.log(CLUSTER_USAGE.includes("--redis URL")); // true
 * ```
 */
export const CLUSTER_USAGE = `Several nodes (see README, "Running several nodes"):
  --redis URL        join a cluster whose directory is in Redis: redis://[:PASSWORD@]HOST[:PORT][/DB]
                     or rediss:// (TLS); needs --cluster-key-file and --lease-key-file, the same
                     files on every node
  --node-id ID       this node's id (default: hostname:port)
  --node-addr H:P    where the other nodes reach this one: its public port or an internal address
                     of it (default: the listen address; needed with --hostname 0.0.0.0)
  --cluster-key-file F  key the nodes prove themselves with, created if missing (copy it to
                     every node)
  --redis-ca FILE    trust this CA (PEM) for a rediss:// Redis
`;

/**
 * Reads the cluster flags: undefined without `--redis` (and a UsageError if a
 * companion flag is given without it, or any is malformed).
 *
 * @example
 * ```ts ignore
 * const cluster = await readClusterFlags({ redis: "redis://10.0.0.9:6379", "cluster-key-file": "/etc/gotunnel/cluster.key" });
 * ```
 */
export async function readClusterFlags(
  values: Record<string, FlagValue>,
): Promise<{ options: ClusterOptions; keyCreated: boolean } | undefined> {
  const string = (name: string): string | undefined =>
    typeof values[name] === "string" ? values[name] as string : undefined;
  const redis = string("redis");
  if (redis === undefined) {
    const stray = Object.keys(CLUSTER_FLAGS).find((flag) => values[flag] !== undefined);
    if (stray) throw new UsageError(`--${stray} needs --redis`);
    return undefined;
  }
  try {
    parseRedisUrl(redis);
  } catch (e) {
    throw new UsageError(`Invalid --redis: ${(e as Error).message}`);
  }
  const keyFile = string("cluster-key-file");
  if (keyFile === undefined) {
    throw new UsageError(
      "--redis needs --cluster-key-file FILE: the key every node proves itself with " +
        "(created if missing; copy the same file to every node)",
    );
  }
  if (values["lease-key-file"] === undefined) {
    throw new UsageError(
      "--redis needs --lease-key-file FILE, the same file on every node, so that a client's " +
        "lease is valid on any node",
    );
  }
  let key: { key: Uint8Array; created: boolean };
  try {
    key = await readOrCreateKey(keyFile);
  } catch (e) {
    throw new UsageError(`Cannot use --cluster-key-file: ${(e as Error).message}`);
  }
  let nodeId = string("node-id");
  if (nodeId !== undefined) {
    const checked = checkNodeId(nodeId);
    if (!checked.ok) {
      throw new UsageError(`Invalid --node-id ${JSON.stringify(nodeId)}: ${checked.reason}`);
    }
    nodeId = checked.id;
  }
  const nodeAddr = string("node-addr");
  if (nodeAddr !== undefined) parseNodeAddr(nodeAddr); // throws a UsageError naming the mistake
  const caFile = string("redis-ca");
  let caCerts: string[] | undefined;
  if (caFile !== undefined) {
    try {
      caCerts = [await Deno.readTextFile(caFile)];
    } catch (e) {
      throw new UsageError(`Cannot read --redis-ca ${caFile}: ${(e as Error).message}`);
    }
  }
  return {
    keyCreated: key.created,
    options: {
      redis,
      key: key.key,
      ...(nodeId === undefined ? {} : { nodeId }),
      ...(nodeAddr === undefined ? {} : { nodeAddr }),
      ...(caCerts ? { caCerts } : {}),
    },
  };
}
