// This server as one node of a cluster: its id and address, the directory it
// shares with the other nodes through Redis, the key that proves it one of them,
// the node connections it dials and those it holds idle, and what it counts.

import { type ClusterTimings, NODE_LIST_MAX_AGE_MS } from "./timings.ts";
import { Collected } from "../metrics.ts";
import { closeQuietly } from "../../io.ts";
import { describeError, type Logger } from "../../log.ts";
import type { Claim, ClaimResult, Takeover } from "./claim.ts";
import { type Directory, openDirectory } from "./directory.ts";
import { type ClusterKey, importClusterKey } from "./key.ts";
import { HelloVerifier } from "./node_auth.ts";
import { NodeDialer } from "./node_dial.ts";
import {
  checkNodeId,
  defaultNodeAddr,
  defaultNodeId,
  formatNodeAddr,
  parseNodeAddr,
} from "./node_id.ts";
import { type DirectoryEntry, type DirectoryKind, itemOf, type NodeRecord } from "./records.ts";
import { redactRedisUrl } from "./redis_url.ts";

/**
 * How a server joins a cluster (`--redis`, `--node-id`, `--node-addr`, `--cluster-key-file`).
 *
 * @example
 * ```ts
 * import type { ClusterOptions } from "./node.ts";
 * const cluster: ClusterOptions = {
 *   redis: "redis://10.0.0.9:6379/0",
 *   key: new Uint8Array(32), // the same --cluster-key-file on every node
 *   nodeAddr: "10.0.0.1:8080",
 * };
 * console.log(cluster.nodeId ?? "hostname:port"); // hostname:port
 * ```
 */
export interface ClusterOptions {
  /** `redis://[[user]:password@]host[:port][/db]` or `rediss://` (TLS). */
  redis: string;
  /** The cluster key (32 bytes, the same on every node). */
  key: Uint8Array;
  /** This node's id. @default {"<hostname>:<port>"} */
  nodeId?: string;
  /** Where other nodes reach this one, `HOST:PORT`. @default {the listen address} */
  nodeAddr?: string;
  /** For `rediss://` with a private CA: its certificates (PEM). */
  caCerts?: string[];
  /** Prefix of every Redis key. @default {"gotunnel:"} */
  prefix?: string;
  /** The directory's waits and TTLs (tests shorten them). */
  timings?: Partial<ClusterTimings>;
}

/** What a node counts of node connections. */
export type NodeCount = "out" | "in" | "refused" | "stale" | "failed";

/** A node's view for `/api/status`. */
export interface ClusterStatus {
  /** This node's id. */
  node: string;
  /** Where other nodes reach it. */
  addr: string;
  /** Whether Redis answers now. */
  redis: "up" | "down";
  /** Names, ports and hostnames this node holds in the directory. */
  claims: number;
  /** Every live node (empty while Redis is down). */
  nodes: { id: string; addr: string; self: boolean }[];
  /** Visitors forwarded to other nodes, received from them, and refused. */
  forwarded: Record<NodeCount, number>;
}

/**
 * This server as a node: joined at start, left at close.
 *
 * @example
 * ```ts ignore
 * const node = await ClusterNode.open(options, { hostname: "10.0.0.1", port: 8080, log, onLost });
 * const result = await node.claim("name", "demo", { session: tunnel.uid, holder: nonce });
 * await node.close();
 * ```
 */
export class ClusterNode {
  /** This node's id. */
  readonly id: string;
  /** Where other nodes reach it, `HOST:PORT`. */
  readonly addr: string;
  /** The cluster key. */
  readonly key: ClusterKey;
  /** Checks the hellos of nodes that dial this one. */
  readonly verifier: HelloVerifier;
  /** Dials other nodes, and keeps their idle connections. */
  readonly dialer: NodeDialer;
  /** Node connections from other nodes waiting idle for a visitor: closed at close. */
  readonly idleInbound: Set<Deno.Conn | { close(): void }> = new Set();
  #directory: Directory;
  #counts: Record<NodeCount, number> = { out: 0, in: 0, refused: 0, stale: 0, failed: 0 };
  #nodes: NodeRecord[] = [];
  #nodesAt = 0;
  #listing = false;

  private constructor(
    id: string,
    addr: string,
    key: ClusterKey,
    directory: Directory,
    log: Logger,
  ) {
    this.id = id;
    this.addr = addr;
    this.key = key;
    this.#directory = directory;
    this.verifier = new HelloVerifier(key, id);
    this.dialer = new NodeDialer(key, id, log);
  }

