// What the cluster directory keeps in Redis (pure): keys, entry and node records as
// JSON, change messages. The Lua scripts that change them are in scripts.ts.

/**
 * What an entry names: a subdomain, a public TCP port, or a custom hostname.
 *
 * @example
 * ```ts
 * import type { DirectoryKind } from "./records.ts";
 * const kind: DirectoryKind = "host";
 * console.log(`${kind}:app.example.com`); // host:app.example.com
 * ```
 */
export type DirectoryKind = "name" | "port" | "host";

/**
 * The kinds, for checks.
 *
 * @example
 * ```ts
 * import { DIRECTORY_KINDS } from "./records.ts";
 * console.log(DIRECTORY_KINDS.includes("port")); // true
 * ```
 */
export const DIRECTORY_KINDS: readonly DirectoryKind[] = ["name", "port", "host"];

/**
 * Who holds a name (port, hostname) in the cluster. `session` is empty while
 * the name is only held for `holder` (its session ended without goodbye), and
 * `expiresAt` comes from Redis' remaining TTL and this node's clock.
 *
 * @example
 * ```ts
 * import type { DirectoryEntry } from "./records.ts";
 * const entry: DirectoryEntry = { node: "b", session: "", holder: "h", expiresAt: Date.now() + 5_000, revision: 9 };
 * console.log(entry.session === "" ? "reserved for its holder" : "taken"); // reserved for its holder
 * ```
 */
export interface DirectoryEntry {
  /** The id of the node that holds it. */
  readonly node: string;
  /** The holding session's id; "" while the name is held for its lease holder only. */
  readonly session: string;
  /** Who may reclaim it through any node (a lease nonce); "" for nobody but the session. */
  readonly holder: string;
  /** When it lapses unless renewed (ms since the epoch, this node's clock). */
  readonly expiresAt: number;
  /** The change that made it, from one counter for the whole directory: later changes are larger. */
  readonly revision: number;
}

/**
 * `kind:value`, as the directory's keys and the logs name an item.
 *
 * @example
 * ```ts
 * import { itemOf } from "./records.ts";
 * console.log(itemOf({ kind: "name", value: "demo" })); // name:demo
 * ```
 */
export function itemOf(item: { kind: DirectoryKind; value: string }): string {
  return `${item.kind}:${item.value}`;
}

/**
 * A node's record: where the others reach it.
 *
 * @example
 * ```ts
 * import type { NodeRecord } from "./records.ts";
 * const record: NodeRecord = { id: "b:8080", addr: "10.0.0.2:8080", keyFingerprint: "x", instance: "i" };
 * console.log(record.addr); // 10.0.0.2:8080
 * ```
 */
export interface NodeRecord {
  /** The node id. */
  readonly id: string;
  /** `HOST:PORT` where other nodes dial it. */
  readonly addr: string;
  /** Its cluster key's fingerprint (one that differs from ours: another key file). */
  readonly keyFingerprint: string;
  /** A random id of the process, so that two live processes with one node id are noticed. */
  readonly instance: string;
}

/**
 * Why `value` cannot be an item of `kind`, or undefined: a port is 1-65535 in
 * decimal; anything is 1-253 printable ASCII characters (no spaces).
 *
 * @example
 * ```ts
 * import { checkItem } from "./records.ts";
 * console.log(checkItem("port", "8080"), checkItem("port", "0")); // undefined port "0" is not 1-65535
 * ```
 */
export function checkItem(kind: DirectoryKind, value: string): string | undefined {
  if (!DIRECTORY_KINDS.includes(kind)) return `unknown kind ${JSON.stringify(kind)}`;
  if (kind === "port" && (!/^[1-9]\d{0,4}$/.test(value) || Number(value) > 65535)) {
    return `port ${JSON.stringify(value)} is not 1-65535`;
  }
  if (!/^[!-~]{1,253}$/.test(value)) {
    return `${kind} ${JSON.stringify(value)} is not 1-253 printable ASCII characters`;
  }
  return undefined;
}

