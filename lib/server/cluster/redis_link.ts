// One connection to Redis that stays up: node-redis (npm `redis`, loaded only when a
// node runs with --redis) for the protocol, with our own deadlines and reconnect loop
// around it, so that every wait has an end and a closed link leaves no timer behind.

import { sleep } from "../../io.ts";
import type { ClusterTimings } from "./timings.ts";
import { describeError, type Logger } from "../../log.ts";
import { DirectoryError } from "./errors.ts";
import type { RedisTarget } from "./redis_url.ts";

/**
 * The node-redis release this code is written and tested against.
 *
 * @example
 * ```ts
 * import { REDIS_CLIENT_VERSION } from "./redis_link.ts";
 * console.log(`npm:redis@${REDIS_CLIENT_VERSION}`); // npm:redis@6.3.1
 * ```
 */
export const REDIS_CLIENT_VERSION = "6.3.1";

/**
 * The module, named through a variable: with a literal specifier `deno run`
 * would download it (it would be in the module graph) even for a node without
 * `--redis`, and every server is one.
 */
const REDIS_MODULE = `npm:redis@${REDIS_CLIENT_VERSION}`;

// The small part of node-redis used here, typed by hand so that nothing of it is
// loaded (not even its types) unless cluster mode is on.
interface LibClient {
  connect(): Promise<unknown>;
  sendCommand(args: string[]): Promise<unknown>;
  subscribe(
    channels: string[],
    listener: (message: string, channel: string) => void,
  ): Promise<void>;
  close(): Promise<void>;
  destroy(): void;
  on(event: string, listener: (arg: unknown) => void): unknown;
}
interface RedisLib {
  createClient(options: Record<string, unknown>): LibClient;
  ErrorReply: new (...args: never[]) => Error;
}

let loading: Promise<RedisLib> | undefined;

/** Loads node-redis once (downloaded on first use); fails loudly if its shape is not the one used here. */
function loadLib(): Promise<RedisLib> {
  loading ??= (async () => {
    const module = await import(REDIS_MODULE);
    const lib = (module.default?.createClient ? module.default : module) as RedisLib;
    if (typeof lib.createClient !== "function" || typeof lib.ErrorReply !== "function") {
      throw new Error(`Cannot use npm:redis: not the ${REDIS_CLIENT_VERSION} API`);
    }
    return lib;
  })();
  loading.catch(() => loading = undefined);
  return loading;
}

/**
 * What a link is told, and how it behaves.
 *
 * @example
 * ```ts
 * import { DEFAULT_CLUSTER_TIMINGS } from "./timings.ts";
 * import { silentLogger } from "../../log.ts";
 * import type { RedisLinkOptions } from "./redis_link.ts";
 * import { parseRedisUrl } from "./redis_url.ts";
 * const options: RedisLinkOptions = {
 *   target: parseRedisUrl("redis://127.0.0.1:6379"),
 *   name: "gotunnel:a:sub",
 *   timings: DEFAULT_CLUSTER_TIMINGS,
 *   log: silentLogger,
 *   subscribe: { channels: ["gotunnel:changes"], onMessage: (m) => console.log(m) },
 * };
 * console.log(options.name); // gotunnel:a:sub
 * ```
 */
export interface RedisLinkOptions {
  /** Where Redis is. */
  target: RedisTarget;
  /** The connection's name in `CLIENT LIST` (`gotunnel:<node>:cmd`). */
  name: string;
  /** Deadlines and backoff. */
  timings: ClusterTimings;
  /** Where the link says it was lost and is back. */
  log: Logger;
  /** For `rediss://`: CA certificates (PEM) to trust instead of the system's. */
  caCerts?: string[] | undefined;
  /** A subscriber link: these channels, subscribed on every connection, and their messages. */
  subscribe?: { channels: string[]; onMessage(message: string, channel: string): void } | undefined;
  /** After every reconnect (not the first connect), once the link is up again. */
  onUp?: (() => void) | undefined;
  /** When the link is lost (Redis gone, or a command timed out). */
  onDown?: (() => void) | undefined;
}

/**
 * A Lua script run by its SHA-1 (EVALSHA), sent whole once when Redis does not know it.
 *
 * @example
 * ```ts
 * import { luaScript, type LuaScript } from "./redis_link.ts";
 * const script: LuaScript = await luaScript("return redis.call('PING')");
 * console.log(script.sha.length); // 40
 * ```
 */
