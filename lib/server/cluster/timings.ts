// The cluster's waits, retries and bounds (several nodes, one directory in Redis), with
// their unit in their name: defined here once, beside the code that waits (the rest in
// lib/limits.ts).

import { LEASE_MS } from "../../limits.ts";

/** Connecting to Redis (TCP, TLS, AUTH, SELECT), each attempt. */
export const REDIS_CONNECT_TIMEOUT_MS = 5_000;
/** One Redis command or script, sent to answered: a lookup that misses the cache waits at most this. */
export const REDIS_COMMAND_TIMEOUT_MS = 2_000;
/** After Redis is lost, the first reconnect comes after this... */
export const REDIS_RECONNECT_MIN_MS = 100;
/** ...doubling (with jitter) up to this. */
export const REDIS_RECONNECT_MAX_MS = 5_000;
/** A closing connection to Redis may finish the commands in flight for this long, then it is cut. */
export const REDIS_CLOSE_TIMEOUT_MS = 1_000;
/** A node renews its claims when this fraction of their TTL has passed: two renewals may fail before one lapses. */
export const CLUSTER_RENEW_FRACTION = 1 / 3;
/**
 * A node's own record (its address) lapses this long after its last heartbeat
 * (sent every CLUSTER_RENEW_FRACTION of it): within this, a dead node is seen as gone.
 */
export const CLUSTER_NODE_TTL_MS = 10_000;
/** Entries (names, ports, hostnames, nodes) a node keeps in its lookup cache at most. */
export const CLUSTER_CACHE_MAX_ENTRIES = 100_000;
/**
 * A cached entry, or a cached absence, is asked again after this long even
 * without a change announced (a lost message can leave a cache stale only this long).
 */
export const CLUSTER_CACHE_MAX_AGE_MS = 30_000;
/** A node hello is accepted this long before or after the receiver's clock (clock skew). */
export const CLUSTER_HELLO_WINDOW_MS = 30_000;
/** Connect, upgrade, hello and welcome of one node connection to another node, together. */
export const NODE_CONNECT_TIMEOUT_MS = 2_000;
/** The owner's answer to a `forward` on a node connection. */
export const NODE_ANSWER_TIMEOUT_MS = 2_000;
/**
 * Idle node connections a node keeps to each node it forwards to, at most: each
 * carries one visitor after another, so the pool follows the peak of visitors
 * forwarded at once (up to this); one given back past it is closed. Each costs
 * a socket and a 2 KiB read on either node, and lasts NODE_IDLE_MS unused.
 */
export const NODE_POOL_IDLE = 64;
/** Node connections dialled ahead (in the background) when a visitor found none idle to its node. */
export const NODE_POOL_DIAL_AHEAD = 4;
/**
 * An idle node connection is closed by the node that dialled it after this long
 * unused, and by the dialled node after this long plus NODE_CONNECT_TIMEOUT_MS.
 */
export const NODE_IDLE_MS = 30_000;
/** The node list `/api/tunnels` shows is read again from Redis when older than this. */
export const NODE_LIST_MAX_AGE_MS = 5_000;
/** Longest node id (`--node-id`), in characters: it is part of Redis keys and of every claim. */
export const MAX_NODE_ID_LENGTH = 128;
/**
 * Nonces of accepted node hellos remembered to refuse a replay; past this, new
 * hellos are refused. Node connections are pooled and reused, so this bounds the
 * node connections one node accepts per CLUSTER_HELLO_WINDOW_MS, not visitors
 * (100,000 in 30 s: 3,333 a second, about 10 MiB of nonces at most).
 */
export const CLUSTER_HELLO_MAX_NONCES = 100_000;

/** The cluster directory's waits and bounds; `openDirectory({ timings })` shortens them in tests. */
export interface ClusterTimings {
  /** Each connect to Redis. */
  connectTimeoutMs: number;
  /** Each command or script. */
  commandTimeoutMs: number;
  /** First reconnect delay. */
  reconnectMinMs: number;
  /** Longest reconnect delay. */
  reconnectMaxMs: number;
  /** Graceful close of a connection, before it is cut. */
  closeTimeoutMs: number;
  /** How long a claim outlives its last renewal (a dead node's names, for their clients to reclaim). */
  claimTtlMs: number;
  /** How long a node record outlives its last heartbeat. */
  nodeTtlMs: number;
  /** Longest age of a cached entry or absence. */
  cacheMaxAgeMs: number;
  /** Most entries cached. */
  cacheMaxEntries: number;
}

/**
 * The defaults of {@linkcode ClusterTimings}: a claim lives a lease time
 * (LEASE_MS), so a dead node's names stay reserved for their clients as long
 * as a single server holds them.
 */
export const DEFAULT_CLUSTER_TIMINGS: Readonly<ClusterTimings> = {
  connectTimeoutMs: REDIS_CONNECT_TIMEOUT_MS,
  commandTimeoutMs: REDIS_COMMAND_TIMEOUT_MS,
  reconnectMinMs: REDIS_RECONNECT_MIN_MS,
  reconnectMaxMs: REDIS_RECONNECT_MAX_MS,
  closeTimeoutMs: REDIS_CLOSE_TIMEOUT_MS,
  claimTtlMs: LEASE_MS,
  nodeTtlMs: CLUSTER_NODE_TTL_MS,
  cacheMaxAgeMs: CLUSTER_CACHE_MAX_AGE_MS,
  cacheMaxEntries: CLUSTER_CACHE_MAX_ENTRIES,
};
