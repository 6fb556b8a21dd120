// The cluster directory: which node holds which name, TCP port or custom hostname,
// shared by every node through Redis. Claims are atomic (Lua), renewed by their
// node, released by their owner only; lookups come from a per-node cache kept
// current by the changes every script publishes.

import { CLUSTER_RENEW_FRACTION, type ClusterTimings, DEFAULT_CLUSTER_TIMINGS } from "./timings.ts";
import { describeError, type Logger, silentLogger } from "../../log.ts";
import { randomToken } from "../../names.ts";
import { DirectoryError } from "./errors.ts";
import type { Claim, ClaimResult, ReleaseResult, Takeover } from "./claim.ts";
import { DEFAULT_KEY_PREFIX, type DirectoryOptions } from "./options.ts";
import { checkNodeId } from "./node_id.ts";
import { NodeBook } from "./node_book.ts";
import { DirectoryView } from "./view.ts";
import {
  checkItem,
  decodeChange,
  type DirectoryEntry,
  type DirectoryKind,
  itemOf,
  type NodeRecord,
} from "./records.ts";
import { type DirectoryScripts, directoryScripts, readEntry, readReply } from "./scripts.ts";
import { type LuaScript, RedisLink } from "./redis_link.ts";
import { parseRedisUrl } from "./redis_url.ts";

/** A claim this node holds, when it was last renewed, and the revision it holds it at. */
interface LiveClaim {
  claim: Claim;
  renewedAt: number;
  revision: number;
}

/**
 * Joins the cluster directory: connects to Redis twice (commands, and the
 * change channel), announces this node, and renews its record and its claims
 * until closed. Throws DirectoryError: `unavailable` if Redis cannot be reached
 * within the connect timeout, `redis` if it refuses, `node-id-taken` if a
 * live process holds this node id (one that died lapses first: this waits).
 *
 * @example Claim a name on one node, find it from another
 * ```ts ignore
 * import { openDirectory } from "./directory.ts";
 * const redis = "redis://127.0.0.1:6379/0";
 * await using a = await openDirectory({ redis, node: "a:8080", addr: "10.0.0.1:8080" });
 * await using b = await openDirectory({ redis, node: "b:8080", addr: "10.0.0.2:8080" });
 * const result = await a.claim("name", "demo", { session: "s1", holder: "lease-nonce" });
 * console.log(result.ok, (await b.lookup("name", "demo"))?.node); // true a:8080
 * ```
 */
export async function openDirectory(options: DirectoryOptions): Promise<Directory> {
  return await Directory.open(options);
}

/**
 * The directory as one node sees it; made by {@linkcode openDirectory}.
 *
 * @example Claim, look up, release
 * ```ts ignore
 * const result = await directory.claim("name", "demo", { session: tunnelId, holder: leaseNonce });
 * if (!result.ok) throw new Error(`held by ${result.entry.node}`);
 * console.log((await directory.lookup("name", "demo"))?.session === tunnelId); // true
 * await directory.release(result.claim, { holdMs: 60_000 }); // its client left without goodbye
 * ```
 */
export class Directory {
  /** This node's id. */
  readonly node: string;
  #prefix: string;
  #channel: string;
  #timings: ClusterTimings;
  #log: Logger;
  #onLost: DirectoryOptions["onLost"];
  #scripts: DirectoryScripts;
  #link!: RedisLink;
  #listener!: RedisLink;
  #book!: NodeBook;
  #view: DirectoryView;
  #claims = new Map<string, LiveClaim>();
  #closing = new AbortController();
  #ticking: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #reasserting: Promise<void> | undefined;

