// Where a client keeps its leases between runs: a small JSON file in the user's cache.

import { MAX_LEASE_LENGTH } from "../limits.ts";
import { describeError, type Logger } from "../log.ts";

/** The default lease file: `$XDG_CACHE_HOME/gotunnel/leases.json`, else under `~/.cache`. */
export function defaultLeaseFile(): string | undefined {
  try {
    const cache = Deno.env.get("XDG_CACHE_HOME") ||
      (Deno.env.get("HOME") ? `${Deno.env.get("HOME")}/.cache` : undefined);
    return cache ? `${cache}/gotunnel/leases.json` : undefined;
  } catch {
    return undefined; // no env permission: keep leases in memory only
  }
}

type Entries = Record<string, { lease: string; saved: string }>;

/** The name of a lease: a subdomain, a hostname, or `tcp:<port>`. */
const LEASE_NAME = /^(?:[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})*|tcp:\d{1,5})$/;
/** The rest of a lease as the server issues it: `.<nonce>.<issued-at>.<signature>`. */
const LEASE_TAIL = /\.[A-Za-z0-9_-]{1,64}\.\d{1,16}\.[A-Za-z0-9_-]{1,128}$/;

/**
 * Why the entry under `key` (`"<server> <name>"`) is unusable, if it is: not
 * an object with a string `lease` of the server's shape
 * (`v1.<name>.<nonce>.<issued-at>.<signature>`) for that name.
 */
export function invalidLeaseEntry(key: string, value: unknown): string | undefined {
  const name = key.slice(key.lastIndexOf(" ") + 1);
  if (typeof value !== "object" || value === null) return "not an object";
  const lease = (value as { lease?: unknown }).lease;
  if (typeof lease !== "string") return "no lease string";
  if (lease.length > MAX_LEASE_LENGTH) return `a lease of ${lease.length} characters`;
  const tail = LEASE_TAIL.exec(lease);
  if (!lease.startsWith("v1.") || !tail) return "not a lease";
  const leased = lease.slice(3, tail.index);
  if (!LEASE_NAME.test(leased)) return "not a lease";
  if (leased !== name) return `a lease for "${leased}" under "${name}"`;
  return undefined;
}

/**
 * Leases by server and subdomain, in a JSON file written atomically (temp file,
 * then rename). Failures to read or write only lose the lease: they are logged
 * by the caller, never fatal. Entries of the wrong shape (a hand edit, another
 * program, a truncated write) are dropped with a warning, and the file is
 * rewritten without them; they are never sent.
 */
export class LeaseStore {
  #path: string;
  #warn: (message: string) => void;

  /**
   * A store in the file at `path` (created with its folder when first written);
   * `warn` hears about entries that were dropped.
   */
  constructor(path: string, warn: (message: string) => void = () => {}) {
    this.#path = path;
    this.#warn = warn;
  }

  /**
   * The lease saved for `subdomain` on `server`, if any; given the servers of
   * one cluster (one lease key), the one saved last on any of them.
   */
  async get(server: string | readonly string[], subdomain: string): Promise<string | undefined> {
    const { entries, dropped } = await this.#read();
    if (dropped) await this.#update(() => {}, false); // rewritten without the bad entries
    let found: Entries[string] | undefined;
    for (const one of typeof server === "string" ? [server] : server) {
      const entry = entries[`${one} ${subdomain}`];
      if (entry && (!found || entry.saved > found.saved)) found = entry; // ISO times sort
    }
    return found?.lease;
  }