export interface LuaScript {
  /** The script's source. */
  readonly source: string;
  /** Its SHA-1, hex. */
  readonly sha: string;
}

/**
 * A script ready for {@linkcode RedisLink.script}.
 *
 * @example
 * ```ts
 * import { luaScript } from "./redis_link.ts";
 * const script = await luaScript("return 1");
 * console.log(script.sha); // e0e1f9fabfc9d4800c877a703b823ac0578ff8db
 * ```
 */
export async function luaScript(source: string): Promise<LuaScript> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(source));
  const sha = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  return { source, sha };
}

/**
 * A connection to Redis that reconnects by itself: node-redis' own reconnect
 * is off (its backoff timer cannot be cancelled), and this link runs the loop,
 * with exponential backoff and jitter. Every command has a deadline; one that
 * passes it counts the connection as lost (a Redis that stopped answering),
 * which starts a reconnect. While the link is down, commands fail at once with
 * `DirectoryError("unavailable")`.
 *
 * @example
 * ```ts ignore
 * import { DEFAULT_CLUSTER_TIMINGS } from "./timings.ts";
 * import { silentLogger } from "../../log.ts";
 * import { RedisLink } from "./redis_link.ts";
 * import { parseRedisUrl } from "./redis_url.ts";
 * await using link = await RedisLink.open({
 *   target: parseRedisUrl("redis://127.0.0.1:6379"),
 *   name: "gotunnel:example",
 *   timings: DEFAULT_CLUSTER_TIMINGS,
 *   log: silentLogger,
 * });
 * console.log(await link.command(["PING"])); // PONG
 * ```
 */
export class RedisLink {
  #options: RedisLinkOptions;
  #lib: RedisLib;
  #client: LibClient | undefined;
  #closing = new AbortController();
  /** The reconnect loop, while it runs (it clears this itself, before it says the link is up). */
  #reconnecting: Promise<void> | undefined;
  #known = new Set<string>();

  private constructor(options: RedisLinkOptions, lib: RedisLib) {
    this.#options = options;
    this.#lib = lib;
  }

  /**
   * Connects (within `connectTimeoutMs`) and subscribes if asked. Throws
   * DirectoryError `unavailable` when Redis cannot be reached, `redis` when it
   * refuses (a wrong password or database).
   */
  static async open(options: RedisLinkOptions): Promise<RedisLink> {
    const link = new RedisLink(options, await loadLib());
    link.#client = await link.#connect();
    return link;
  }

  /** Whether a connection is up now. */
  get up(): boolean {
    return this.#client !== undefined;
  }

