// A tunnel's name, port or hostname claimed in the cluster directory before it is
// registered on this node, and released (or held for its client) when it ends:
// the directory, not the node, says who holds what.

import type { ErrorCode } from "../../protocol.ts";
import type { Logger } from "../../log.ts";
import type { ServerTunnel } from "../tunnel.ts";
import { DirectoryError } from "./errors.ts";
import type { Claim, Takeover } from "./claim.ts";
import type { ClusterNode } from "./node.ts";
import { itemOf } from "./records.ts";
import type { DirectoryEntry, DirectoryKind } from "./records.ts";

/** Why a tunnel cannot have its item in the cluster: a refusal's code, sentence and wait. */
export interface ClusterRefusal {
  /** `*-taken`, `*-reserved` or `unavailable`. */
  code: ErrorCode;
  /** What the client prints. */
  message: string;
  /** For a reserved item: when it may be claimed again. */
  retryAfterMs?: number;
}

/**
 * What the directory calls a tunnel's item: `name` (a subdomain), `port`, or `host`.
 *
 * @example
 * ```ts
 * import { directoryItem } from "./tunnel_claim.ts";
 * console.log(directoryItem({ name: "tcp:20022", port: 20022, custom: false })); // { kind: "port", value: "20022" }
 * ```
 */
export function directoryItem(
  tunnel: { name: string; port: number | undefined; custom: boolean },
): { kind: DirectoryKind; value: string } {
  if (tunnel.port !== undefined) return { kind: "port", value: String(tunnel.port) };
  return { kind: tunnel.custom ? "host" : "name", value: tunnel.name };
}

/**
 * Claims `tunnel`'s item for it (its uid as the session, its lease nonce as the
 * holder who may reclaim it through any node); on success the claim is kept on
 * the tunnel. `takeover` says when another session of the same holder may be
 * replaced. Resolves with a refusal when another session holds it, it is held
 * for another client, or Redis cannot be asked.
 */
export async function claimInCluster(
  cluster: ClusterNode,
  tunnel: ServerTunnel,
  what: string,
  takeover: Takeover,
): Promise<ClusterRefusal | undefined> {
  const { kind, value } = directoryItem(tunnel);
  const tcp = kind === "port";
  try {
    const result = await cluster.claim(kind, value, {
      session: tunnel.uid,
      holder: tunnel.leaseNonce,
      takeover,
    });
    if (result.ok) {
      tunnel.claim = result.claim;
      return undefined;
    }
    return takenRefusal(result.entry, what, tcp);
  } catch (e) {
    if (!(e instanceof DirectoryError) || e.code !== "unavailable") throw e;
    return {
      code: "unavailable",
      message: `Cannot register ${what}: the cluster's registry is unavailable, retry shortly`,
    };
  }
}

function takenRefusal(entry: DirectoryEntry, what: string, tcp: boolean): ClusterRefusal {
  if (entry.session === "") {
    const leftMs = Math.max(0, entry.expiresAt - Date.now());
    return {
      code: tcp ? "port-reserved" : "subdomain-reserved",
      message: `Cannot register ${what}: reserved for its previous client for another ` +
        `${Math.ceil(leftMs / 1000)} s`,
      retryAfterMs: leftMs,
    };
  }
  return {
    code: tcp ? "port-taken" : "subdomain-taken",
    message: `Cannot register ${what}: already in use (through node ${entry.node})`,
  };
}

/**
 * A tunnel ended: its claim released, or with `holdMs` kept that long for its
 * client alone (it went away without goodbye), in the background.
 */
export function releaseInCluster(
  cluster: ClusterNode,
  tunnel: ServerTunnel,
  holdMs: number,
  log: Logger,
): void {
  const claim: Claim | undefined = tunnel.claim;
  if (!claim) return;
  tunnel.claim = undefined;
  cluster.release(claim, holdMs, log);
  log.debug("Cluster claim released", { item: itemOf(claim), hold_ms: holdMs });
}
