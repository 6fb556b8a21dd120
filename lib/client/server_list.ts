// The servers a client may use (nodes of one cluster, sharing one lease key), tried in
// turn: a connect that fails moves on to the next server at once; only a round in
// which every server failed is backed off from (by lib/client/reconnect.ts).

import { TunnelError } from "../errors.ts";
import { describeError, type Logger } from "../log.ts";
import { parseServerUrl, type ServerTarget } from "./dial.ts";
import { FATAL_REFUSALS } from "./reconnect.ts";

/**
 * Splits a server list as people write it (`--server`, `$GOTUNNEL_SERVER`, a
 * config file's string): URLs separated by commas, spaces around them
 * ignored. Throws TypeError on an empty item (`a,,b`, a trailing comma).
 *
 * @example Two servers in one flag
 * ```ts
 * import { splitServerList } from "./server_list.ts";
 * const urls = splitServerList("https://a.example, https://b.example");
 * console.log(urls); // ["https://a.example", "https://b.example"]
 * ```
 */
export function splitServerList(text: string): string[] {
  const urls = text.split(",").map((url) => url.trim());
  if (urls.some((url) => url === "")) {
    throw new TypeError(
      `Empty item in the server list ${JSON.stringify(text)}: separate URLs with one comma`,
    );
  }
  return urls;
}

/**
 * Checks every server URL (`http://` or `https://`, scheme, host and port
 * only) and drops repeats; the TypeError names the bad one, and its place
 * when there are several. An empty list is a TypeError too.
 *
 * @example A list with a bad second server
 * ```ts
 * import { parseServerList } from "./server_list.ts";
 * try {
 *   parseServerList(["https://a.example", "ftp://b.example"]);
 * } catch (e) {
 *   console.log((e as Error).message); // Server 2 of 2: Unsupported scheme "ftp:" in ...
 * }
 * ```
 */
export function parseServerList(
  servers: string | readonly string[],
  caCerts?: string[],
): ServerTarget[] {
  const urls = typeof servers === "string" ? [servers] : servers;
  if (urls.length === 0) throw new TypeError("Cannot open tunnels: the server list is empty");
  const targets: ServerTarget[] = [];
  for (const [i, url] of urls.entries()) {
    let target: ServerTarget;
    try {
      target = parseServerUrl(url, caCerts);
    } catch (e) {
      if (urls.length === 1) throw e;
      throw new TypeError(`Server ${i + 1} of ${urls.length}: ${(e as Error).message}`);
    }
    if (!targets.some((t) => t.url === target.url)) targets.push(target);
  }
  return targets;
}

/**
 * The servers of one client, in the order to try them: the one that worked
 * last first (it may have restarted), then those after it in the list, then
 * those before it.
 *
 * @example The first server refuses: the second is tried at once
 * ```ts
 * import { ServerList } from "./server_list.ts";
 * import { TunnelError } from "../errors.ts";
 * import { silentLogger } from "../log.ts";
 * const servers = new ServerList(["http://127.0.0.1:9", "http://127.0.0.1:8080"]);
 * const { value, target } = await servers.connect(async (t) => {
 *   if (t.port === 9) throw new TunnelError("connect", `Cannot connect to ${t.url}: refused`);
 *   return "welcome";
 * }, silentLogger);
 * console.log(value, `Connected to ${target.url}`); // welcome Connected to http://127.0.0.1:8080
 * console.log(servers.order().map((t) => t.port)); // [8080, 9]: the next round starts with it
 * ```
 */
export class ServerList {
  /** The servers, checked, in the order given. */
  readonly targets: readonly ServerTarget[];
  #last = 0;

  /** Checks `servers` (see {@linkcode parseServerList}); `caCerts` are trusted for each. */
  constructor(servers: string | readonly string[], caCerts?: string[]) {
    this.targets = parseServerList(servers, caCerts);
  }

  /** The server of the last connect that worked (the first of the list before any). */
  get current(): ServerTarget {
    return this.targets[this.#last]!;
  }

  /** The URLs of all the servers, in the order given. */
  get urls(): string[] {
    return this.targets.map((t) => t.url);
  }

  /** The order of the next round: the last server that worked, then the others in turn. */
  order(): ServerTarget[] {
    return [...this.targets.slice(this.#last), ...this.targets.slice(0, this.#last)];
  }

  /**
   * One round: `attempt` on each server in {@linkcode order}, with no pause
   * between them, until one works. A refusal every node of the cluster would
   * give alike (wrong token, protocol version) ends the round at once, as does
   * an error that is not a TunnelError (a bug). When all fail, throws the one
   * error with one server, else a TunnelError naming each server's failure.
   */
  async connect<T>(
    attempt: (target: ServerTarget) => Promise<T>,
    log: Logger,
    signal?: AbortSignal,
  ): Promise<{ value: T; target: ServerTarget }> {
    const order = this.order();
    const failures: { url: string; error: TunnelError }[] = [];
    for (const [i, target] of order.entries()) {
      try {
        const value = await attempt(target);
        this.#last = this.targets.indexOf(target);
        return { value, target };
      } catch (e) {
        if (!(e instanceof TunnelError) || FATAL_REFUSALS.has(e.code) || signal?.aborted) throw e;
        failures.push({ url: target.url, error: e });
        const next = order[i + 1];
        if (next) {
          // A message per server: the log keeps the first of each (then counts repeats).
          log.warn(`Cannot connect to ${target.url}, trying ${next.url}`, {
            error: describeError(e),
          });
        }
      }
    }
    const last = failures.at(-1)!.error;
    if (failures.length === 1) throw last;
    // Each failure once, with its server: "http://a: connection refused (...)".
    const each = failures.map(({ url, error }) => {
      const message = error.message.replace(/^Cannot (?:connect to |open tunnel: )/, "");
      return message.startsWith(url) ? message : `${url}: ${message}`;
    });
    throw new TunnelError(
      failures.every((f) => f.error.code === "connect") ? "connect" : last.code,
      `Cannot connect to any of the ${failures.length} servers: ${each.join("; ")}`,
      { cause: last, retryAfterMs: last.retryAfterMs },
    );
  }
}
