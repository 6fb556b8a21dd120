// Who a node is and where the other nodes reach it: `--node-id` and `--node-addr` (pure).

import { UsageError } from "../../cli.ts";
import { MAX_NODE_ID_LENGTH } from "./timings.ts";
import { normalizeHost } from "../../names.ts";

const NODE_ID = /^[a-z0-9](?:[a-z0-9._:-]*[a-z0-9])?$/;
const UNSPECIFIED = new Set(["0.0.0.0", "::", "0:0:0:0:0:0:0:0"]);

/**
 * Lowercases a node id and says why it is unusable, if it is: 1-128
 * characters of a-z, 0-9, ".", "_", ":" and "-", starting and ending with a
 * letter or digit (it becomes part of Redis keys and of every claim).
 *
 * @example
 * ```ts
 * import { checkNodeId } from "./node_id.ts";
 * console.log(checkNodeId("Edge-1:8080")); // { ok: true, id: "edge-1:8080" }
 * console.log(checkNodeId("edge 1").ok); // false
 * ```
 */
export function checkNodeId(id: string): { ok: true; id: string } | { ok: false; reason: string } {
  const lower = id.toLowerCase();
  if (lower.length <= MAX_NODE_ID_LENGTH && NODE_ID.test(lower)) return { ok: true, id: lower };
  return {
    ok: false,
    reason: `Invalid node id ${JSON.stringify(id)}: use 1-${MAX_NODE_ID_LENGTH} characters of ` +
      `a-z, 0-9, ".", "_", ":" and "-", starting and ending with a letter or digit`,
  };
}

/**
 * The default `--node-id`: this machine's hostname and the public port
 * (`edge-1:8080`), so two nodes on one machine differ by port. Characters a
 * node id may not hold become "-"; a hostname with none left gives `node:PORT`.
 *
 * @example
 * ```ts
 * import { defaultNodeId } from "./node_id.ts";
 * console.log(defaultNodeId("Edge-1.example", 8080)); // "edge-1.example:8080"
 * ```
 */
export function defaultNodeId(hostname: string, port: number): string {
  const suffix = `:${port}`;
  const host = hostname.toLowerCase().replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "")
    .slice(0, MAX_NODE_ID_LENGTH - suffix.length);
  return `${host === "" ? "node" : host}${suffix}`;
}

/**
 * Where the other nodes reach a node: a host (name or IP) and a port.
 *
 * @example
 * ```ts
 * import { formatNodeAddr, type NodeAddr } from "./node_id.ts";
 * const addr: NodeAddr = { hostname: "10.0.0.2", port: 8080 };
 * console.log(formatNodeAddr(addr)); // 10.0.0.2:8080
 * ```
 */
export interface NodeAddr {
  /** A DNS name or an IP address (IPv6 without brackets), lowercase. */
  hostname: string;
  /** The port of the node's one-port listener (or an internal address of it). */
  port: number;
}

/**
 * Reads `--node-addr HOST:PORT` (`[IPV6]:PORT` for IPv6). The port is
 * required and not 0, and the host is one others can dial: not 0.0.0.0 or ::.
 * Throws a UsageError that names the mistake.
 *
 * @example
 * ```ts
 * import { parseNodeAddr } from "./node_id.ts";
 * console.log(parseNodeAddr("10.0.0.2:8080")); // { hostname: "10.0.0.2", port: 8080 }
 * console.log(parseNodeAddr("[fd00::2]:8080").hostname); // "fd00::2"
 * ```
 */
export function parseNodeAddr(text: string): NodeAddr {
  const bad = (why: string): UsageError =>
    new UsageError(`Invalid --node-addr ${JSON.stringify(text)}: ${why}`);
  const match = /^(\[[^\]]*\]|[^:[\]]*):(\d{1,5})$/.exec(text);
  if (!match) throw bad("use HOST:PORT, e.g. 10.0.0.2:8080 or [fd00::2]:8080");
  const port = Number(match[2]);
  if (port < 1 || port > 65535) throw bad(`port ${match[2]} is outside 1-65535`);
  if (match[1] === "") throw bad("the host is missing");
  const host = normalizeHost(match[1]!);
  if (typeof host === "string") throw bad(host);
  if (UNSPECIFIED.has(host.host)) {
    throw bad(`${host.host} is where a node listens, not an address other nodes can dial`);
  }
  return { hostname: host.host, port };
}

/**
 * The default `--node-addr`: the address the node listens on, which must be
 * one others can dial. Throws a UsageError asking for `--node-addr` when it
 * listens on every address (0.0.0.0 or ::).
 *
 * @example
 * ```ts
 * import { defaultNodeAddr } from "./node_id.ts";
 * console.log(defaultNodeAddr("10.0.0.2", 8080)); // { hostname: "10.0.0.2", port: 8080 }
 * ```
 */
export function defaultNodeAddr(listenHostname: string, port: number): NodeAddr {
  const host = normalizeHost(listenHostname.includes(":") ? `[${listenHostname}]` : listenHostname);
  if (typeof host === "string" || UNSPECIFIED.has(host.host)) {
    throw new UsageError(
      `--node-addr HOST:PORT is needed: this node listens on ${listenHostname}, ` +
        "which other nodes cannot dial",
    );
  }
  return { hostname: host.host, port };
}

/**
 * `HOST:PORT` of a node address, IPv6 in brackets: what `parseNodeAddr` reads back.
 *
 * @example
 * ```ts
 * import { formatNodeAddr } from "./node_id.ts";
 * console.log(formatNodeAddr({ hostname: "fd00::2", port: 8080 })); // "[fd00::2]:8080"
 * ```
 */
export function formatNodeAddr(addr: NodeAddr): string {
  return `${addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname}:${addr.port}`;
}