  /**
   * Joins the cluster for a server listening on `hostname:port`: checks the id
   * and address, opens the directory (throws its DirectoryError when Redis
   * cannot be reached or the id is live elsewhere). `onLost` hears of a claim
   * taken away (its tunnel must end).
   */
  static async open(
    options: ClusterOptions,
    at: {
      hostname: string;
      port: number;
      log: Logger;
      onLost: (claim: Claim, current: DirectoryEntry | undefined) => void;
    },
  ): Promise<ClusterNode> {
    const id = options.nodeId ?? defaultNodeId(Deno.hostname(), at.port);
    const checked = checkNodeId(id);
    if (!checked.ok) {
      throw new RangeError(`Invalid node id ${JSON.stringify(id)}: ${checked.reason}`);
    }
    const addr = formatNodeAddr(
      options.nodeAddr === undefined
        ? defaultNodeAddr(at.hostname, at.port)
        : parseNodeAddr(options.nodeAddr),
    );
    const key = await importClusterKey(options.key);
    const directory = await openDirectory({
      redis: options.redis,
      node: checked.id,
      addr,
      keyFingerprint: key.fingerprint,
      log: at.log,
      onLost: at.onLost,
      ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
      ...(options.caCerts === undefined ? {} : { caCerts: options.caCerts }),
      ...(options.timings === undefined ? {} : { timings: options.timings }),
    });
    at.log.info("Joined the cluster", {
      node: checked.id,
      addr,
      redis: redactRedisUrl(options.redis),
      key: key.fingerprint,
    });
    return new ClusterNode(checked.id, addr, key, directory, at.log);
  }

  /** Whether Redis answers now (else claims are refused and lookups use the cache). */
  get available(): boolean {
    return this.#directory.available;
  }

  /** Claims an item for a tunnel (see Directory.claim); throws DirectoryError `unavailable`. */
  claim(
    kind: DirectoryKind,
    value: string,
    options: { session: string; holder: string; takeover: Takeover },
  ): Promise<ClaimResult> {
    return this.#directory.claim(kind, value, options);
  }

  /**
   * Releases a tunnel's claim in the background, or with `holdMs` keeps it for
   * its lease holder alone that long; a failure is logged (the entry then lapses).
   */
  release(claim: Claim, holdMs: number, log: Logger): void {
    this.#directory.release(claim, { holdMs }).catch((e) =>
      log.warn("Cannot release a claim: it lapses by itself", {
        item: itemOf(claim),
        error: describeError(e),
      })
    );
  }

  /** Who holds an item (cached; see Directory.lookup). */
  lookup(kind: DirectoryKind, value: string): Promise<DirectoryEntry | undefined> {
    return this.#directory.lookup(kind, value);
  }

  /** A node's record (its address), cached. */
  nodeRecord(id: string): Promise<NodeRecord | undefined> {
    return this.#directory.nodeRecord(id);
  }

  /** Counts a node connection's outcome. */
  count(what: NodeCount): void {
    this.#counts[what]++;
  }

  /** What was counted so far. */
  get counts(): Readonly<Record<NodeCount, number>> {
    return this.#counts;
  }

  /** Claims held by this node now. */
  get claimCount(): number {
    return this.#directory.claims().length;
  }

  /**
   * This node's view of the cluster. The node list is the one read last: it is
   * read again from Redis (in the background) when older than NODE_LIST_MAX_AGE_MS.
   */
  status(): ClusterStatus {
    if (this.available && Date.now() - this.#nodesAt > NODE_LIST_MAX_AGE_MS && !this.#listing) {
      this.#listing = true;
      this.#directory.nodes().then((nodes) => {
        this.#nodes = nodes;
        this.#nodesAt = Date.now();
      }, () => {}).finally(() => this.#listing = false);
    }
    return {
      node: this.id,
      addr: this.addr,
      redis: this.available ? "up" : "down",
      claims: this.claimCount,
      nodes: this.#nodes.map((n) => ({ id: n.id, addr: n.addr, self: n.id === this.id }))
        .sort((a, b) => a.id.localeCompare(b.id)),
      forwarded: { ...this.#counts },
    };
  }

  /** Reads the node list now (for the first status). */
  async refreshNodes(): Promise<void> {
    this.#nodes = await this.#directory.nodes();
    this.#nodesAt = Date.now();
  }

  /** The cluster's metric families, for the server's `/metrics`. */
  metricFamilies(): Collected[] {
    const one = (value: number) => [{ labels: {}, value }];
    return [
      new Collected(
        "gotunnel_cluster_redis_up",
        "1 while the cluster's Redis answers.",
        "gauge",
        () => one(this.available ? 1 : 0),
      ),
      new Collected(
        "gotunnel_cluster_claims",
        "Names, ports and hostnames this node holds in the cluster directory.",
        "gauge",
        () => one(this.claimCount),
      ),
      new Collected(
        "gotunnel_cluster_nodes",
        "Live nodes in the cluster, as last read from Redis.",
        "gauge",
        () => one(this.#nodes.length),
      ),
      new Collected(
        "gotunnel_cluster_node_streams_total",
        "Visitors handed between nodes: out (to the owner), in (from another node), refused " +
          "(a node connection without the cluster key), stale (the owner no longer held it), " +
          "failed (the owner could not be reached).",
        "counter",
        () =>
          Object.entries(this.#counts).map(([outcome, value]) => ({ labels: { outcome }, value })),
      ),
    ];
  }

  /**
   * Leaves the cluster: stops dialling, closes idle node connections, and
   * closes the directory (claims not released lapse; its node record goes at once).
   */
  async close(): Promise<void> {
    this.closeConnections();
    await this.#directory.close();
  }

  /** Stops dialling and closes the idle node connections both ways (the directory stays). */
  closeConnections(): void {
    this.dialer.close();
    for (const conn of this.idleInbound) closeQuietly(conn);
    this.idleInbound.clear();
  }
}