  private constructor(options: DirectoryOptions, scripts: DirectoryScripts) {
    const id = checkNodeId(options.node);
    if (!id.ok) throw new TypeError(id.reason);
    this.node = id.id;
    this.#prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
    this.#channel = `${this.#prefix}changes`;
    this.#timings = { ...DEFAULT_CLUSTER_TIMINGS, ...options.timings };
    this.#log = options.log ?? silentLogger;
    this.#onLost = options.onLost;
    this.#scripts = scripts;
    this.#view = new DirectoryView(
      this.#timings,
      (item) =>
        this.#run(`look up ${item.replace(":", ' "')}"`, this.#scripts.lookup, item, []) as Promise<
          [string, number]
        >,
    );
  }

  /** See {@linkcode openDirectory}. */
  static async open(options: DirectoryOptions): Promise<Directory> {
    const target = parseRedisUrl(options.redis);
    const d = new Directory(options, await directoryScripts());
    const common = { target, timings: d.#timings, log: d.#log, caCerts: options.caCerts };
    d.#link = await RedisLink.open({
      ...common,
      name: `gotunnel:${d.node}:cmd`,
      onUp: () => d.#reassertSoon(),
    });
    try {
      d.#listener = await RedisLink.open({
        ...common,
        name: `gotunnel:${d.node}:sub`,
        subscribe: { channels: [d.#channel], onMessage: (m) => d.#heard(m) },
        onDown: () => d.#view.listening(false),
        onUp: () => d.#view.listening(true),
      });
      d.#view.listening(true);
      d.#book = new NodeBook(d.#link, {
        prefix: d.#prefix,
        channel: d.#channel,
        record: {
          id: d.node,
          addr: options.addr,
          keyFingerprint: options.keyFingerprint ?? "",
          instance: randomToken(12),
        },
        timings: d.#timings,
        log: d.#log,
      });
      await d.#book.announce(d.#closing.signal);
    } catch (e) {
      await d.close();
      throw e;
    }
    d.#schedule();
    return d;
  }

  /** Whether Redis can be asked now (else claims fail and lookups answer from the cache). */
  get available(): boolean {
    return this.#link.up && !this.#closing.signal.aborted;
  }

  /** The claims this node holds (and renews). */
  claims(): Claim[] {
    return [...this.#claims.values()].map((c) => c.claim);
  }

  /**
   * Claims `value` of `kind` for `session`; see {@linkcode Takeover} for when
   * a claim with `holder` may replace another session's. A claim this node
   * makes is renewed by it until released (or lost: `onLost`). Throws
   * DirectoryError `unavailable` ("registry unavailable, retry") when Redis
   * cannot be asked, RangeError for a malformed value.
   */
  async claim(
    kind: DirectoryKind,
    value: string,
    options: { session: string; holder?: string; takeover?: Takeover },
  ): Promise<ClaimResult> {
    const why = checkItem(kind, value);
    if (why) throw new RangeError(`Cannot claim ${why}`);
    const claim: Claim = { kind, value, session: options.session, holder: options.holder ?? "" };
    const item = itemOf({ kind, value });
    const reply = readReply(
      await this.#run(`claim ${kind} "${value}"`, this.#scripts.claim, item, [
        this.node,
        claim.session,
        claim.holder,
        String(this.#timings.claimTtlMs),
        options.takeover ?? "if-owner-gone",
        `${this.#prefix}node:`,
        this.#channel,
        item,
      ]),
    );
    const now = Date.now();
    if (reply.status === "taken") {
      return { ok: false, entry: readEntry(item, reply.parts[0], reply.parts[1], now) };
    }
    const entry = readEntry(item, reply.parts[0], this.#timings.claimTtlMs, now);
    const replaced = reply.status === "took-over"
      ? readEntry(item, reply.parts[1], 0, now)
      : undefined;
    this.#claims.set(item, { claim, renewedAt: now, revision: entry.revision });
    this.#view.remember(item, entry, entry.revision, this.#timings.claimTtlMs);
    return { ok: true, claim, entry, replaced };
  }

  /**
   * Renews `claim` now (the directory does it by itself every
   * CLUSTER_RENEW_FRACTION of the claim TTL): `renewed`, `restored` (it had
   * lapsed and was free), or `lost` (reported to `onLost` too, if this node
   * still held it).
   */
  async renew(claim: Claim): Promise<"renewed" | "restored" | "lost"> {
    const item = itemOf(claim);
    const reply = readReply(
      await this.#run(`renew ${claim.kind} "${claim.value}"`, this.#scripts.renew, item, [
        this.node,
        claim.session,
        claim.holder,
        String(this.#timings.claimTtlMs),
        this.#channel,
        item,
      ]),
    );
    const now = Date.now();
    const live = this.#claims.get(item);
    const mine = live?.claim.session === claim.session ? live : undefined;
    if (reply.status === "lost") {
      if (mine) this.#lose(item, readEntry(item, reply.parts[0], reply.parts[1], now));
      return "lost";
    }
    const entry = readEntry(item, reply.parts[0], this.#timings.claimTtlMs, now);
    if (mine) {
      mine.renewedAt = now;
      mine.revision = entry.revision;
    }
    return reply.status === "restored" ? "restored" : "renewed";
  }

  /**
   * Releases `claim` if it is still this session's (compare-and-delete), or
   * with `holdMs` keeps it for its holder alone that long (a tunnel that went
   * away without goodbye). It stops being renewed first, whatever Redis says;
   * throws DirectoryError `unavailable` if Redis cannot be asked (the entry
   * then lapses after the claim TTL).
   */
  async release(claim: Claim, options: { holdMs?: number } = {}): Promise<ReleaseResult> {
    const item = itemOf(claim);
    if (this.#claims.get(item)?.claim.session === claim.session) this.#claims.delete(item);
    const reply = readReply(
      await this.#run(`release ${claim.kind} "${claim.value}"`, this.#scripts.release, item, [
        this.node,
        claim.session,
        String(Math.max(0, Math.round(options.holdMs ?? 0))),
        this.#channel,
        item,
      ]),
    );
    return reply.status as ReleaseResult;
  }

  /**
   * Who holds `value` of `kind`: from the cache while fresh, else from Redis
   * (within the command timeout; concurrent misses share one question). When
   * Redis cannot be asked, a stale cached answer is given; with none, throws
   * DirectoryError `unavailable`.
   */
  lookup(kind: DirectoryKind, value: string): Promise<DirectoryEntry | undefined> {
    return this.#view.lookup(`${kind}:${value}`);
  }

  /**
   * The cached answer for `value` of `kind`, without asking Redis: an entry,
   * null when known to be absent, undefined when nothing fresh is cached.
   */
  peek(kind: DirectoryKind, value: string): DirectoryEntry | null | undefined {
    return this.#view.peek(`${kind}:${value}`);
  }

  /** The record of node `id` (its address, key fingerprint), cached like entries. */
  nodeRecord(id: string): Promise<NodeRecord | undefined> {
    return this.#book.get(id);
  }

  /** Every live node's record (a SCAN: for status pages, not for each connection). */
  nodes(): Promise<NodeRecord[]> {
    return this.#book.list();
  }

  /**
   * Re-asserts this node and every claim it holds (renewing each, restoring
   * those that are gone, reporting those held by others to `onLost`). Runs by
   * itself after every reconnect to Redis.
   */
  async reassert(): Promise<void> {
    await this.#book.announce(this.#closing.signal);
    await Promise.all(this.claims().map((claim) => this.#renewQuietly(claim)));
  }

  /**
   * Stops renewing, takes this node's record away (so that its holders may
   * reclaim their names through other nodes at once) and closes both
   * connections. Claims are not released: they lapse after the claim TTL,
   * unless released before.
   */
  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    clearTimeout(this.#timer);
    await this.#ticking;
    await this.#reasserting;
    await this.#book?.retire().catch((e) =>
      this.#log.debug("Cannot retire this node's record", { error: describeError(e) })
    );
    await this.#listener?.close();
    await this.#link?.close();
  }

  /** Same as {@linkcode Directory.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #run(action: string, script: LuaScript, item: string, args: string[]): Promise<unknown> {
    try {
      const keys = [`${this.#prefix}${item}`, `${this.#prefix}rev`];
      return await this.#link.script(script, keys, args);
    } catch (e) {
      if (!(e instanceof DirectoryError)) throw e;
      const why = e.code === "unavailable" ? "registry unavailable, retry" : e.message;
      throw new DirectoryError(e.code, `Cannot ${action}: ${why}`, { cause: e });
    }
  }

  /** A change published by a script (this node's own too). */
  #heard(text: string): void {
    const change = decodeChange(text);
    if (!change) return;
    if (change.op === "node") return this.#book?.forget(change.id);
    const entry = this.#view.heard(change);
    const live = this.#claims.get(change.item);
    if (
      live && entry && change.revision > live.revision &&
      (entry.node !== this.node || entry.session !== live.claim.session)
    ) this.#lose(change.item, entry);
  }

  #lose(item: string, current: DirectoryEntry | undefined): void {
    const live = this.#claims.get(item);
    if (!live) return;
    this.#claims.delete(item);
    this.#log.warn("Lost a claim to another session", {
      item,
      node: current?.node,
      session: live.claim.session,
    });
    try {
      this.#onLost?.(live.claim, current);
    } catch (e) {
      this.#log.error("onLost failed", { item, error: describeError(e) });
    }
  }

  #reassertSoon(): void {
    this.#reasserting ??= this.reassert()
      .catch((e) => this.#log.warn("Cannot re-assert claims yet", { error: describeError(e) }))
      .finally(() => this.#reasserting = undefined);
  }

  async #renewQuietly(claim: Claim): Promise<void> {
    try {
      await this.renew(claim);
    } catch (e) {
      this.#log.debug("Cannot renew a claim yet", {
        item: itemOf(claim),
        error: describeError(e),
      });
    }
  }

  /** Every tick: the node record, then each claim due for renewal. */
  #schedule(): void {
    const { nodeTtlMs, claimTtlMs } = this.#timings;
    this.#timer = setTimeout(() => {
      this.#ticking = this.#tick().finally(() => {
        if (!this.#closing.signal.aborted) this.#schedule();
      });
    }, Math.min(nodeTtlMs, claimTtlMs) * CLUSTER_RENEW_FRACTION);
  }

  async #tick(): Promise<void> {
    if (!this.#link.up) return; // the reconnect re-asserts everything
    try {
      await this.#book.heartbeat();
    } catch (e) {
      this.#log.debug("Cannot renew this node's record", { error: describeError(e) });
    }
    const due = Date.now() - this.#timings.claimTtlMs * CLUSTER_RENEW_FRACTION;
    const claims = [...this.#claims.values()].filter((c) => c.renewedAt <= due);
    await Promise.all(claims.map((c) => this.#renewQuietly(c.claim)));
  }
}
