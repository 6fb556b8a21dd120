// How a node joins the cluster directory.

import type { ClusterTimings } from "./timings.ts";
import type { Logger } from "../../log.ts";
import type { Claim } from "./claim.ts";
import type { DirectoryEntry } from "./records.ts";

/**
 * The default prefix of every key and of the channel, so that one Redis can serve other things.
 *
 * @example
 * ```ts
 * import { DEFAULT_KEY_PREFIX } from "./options.ts";
 * console.log(`${DEFAULT_KEY_PREFIX}name:demo`); // gotunnel:name:demo
 * ```
 */
export const DEFAULT_KEY_PREFIX = "gotunnel:";

/**
 * How to join the directory.
 *
 * @example Three nodes' worth of options differ only in id and address
 * ```ts
 * import type { DirectoryOptions } from "./options.ts";
 * const options: DirectoryOptions = {
 *   redis: "rediss://:secret@redis.internal:6380/0",
 *   node: "edge-1:443",
 *   addr: "10.0.0.1:443",
 *   onLost: (claim) => console.log(`close the tunnel holding ${claim.value}`),
 * };
 * console.log(options.node); // edge-1:443
 * ```
 */
export interface DirectoryOptions {
  /** `redis://[[user]:password@]host[:port][/db]` or `rediss://` (TLS). */
  redis: string;
  /** This node's id (`--node-id`). */
  node: string;
  /** Where other nodes reach this one, `HOST:PORT` (`--node-addr`). */
  addr: string;
  /** This node's cluster key fingerprint, published in its record. @default {""} */
  keyFingerprint?: string;
  /** Prefix of every key and of the channel. @default {"gotunnel:"} */
  prefix?: string;
  /** For `rediss://` with a private CA: its certificates (PEM). */
  caCerts?: string[];
  /** Deadlines, TTLs and bounds (tests shorten them). @default {DEFAULT_CLUSTER_TIMINGS} */
  timings?: Partial<ClusterTimings>;
  /** Where the directory says what went wrong. @default {silentLogger} */
  log?: Logger;
  /**
   * A claim of this node was lost: taken over through another node (its
   * lease holder came back there), or found held by another session when it
   * was renewed or re-asserted after an outage. The tunnel must close.
   * `current` is who holds it now, if anyone.
   */
  onLost?: (claim: Claim, current: DirectoryEntry | undefined) => void;
}
