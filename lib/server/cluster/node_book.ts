// The cluster's nodes as one node sees them: its own record kept alive in Redis
// (announced, renewed, retired), and the others' records looked up and cached.

import { sleep } from "../../io.ts";
import type { ClusterTimings } from "./timings.ts";
import type { Logger } from "../../log.ts";
import { LookupCache } from "./cache.ts";
import { DirectoryError } from "./errors.ts";
import { decodeNode, encodeNode, type NodeRecord } from "./records.ts";
import { readReply, SCRIPTS } from "./scripts.ts";
import { type LuaScript, luaScript, type RedisLink } from "./redis_link.ts";

/** Node records read by one SCAN at most (a cluster is a handful of nodes; this bounds a stranger's keys). */
const MAX_LISTED_NODES = 1_000;

/**
 * What a node book needs.
 *
 * @example
 * ```ts
 * import { DEFAULT_CLUSTER_TIMINGS } from "./timings.ts";
 * import { silentLogger } from "../../log.ts";
 * import type { NodeBookOptions } from "./node_book.ts";
 * const options: NodeBookOptions = {
 *   prefix: "gotunnel:",
 *   channel: "gotunnel:changes",
 *   record: { id: "a:1", addr: "10.0.0.1:1", keyFingerprint: "", instance: "i" },
 *   timings: DEFAULT_CLUSTER_TIMINGS,
 *   log: silentLogger,
 * };
 * console.log(options.record.id); // a:1
 * ```
 */
export interface NodeBookOptions {
  /** The key prefix (`gotunnel:`). */
  prefix: string;
  /** The change channel. */
  channel: string;
  /** This node's record. */
  record: NodeRecord;
  /** TTLs and bounds. */
  timings: ClusterTimings;
  /** Where conflicts are said. */
  log: Logger;
}

/**
 * This node's record, and the others'. Records are cached until they lapse
 * (at most the cache's max age); a `node` change (one came or went) drops the
 * cached one.
 *
 * @example
 * ```ts ignore
 * // Made by the directory: `directory.nodeRecord("b:8080")` and `directory.nodes()` use it.
 * const record = await directory.nodeRecord("b:8080");
 * console.log(record?.addr); // 10.0.0.2:8080
 * ```
 */
export class NodeBook {
  #link: RedisLink;
  #options: NodeBookOptions;
  #cache: LookupCache<NodeRecord>;
  #scripts: Promise<{ announce: LuaScript; retire: LuaScript; lookup: LuaScript }>;
  #conflict = false;

  /** A book that speaks through `link`. */
  constructor(link: RedisLink, options: NodeBookOptions) {
    this.#link = link;
    this.#options = options;
    this.#cache = new LookupCache(Math.min(options.timings.cacheMaxEntries, MAX_LISTED_NODES));
    this.#scripts = (async () => ({
      announce: await luaScript(SCRIPTS.announce),
      retire: await luaScript(SCRIPTS.retire),
      lookup: await luaScript(SCRIPTS.lookup),
    }))();
  }

  get #key(): string {
    return `${this.#options.prefix}node:${this.#options.record.id}`;
  }

  /**
   * Announces this node. If another live process holds the id, waits for its
   * record to lapse (a process that died: up to the node TTL), then throws
   * DirectoryError `node-id-taken` if it is still held.
   */
  async announce(signal: AbortSignal): Promise<void> {
    const end = Date.now() + this.#options.timings.nodeTtlMs +
      this.#options.timings.commandTimeoutMs;
    for (;;) {
      const held = await this.#announceOnce();
      if (held === undefined || signal.aborted) return;
      if (Date.now() + held.ttlMs > end) {
        throw new DirectoryError(
          "node-id-taken",
          `Cannot join the cluster as node "${this.#options.record.id}": a live node at ` +
            `${held.addr} announces this id (give each node its own --node-id)`,
        );
      }
      await sleep(Math.max(10, held.ttlMs), signal);
    }
  }

  /** Keeps this node's record alive (every tick); says so once if another process took the id. */
  async heartbeat(): Promise<void> {
    const held = await this.#announceOnce();
    if (held && !this.#conflict) {
      this.#options.log.error("Another live node announces this node id", {
        node: this.#options.record.id,
        addr: held.addr,
      });
    }
    this.#conflict = held !== undefined;
  }

  /** Takes this node's record away, if it is still this process's. */
  async retire(): Promise<void> {
    if (!this.#link.up) return;
    const { retire } = await this.#scripts;
    const { record, channel } = this.#options;
    await this.#link.script(retire, [this.#key], [record.instance, channel, record.id]);
  }

  /** The record of node `id`: cached, else asked (within the command timeout). */
  async get(id: string): Promise<NodeRecord | undefined> {
    const slot = this.#cache.get(id);
    if (slot && slot.freshUntil > performance.now()) return slot.value;
    try {
      const { lookup } = await this.#scripts;
      const key = `${this.#options.prefix}node:${id}`;
      const reply = await this.#link.script(lookup, [key, `${this.#options.prefix}rev`], []);
      const [json, ttl] = reply as [string, number];
      const record = json === "" ? undefined : decodeNode(id, json);
      const fresh = Math.min(record ? ttl : Infinity, this.#options.timings.cacheMaxAgeMs);
      this.#cache.set(id, record, performance.now() + fresh);
      return record;
    } catch (e) {
      if (slot && e instanceof DirectoryError && e.code === "unavailable") return slot.value;
      throw e;
    }
  }

  /** Every live node's record, by one SCAN of `<prefix>node:*` (bounded). */
  async list(): Promise<NodeRecord[]> {
    const prefix = `${this.#options.prefix}node:`;
    const keys: string[] = [];
    let cursor = "0";
    do {
      const reply = await this.#link.command([
        "SCAN",
        cursor,
        "MATCH",
        `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`,
        "COUNT",
        "100",
      ]) as [string, string[]];
      cursor = reply[0];
      keys.push(...reply[1]);
    } while (cursor !== "0" && keys.length < MAX_LISTED_NODES);
    if (keys.length === 0) return [];
    const values = await this.#link.command(["MGET", ...keys]) as (string | null)[];
    return keys.flatMap((key, i) => {
      const record = values[i] ? decodeNode(key.slice(prefix.length), values[i]!) : undefined;
      return record ? [record] : [];
    }).sort((a, b) => a.id < b.id ? -1 : 1);
  }

  /** Drops the cached record of `id` (a `node` change was heard). */
  forget(id: string): void {
    this.#cache.delete(id);
  }

  /** One announce: undefined when this node's record is set, else who holds the id and for how long. */
  async #announceOnce(): Promise<{ addr: string; ttlMs: number } | undefined> {
    const { announce } = await this.#scripts;
    const { record, channel, timings } = this.#options;
    const reply = readReply(
      await this.#link.script(announce, [this.#key], [
        encodeNode(record),
        record.instance,
        String(timings.nodeTtlMs),
        channel,
        record.id,
      ]),
    );
    if (reply.status !== "taken") return undefined;
    const other = decodeNode(record.id, String(reply.parts[0]));
    return { addr: other?.addr ?? "?", ttlMs: Number(reply.parts[1]) };
  }
}
