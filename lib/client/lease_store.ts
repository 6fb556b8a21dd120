// Where a client keeps its leases between runs: a small JSON file in the user's cache.

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

/**
 * Leases by server and subdomain, in a JSON file written atomically (temp file,
 * then rename). Failures to read or write only lose the lease: they are logged
 * by the caller, never fatal.
 */
export class LeaseStore {
  #path: string;

  /** A store in the file at `path` (created with its folder when first written). */
  constructor(path: string) {
    this.#path = path;
  }

  /** The lease saved for `subdomain` on `server`, if any. */
  async get(server: string, subdomain: string): Promise<string | undefined> {
    return (await this.#read())[`${server} ${subdomain}`]?.lease;
  }

  /** Saves (or, with `undefined`, forgets) the lease for `subdomain` on `server`. */
  async set(server: string, subdomain: string, lease: string | undefined): Promise<void> {
    const dir = this.#path.slice(0, this.#path.lastIndexOf("/"));
    if (dir) await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    // Clients that start together share the file: lock a side file around the
    // read-modify-write, so that no one's lease is lost.
    const lock = await Deno.open(`${this.#path}.lock`, { create: true, write: true, mode: 0o600 });
    try {
      await lock.lock(true);
      const entries = await this.#read();
      const key = `${server} ${subdomain}`;
      if (lease === undefined) {
        if (!(key in entries)) return;
        delete entries[key];
      } else {
        entries[key] = { lease, saved: new Date().toISOString() };
      }
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

  async #read(): Promise<Entries> {
    try {
      const parsed = JSON.parse(await Deno.readTextFile(this.#path));
      return typeof parsed === "object" && parsed !== null ? parsed as Entries : {};
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof SyntaxError) return {};
      throw e;
    }
  }
}

/**
 * One tunnel's leases on one server, through an optional store: a failure to
 * read or write the file only loses the lease, and is logged.
 */
export class LeaseKeeper {
  #store: LeaseStore | undefined;
  #server: string;
  #log: Logger;

  /** Keeps leases for `server` in `store` (none: in memory only, by the caller). */
  constructor(store: LeaseStore | undefined, server: string, log: Logger) {
    this.#store = store;
    this.#server = server;
    this.#log = log;
  }

  /** The lease saved for `subdomain`, if any (and readable). */
  async load(subdomain: string): Promise<string | undefined> {
    try {
      return await this.#store?.get(this.#server, subdomain);
    } catch (e) {
      this.#log.warn("Cannot read lease file", { error: describeError(e) });
      return undefined;
    }
  }

  /** Saves the lease for `subdomain`, or forgets it (`undefined`). */
  async save(subdomain: string, lease: string | undefined): Promise<void> {
    try {
      await this.#store?.set(this.#server, subdomain, lease);
    } catch (e) {
      this.#log.warn("Cannot write lease file", { error: describeError(e) });
    }
  }
}