/**
 * An entry as stored (`{"n":node,"s":session,"h":holder,"r":revision}`) with
 * `ttlMs` left at `now`; undefined if it is not one.
 *
 * @example
 * ```ts
 * import { decodeEntry } from "./records.ts";
 * const entry = decodeEntry('{"n":"a:8080","s":"s1","h":"","r":7}', 1_000, 0);
 * console.log(entry?.node, entry?.expiresAt, entry?.revision); // a:8080 1000 7
 * ```
 */
export function decodeEntry(json: string, ttlMs: number, now: number): DirectoryEntry | undefined {
  try {
    const v = JSON.parse(json) as Record<string, unknown>;
    if (typeof v.n !== "string" || typeof v.s !== "string" || typeof v.h !== "string") {
      return undefined;
    }
    const revision = Number.isSafeInteger(v.r) ? v.r as number : 0;
    return { node: v.n, session: v.s, holder: v.h, expiresAt: now + Math.max(0, ttlMs), revision };
  } catch {
    return undefined;
  }
}

/**
 * A node record as stored (`{"addr":...,"fp":...,"i":...}`); undefined if it is not one.
 *
 * @example
 * ```ts
 * import { decodeNode, encodeNode } from "./records.ts";
 * const record = { id: "a:8080", addr: "10.0.0.1:8080", keyFingerprint: "x", instance: "i" };
 * console.log(decodeNode("a:8080", encodeNode(record))?.addr); // 10.0.0.1:8080
 * ```
 */
export function decodeNode(id: string, json: string): NodeRecord | undefined {
  try {
    const v = JSON.parse(json) as Record<string, unknown>;
    if (typeof v.addr !== "string" || typeof v.fp !== "string" || typeof v.i !== "string") {
      return undefined;
    }
    return { id, addr: v.addr, keyFingerprint: v.fp, instance: v.i };
  } catch {
    return undefined;
  }
}

/**
 * The stored form of a node record (its id is in its key).
 *
 * @example
 * ```ts
 * import { encodeNode } from "./records.ts";
 * console.log(encodeNode({ id: "a:8080", addr: "10.0.0.1:8080", keyFingerprint: "x", instance: "i" }));
 * // {"addr":"10.0.0.1:8080","fp":"x","i":"i"}
 * ```
 */
export function encodeNode(record: NodeRecord): string {
  return JSON.stringify({ addr: record.addr, fp: record.keyFingerprint, i: record.instance });
}

/**
 * A change, published on the directory's channel by the script that made it:
 * `set` (claimed, taken over, restored, held) with the new entry and its TTL,
 * `del` (released), or `node` (a node record came or went). `item` is
 * `<kind>:<value>`, the key without its prefix.
 *
 * @example
 * ```ts
 * import type { ChangeMessage } from "./records.ts";
 * const change: ChangeMessage = { op: "del", item: "name:demo", revision: 12 };
 * console.log(change.op); // del
 * ```
 */
export type ChangeMessage =
  | { op: "set"; item: string; entry: string; ttlMs: number; revision: number }
  | { op: "del"; item: string; revision: number }
  | { op: "node"; id: string };

/**
 * Reads a change message; undefined for anything else (another version, a stranger).
 *
 * @example
 * ```ts
 * import { decodeChange } from "./records.ts";
 * console.log(decodeChange('{"op":"del","k":"name:demo","r":9}')); // { op: "del", item: "name:demo", revision: 9 }
 * ```
 */
export function decodeChange(text: string): ChangeMessage | undefined {
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    const revision = Number.isSafeInteger(v.r) ? v.r as number : 0;
    if (v.op === "set" && typeof v.k === "string" && typeof v.e === "string") {
      return { op: "set", item: v.k, entry: v.e, ttlMs: Number(v.ttl) || 0, revision };
    }
    if (v.op === "del" && typeof v.k === "string") return { op: "del", item: v.k, revision };
    if (v.op === "node" && typeof v.id === "string") return { op: "node", id: v.id };
  } catch {
    // not ours
  }
  return undefined;
}