  /**
   * Saves (or, with `undefined`, forgets) the lease for `subdomain` on
   * `server`; given the servers of one cluster, it is saved for the first and
   * forgotten for the others (a lease is the cluster's, whichever node issued it).
   */
  set(
    server: string | readonly string[],
    subdomain: string,
    lease: string | undefined,
  ): Promise<void> {
    const [first, ...others] = typeof server === "string" ? [server] : server;
    if (first === undefined) return Promise.reject(new TypeError("Cannot save a lease: no server"));
    const key = `${first} ${subdomain}`;
    if (lease !== undefined && invalidLeaseEntry(key, { lease })) {
      return Promise.reject(new TypeError(`Cannot save an invalid lease for ${key}`));
    }
    return this.#update((entries) => {
      for (const other of others) delete entries[`${other} ${subdomain}`];
      if (lease === undefined) delete entries[key];
      else entries[key] = { lease, saved: new Date().toISOString() };
    });
  }

  // Read, change and write the file under a lock: clients that start together share it.
  async #update(change: (entries: Entries) => void, warn = true): Promise<void> {
    const dir = this.#path.slice(0, this.#path.lastIndexOf("/"));
    if (dir) await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const lock = await Deno.open(`${this.#path}.lock`, { create: true, write: true, mode: 0o600 });
    try {
      await lock.lock(true);
      const { entries, dropped } = await this.#read(warn);
      const before = JSON.stringify(entries);
      change(entries);
      if (!dropped && JSON.stringify(entries) === before) return;
      const temp = `${this.#path}.${crypto.randomUUID()}.tmp`;
      try {
        await Deno.writeTextFile(temp, JSON.stringify(entries, null, 2) + "\n", { mode: 0o600 });
        await Deno.rename(temp, this.#path);
      } catch (e) {
        await Deno.remove(temp).catch(() => {});
        throw e;
      }
    } finally {
      lock.close(); // releases the lock
    }
  }

  async #read(warn = true): Promise<{ entries: Entries; dropped: boolean }> {
    const say = warn ? this.#warn : () => {};
    let parsed: unknown;
    try {
      parsed = JSON.parse(await Deno.readTextFile(this.#path));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return { entries: {}, dropped: false };
      if (!(e instanceof SyntaxError)) throw e;
      say(`Lease file ${this.#path} is not JSON: starting it afresh`);
      return { entries: {}, dropped: true };
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      say(`Lease file ${this.#path} does not hold an object: starting it afresh`);
      return { entries: {}, dropped: true };
    }
    const entries: Entries = {};
    let dropped = false;
    for (const [key, value] of Object.entries(parsed)) {
      const why = invalidLeaseEntry(key, value);
      if (why === undefined) entries[key] = value as Entries[string];
      else {
        dropped = true;
        say(`Dropped the lease for ${JSON.stringify(key)} from ${this.#path}: ${why}`);
      }
    }
    return { entries, dropped };
  }
}

/**
 * A client's leases on its servers (one cluster), through an optional store: a
 * failure to read or write the file only loses the lease, and is logged. A
 * lease saved while on one server is presented to any other of the list.
 */
export class LeaseKeeper {
  #store: LeaseStore | undefined;
  #servers: readonly string[];
  #current: string;
  #log: Logger;

  /** Keeps leases for `servers` in `store` (none: in memory only, by the caller). */
  constructor(store: LeaseStore | undefined, servers: string | readonly string[], log: Logger) {
    this.#store = store;
    this.#servers = typeof servers === "string" ? [servers] : servers;
    this.#current = this.#servers[0] ?? "";
    this.#log = log;
  }

  /**
   * A keeper for `servers` whose leases live in `file` (`false`: in memory
   * only, by the caller; undefined: the default file), warnings to `log`.
   *
   * @example Leases in memory only, for two nodes of one cluster
   * ```ts
   * import { LeaseKeeper } from "./lease_store.ts";
   * import { silentLogger } from "../log.ts";
   * const keeper = LeaseKeeper.inFile(false, ["https://a.example", "https://b.example"], silentLogger);
   * console.log(await keeper.load("demo")); // undefined
   * ```
   */
  static inFile(
    file: string | false | undefined,
    servers: readonly string[],
    log: Logger,
  ): LeaseKeeper {
    const path = file === false ? undefined : file ?? defaultLeaseFile();
    const store = path === undefined ? undefined : new LeaseStore(path, (m) => log.warn(m));
    return new LeaseKeeper(store, servers, log);
  }

  /** Leases saved from now on are saved for `server` (the one connected to). */
  use(server: string): void {
    this.#current = server;
  }

  /** The lease saved for `subdomain` on any of the servers, if any (and readable). */
  async load(subdomain: string): Promise<string | undefined> {
    try {
      return await this.#store?.get(this.#servers, subdomain);
    } catch (e) {
      this.#log.warn("Cannot read lease file", { error: describeError(e) });
      return undefined;
    }
  }

  /** Saves the lease for `subdomain`, or forgets it (`undefined`), for all the servers. */
  async save(subdomain: string, lease: string | undefined): Promise<void> {
    const others = this.#servers.filter((s) => s !== this.#current);
    try {
      await this.#store?.set([this.#current, ...others], subdomain, lease);
    } catch (e) {
      this.#log.warn("Cannot write lease file", { error: describeError(e) });
    }
  }
}