  /** Runs one command within `commandTimeoutMs`; its reply as node-redis gives it (RESP2). */
  async command(args: string[]): Promise<unknown> {
    const client = this.#client;
    if (this.#closing.signal.aborted) {
      throw new DirectoryError("closed", `Cannot run ${args[0]}: the directory is closed`);
    }
    if (!client) throw new DirectoryError("unavailable", `Cannot run ${args[0]}: Redis is down`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new DirectoryError(
            "unavailable",
            `Cannot run ${
              args[0]
            }: Redis did not answer within ${this.#options.timings.commandTimeoutMs} ms`,
          ),
        );
        this.#lost(client, "a command timed out");
      }, this.#options.timings.commandTimeoutMs);
    });
    const sent = client.sendCommand(args);
    sent.catch(() => {}); // after a timeout, the answer (or failure) is nobody's
    try {
      return await Promise.race([sent, expired]);
    } catch (e) {
      throw this.#wrap(e, `Cannot run ${args[0]}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs `script` by its SHA-1, or whole when Redis does not know it yet (a new or restarted Redis). */
  async script(script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args];
    if (this.#known.has(script.sha)) {
      try {
        return await this.command(["EVALSHA", script.sha, ...tail]);
      } catch (e) {
        if (!(e instanceof DirectoryError && e.message.includes("NOSCRIPT"))) throw e;
        this.#known.delete(script.sha);
      }
    }
    const reply = await this.command(["EVAL", script.source, ...tail]);
    this.#known.add(script.sha);
    return reply;
  }

  /** Stops reconnecting and closes the connection (commands in flight get `closeTimeoutMs`). */
  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    await this.#reconnecting;
    const client = this.#client;
    this.#client = undefined;
    if (client) await this.#shut(client, true);
  }

  /** Same as {@linkcode RedisLink.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** One connection attempt, bounded by `connectTimeoutMs`; subscribed when asked. */
  async #connect(): Promise<LibClient> {
    const { target, timings, caCerts, subscribe } = this.#options;
    const client = this.#lib.createClient({
      url: target.url,
      name: this.#options.name,
      RESP: 2,
      disableClientInfo: true,
      maintNotifications: "disabled",
      disableOfflineQueue: true,
      socket: {
        connectTimeout: timings.connectTimeoutMs,
        reconnectStrategy: false,
        ...(target.tls && caCerts ? { ca: caCerts } : {}),
      },
    });
    // Errors come again through `terminated` or the failed call; kept at debug.
    client.on("error", (e) =>
      this.#options.log.debug("Redis client error", {
        link: this.#options.name,
        error: describeError(e),
      }));
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onClose: (() => void) | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${timings.connectTimeoutMs} ms`)),
        timings.connectTimeoutMs,
      );
      onClose = () => reject(new Error("the link is closing"));
      this.#closing.signal.addEventListener("abort", onClose, { once: true });
    });
    try {
      const connecting = client.connect();
      connecting.catch(() => {});
      await Promise.race([connecting, expired]);
      if (subscribe) {
        const subscribing = client.subscribe(subscribe.channels, subscribe.onMessage);
        subscribing.catch(() => {});
        await Promise.race([subscribing, expired]);
      }
    } catch (e) {
      client.destroy();
      throw this.#wrap(e, `Cannot connect to Redis at ${target.redacted}`);
    } finally {
      clearTimeout(timer);
      this.#closing.signal.removeEventListener("abort", onClose!);
    }
    client.on("terminated", (cause) => this.#lost(client, describeError(cause)));
    return client;
  }

  /** `client` stopped working: drop it, and reconnect unless closing. */
  #lost(client: LibClient, why: string): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    void this.#shut(client, false);
    if (this.#closing.signal.aborted) return;
    this.#options.log.warn("Lost the connection to Redis", {
      redis: this.#options.target.redacted,
      link: this.#options.name,
      why,
    });
    this.#options.onDown?.();
    this.#reconnecting ??= this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    const { reconnectMinMs, reconnectMaxMs } = this.#options.timings;
    const signal = this.#closing.signal;
    for (let attempt = 0; !signal.aborted; attempt++) {
      const ceiling = Math.min(reconnectMaxMs, reconnectMinMs * 2 ** Math.min(attempt, 30));
      await sleep(ceiling / 2 + Math.random() * ceiling / 2, signal);
      if (signal.aborted) return;
      let client: LibClient;
      try {
        client = await this.#connect();
      } catch (e) {
        this.#options.log.debug("Cannot reconnect to Redis yet", {
          redis: this.#options.target.redacted,
          link: this.#options.name,
          error: describeError(e),
        });
        continue;
      }
      if (signal.aborted) return void await this.#shut(client, false);
      this.#client = client;
      this.#reconnecting = undefined; // from here, a new loss starts a new loop
      this.#known.clear(); // a restarted Redis has forgotten the scripts
      this.#options.log.info("Reconnected to Redis", {
        redis: this.#options.target.redacted,
        link: this.#options.name,
      });
      this.#options.onUp?.();
      return;
    }
  }

  /** Closes `client`: gracefully within `closeTimeoutMs` (then cut), or cut at once. */
  async #shut(client: LibClient, graceful: boolean): Promise<void> {
    if (graceful) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const closed = client.close().catch(() => {});
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#options.timings.closeTimeoutMs);
      });
      await Promise.race([closed, late]);
      clearTimeout(timer);
    }
    client.destroy();
  }

  #wrap(e: unknown, action: string): DirectoryError {
    if (e instanceof DirectoryError) return e;
    const transient = /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN)\b/.test(
      (e as Error)?.message ?? "",
    );
    if (e instanceof this.#lib.ErrorReply && !transient) {
      return new DirectoryError("redis", `${action}: Redis answered ${describeError(e)}`, {
        cause: e,
      });
    }
    return new DirectoryError("unavailable", `${action}: ${describeError(e)}`, { cause: e });
  }
}
