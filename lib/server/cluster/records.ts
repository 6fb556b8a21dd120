// What the cluster directory keeps in Redis, and how (pure): keys, entry and node
// records as JSON, change messages, and the Lua scripts that change entries atomically.

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

// The scripts. Each reads and writes one entry key (plus, for claims, the owner's
// node key, read only), so each change is atomic; each change is published from
// inside its script, so a message goes out exactly when the change happens. Each
// change takes a new revision from one counter (KEYS[2]), stored in the entry ("r")
// and sent with the message, so that a node can tell old news from new: pub/sub
// messages and command replies come on different connections, in no fixed order.
// Replies are arrays: a status word, then the entry (JSON) and its TTL as it stands.

const PRELUDE = `
local function decode(json)
  local ok, v = pcall(cjson.decode, json)
  if ok and type(v) == 'table' then return v end
  return nil
end
local function put(key, node, session, holder, ttl, channel, item)
  local r = redis.call('INCR', KEYS[2])
  local entry = cjson.encode({n = node, s = session, h = holder, r = r})
  redis.call('SET', key, entry, 'PX', ttl)
  redis.call('PUBLISH', channel, cjson.encode({op = 'set', k = item, e = entry, ttl = tonumber(ttl), r = r}))
  return entry
end
`;

/**
 * Looks an item up. KEYS[1] the item, KEYS[2] the revision counter.
 * Reply: {entry, ttl ms} | {"", the counter}: an absence is as recent as the counter.
 */
const LOOKUP_LUA = `
local v = redis.call('GET', KEYS[1])
if not v then return {'', tonumber(redis.call('GET', KEYS[2]) or '0')} end
return {v, redis.call('PTTL', KEYS[1])}
`;

/**
 * Claims an item. KEYS[1] the item, KEYS[2] the revision counter. ARGV: node,
 * session, holder, ttl ms, takeover ("never" | "if-owner-gone" | "always"),
 * node key prefix, channel, item.
 * Free (or unreadable): set it. Held by this very session: renew it. Held by
 * another session whose holder is this claim's (non-empty) holder: take it over
 * when `always`, or when `if-owner-gone` and the entry has no live session or its
 * node's record has lapsed (a dead node). Otherwise refuse.
 * Reply: {"claimed", entry} | {"renewed", entry} | {"took-over", entry, previous}
 * | {"taken", current, ttl}.
 */
const CLAIM_LUA = PRELUDE + `
local current = redis.call('GET', KEYS[1])
local previous = nil
if current then
  local e = decode(current)
  if e then
    if e.n == ARGV[1] and e.s == ARGV[2] then
      redis.call('PEXPIRE', KEYS[1], ARGV[4])
      return {'renewed', current}
    end
    local free = false
    if ARGV[3] ~= '' and e.h == ARGV[3] then
      if ARGV[5] == 'always' then
        free = true
      elseif ARGV[5] == 'if-owner-gone' then
        free = e.s == '' or redis.call('EXISTS', ARGV[6] .. tostring(e.n)) == 0
      end
    end
    if not free then return {'taken', current, redis.call('PTTL', KEYS[1])} end
    previous = current
  end
end
local entry = put(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[7], ARGV[8])
if previous then return {'took-over', entry, previous} end
return {'claimed', entry}
`;

/**
 * Renews a claim: compare-and-set by node and session, and restores it when it
 * is gone (it lapsed while Redis was away, or Redis restarted empty).
 * KEYS[1] the item, KEYS[2] the revision counter. ARGV: node, session, holder,
 * ttl ms, channel, item.
 * Reply: {"renewed", entry} | {"restored", entry} | {"lost", current, ttl}.
 */
const RENEW_LUA = PRELUDE + `
local current = redis.call('GET', KEYS[1])
if not current then
  return {'restored', put(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])}
end
local e = decode(current)
if e and e.n == ARGV[1] and e.s == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'renewed', current}
end
return {'lost', current, redis.call('PTTL', KEYS[1])}
`;

/**
 * Releases a claim: compare-and-delete by node and session, or with a hold time
 * (and a holder) keeps the item for its holder alone for that long.
 * KEYS[1] the item, KEYS[2] the revision counter. ARGV: node, session, hold ms
 * (0: delete), channel, item.
 * Reply: {"released"} | {"held", entry} | {"gone"} | {"not-owner", current, ttl}.
 */
const RELEASE_LUA = PRELUDE + `
local current = redis.call('GET', KEYS[1])
if not current then return {'gone'} end
local e = decode(current)
if not (e and e.n == ARGV[1] and e.s == ARGV[2]) then
  return {'not-owner', current, redis.call('PTTL', KEYS[1])}
end
if tonumber(ARGV[3]) > 0 and type(e.h) == 'string' and e.h ~= '' then
  return {'held', put(KEYS[1], ARGV[1], '', e.h, ARGV[3], ARGV[4], ARGV[5])}
end
local r = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[4], cjson.encode({op = 'del', k = ARGV[5], r = r}))
return {'released'}
`;

/**
 * Announces (or keeps alive) a node record, unless another live process holds
 * the id. KEYS[1] the node key. ARGV: record JSON, instance, ttl ms, channel, id.
 * Reply: {"announced"} (new: published) | {"renewed"} | {"taken", current, ttl}.
 */
const ANNOUNCE_LUA = PRELUDE + `
local current = redis.call('GET', KEYS[1])
if current then
  local e = decode(current)
  if e and e.i ~= ARGV[2] then return {'taken', current, redis.call('PTTL', KEYS[1])} end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return {'renewed'}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], cjson.encode({op = 'node', id = ARGV[5]}))
return {'announced'}
`;

/**
 * Takes a node record away if it is still this process's.
 * KEYS[1] the node key. ARGV: instance, channel, id. Reply: {"retired"} | {"not-mine"}.
 */
const RETIRE_LUA = PRELUDE + `
local current = redis.call('GET', KEYS[1])
local e = current and decode(current)
if not (e and e.i == ARGV[1]) then return {'not-mine'} end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], cjson.encode({op = 'node', id = ARGV[3]}))
return {'retired'}
`;

/**
 * The directory's Lua scripts, by what they do; each one's comment above says
 * its KEYS, ARGV and reply.
 *
 * @example
 * ```ts
 * import { SCRIPTS } from "./records.ts";
 * console.log(Object.keys(SCRIPTS).join(" ")); // lookup claim renew release announce retire
 * ```
 */
export const SCRIPTS = {
  lookup: LOOKUP_LUA,
  claim: CLAIM_LUA,
  renew: RENEW_LUA,
  release: RELEASE_LUA,
  announce: ANNOUNCE_LUA,
  retire: RETIRE_LUA,
} as const;

/**
 * A script's reply as a status word and its parts (entries as JSON, TTLs as numbers).
 *
 * @example
 * ```ts
 * import { readReply } from "./records.ts";
 * console.log(readReply(["taken", "{}", 500])); // { status: "taken", parts: [ "{}", 500 ] }
 * ```
 */
export function readReply(reply: unknown): { status: string; parts: (string | number)[] } {
  if (!Array.isArray(reply) || typeof reply[0] !== "string") {
    throw new TypeError(`Unexpected script reply ${JSON.stringify(reply)}`);
  }
  return { status: reply[0], parts: reply.slice(1) as (string | number)[] };
}
