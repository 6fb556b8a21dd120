// The Lua scripts that change the cluster directory atomically, and how their
// replies are read (pure). What they store is described in records.ts.

import { decodeEntry, type DirectoryEntry } from "./records.ts";
import { type LuaScript, luaScript } from "./redis_link.ts";

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
 * import { SCRIPTS } from "./scripts.ts";
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
 * import { readReply } from "./scripts.ts";
 * console.log(readReply(["taken", "{}", 500])); // { status: "taken", parts: [ "{}", 500 ] }
 * ```
 */
export function readReply(reply: unknown): { status: string; parts: (string | number)[] } {
  if (!Array.isArray(reply) || typeof reply[0] !== "string") {
    throw new TypeError(`Unexpected script reply ${JSON.stringify(reply)}`);
  }
  return { status: reply[0], parts: reply.slice(1) as (string | number)[] };
}

/**
 * An entry from a script's reply; a TypeError if Redis holds something that is not one.
 *
 * @example
 * ```ts
 * import { readEntry } from "./scripts.ts";
 * const entry = readEntry("name:demo", '{"n":"a","s":"s1","h":"h","r":3}', 5_000, 0);
 * console.log(entry.node, entry.expiresAt); // a 5000
 * ```
 */
export function readEntry(
  item: string,
  json: unknown,
  ttlMs: unknown,
  now: number,
): DirectoryEntry {
  const entry = decodeEntry(String(json), Number(ttlMs), now);
  if (!entry) throw new TypeError(`Unreadable directory entry for ${item}: ${String(json)}`);
  return entry;
}

/** The scripts a directory runs, ready (their SHA-1 computed). */
export interface DirectoryScripts {
  /** See LOOKUP_LUA. */
  lookup: LuaScript;
  /** See CLAIM_LUA. */
  claim: LuaScript;
  /** See RENEW_LUA. */
  renew: LuaScript;
  /** See RELEASE_LUA. */
  release: LuaScript;
}

/**
 * The directory's scripts, ready to run.
 *
 * @example
 * ```ts
 * import { directoryScripts } from "./scripts.ts";
 * console.log((await directoryScripts()).claim.sha.length); // 40
 * ```
 */
export async function directoryScripts(): Promise<DirectoryScripts> {
  return {
    lookup: await luaScript(SCRIPTS.lookup),
    claim: await luaScript(SCRIPTS.claim),
    renew: await luaScript(SCRIPTS.renew),
    release: await luaScript(SCRIPTS.release),
  };
}
