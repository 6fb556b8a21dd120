// The admin listener: `/metrics`, `/api/tunnels` and `/dashboard` on an address
// of their own, off by default. One request per connection, read under the
// public port's deadline and head cap, so no peer holds a socket for long.

import { httpError } from "../http/response.ts";
import { parseHead } from "../http/head.ts";
import { answerAndLinger, ByteReader, closeQuietly, deadline, ipOf } from "../io.ts";
import { MAX_ADMIN_CONNECTIONS, MIN_ADMIN_TOKEN_LENGTH } from "../limits.ts";
import { describeError, isDisconnect, type Logger } from "../log.ts";
import { hostWithPort } from "../names.ts";
import { acceptLoop } from "./accept.ts";
import { type AdminSource, answerAdmin, isLoopback, tokenDigest } from "./admin_routes.ts";

export type { AdminSource };

/** The admin listener's port unless one is given. */
export const ADMIN_PORT = 9090;

/** Options of the admin listener (`startServer({ admin })`, `--admin`). */
export interface AdminOptions {
  /** Address to listen on; anything but loopback needs a `token`. @default {"127.0.0.1"} */
  hostname?: string;
  /** Port; 0 picks a free one. @default {9090} */
  port?: number;
  /**
   * Bearer token (16 or more characters) that `/metrics` and `/api/tunnels`
   * require, on loopback too once given. @default {none: loopback only}
   */
  token?: string;
  /** Also series labelled with each live tunnel's name (one set per tunnel). @default {false} */
  perTunnelMetrics?: boolean;
}

/** Why `options` cannot be used, or undefined: off loopback without a token, a short token. */
export function checkAdminOptions(options: AdminOptions): string | undefined {
  const hostname = options.hostname ?? "127.0.0.1";
  if (options.token !== undefined && options.token.length < MIN_ADMIN_TOKEN_LENGTH) {
    return `the admin token is too short: use ${MIN_ADMIN_TOKEN_LENGTH} or more characters`;
  }
  if (options.token === undefined && !isLoopback(hostname)) {
    return `the admin listener on ${hostname} is not on loopback: give it a token ` +
      `(--admin-token), or listen on 127.0.0.1`;
  }
  const port = options.port ?? ADMIN_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) return `bad admin port ${port}`;
  return undefined;
}

/** How each admin connection is bounded: the public port's sniff limits. */
export interface AdminLimits {
  /** From accept to the answer written (then the connection is closed). */
  timeoutMs: number;
  /** Largest request head (then 431). */
  maxHeadBytes: number;
}

/** A listening admin endpoint. */
export class AdminListener {
  /** The address it listens on, with the bound port. */
  readonly addr: Deno.NetAddr;
  #listener: Deno.Listener;
  #stop = new AbortController();
  #accepting: Promise<void>;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #source: AdminSource;
  #expected: string | undefined;
  #limits: AdminLimits;
  #log: Logger;

  private constructor(
    listener: Deno.Listener,
    source: AdminSource,
    expected: string | undefined,
    limits: AdminLimits,
    log: Logger,
  ) {
    this.#listener = listener;
    this.addr = listener.addr as Deno.NetAddr;
    this.#source = source;
    this.#expected = expected;
    this.#limits = limits;
    this.#log = log;
    this.#accepting = acceptLoop(listener, (conn) => this.#admit(conn), log, this.#stop.signal);
  }

  /**
   * Listens on `options`' address: RangeError if `checkAdminOptions` refuses
   * them, an error naming the address if it cannot be had.
   */
  static async open(
    options: AdminOptions,
    source: AdminSource,
    limits: AdminLimits,
    log: Logger,
  ): Promise<AdminListener> {
    const why = checkAdminOptions(options);
    if (why) throw new RangeError(`Cannot start the admin listener: ${why}`);
    const hostname = options.hostname ?? "127.0.0.1";
    const port = options.port ?? ADMIN_PORT;
    const expected = options.token === undefined ? undefined : await tokenDigest(options.token);
    let listener;
    try {
      listener = Deno.listen({ hostname, port });
    } catch (e) {
      const where = `${hostWithPort(hostname, port, -1)} (admin)`;
      if (e instanceof Deno.errors.AddrInUse) {
        throw new Deno.errors.AddrInUse(`Cannot listen on ${where}: address already in use`);
      }
      throw new Error(`Cannot listen on ${where}: ${(e as Error).message}`, { cause: e });
    }
    const addr = hostWithPort(hostname, (listener.addr as Deno.NetAddr).port, -1);
    log.info("Admin listening", { url: `http://${addr}/dashboard`, token: !!options.token });
    return new AdminListener(listener, source, expected, limits, log);
  }

  #admit(conn: Deno.Conn): void {
    if (this.#conns.size >= MAX_ADMIN_CONNECTIONS) {
      this.#log.warn("Too many admin connections: closed one at accept", { ip: ipOf(conn) });
      return closeQuietly(conn);
    }
    this.#conns.add(conn);
    const task = this.#serve(conn).finally(() => {
      this.#conns.delete(conn);
      this.#tasks.delete(task);
      closeQuietly(conn);
    });
    this.#tasks.add(task);
  }

  /** Reads one request head and answers it; every path ends within the limits. */
  async #serve(conn: Deno.Conn): Promise<void> {
    const timer = deadline(this.#limits.timeoutMs, () => closeQuietly(conn));
    const reader = new ByteReader(conn, this.#limits.maxHeadBytes);
    try {
      let head = parseHead(reader.buffered, "request");
      while (head === null) {
        if (reader.room === 0) {
          return await answerAndLinger(conn, httpError(431, "Request head too large"));
        }
        if (!await reader.fill()) return;
        head = parseHead(reader.buffered, "request");
      }
      const hosts = typeof head === "string" ? [] : head.values("host");
      if (typeof head === "string" || hosts.length !== 1) {
        return await answerAndLinger(conn, httpError(400, "Bad request"));
      }
      const answer = await answerAdmin(
        {
          method: head.method!,
          target: head.target!,
          host: hosts[0]!,
          authorization: head.get("authorization"),
        },
        this.#source,
        this.#expected,
      );
      if (answer.refused) {
        this.#log.warn("Admin request refused", { ip: ipOf(conn), why: answer.refused });
      }
      await answerAndLinger(conn, answer.bytes);
    } catch (e) {
      if (timer.expired) return this.#log.debug("Admin connection timed out", { ip: ipOf(conn) });
      if (isDisconnect(e)) return;
      this.#log.warn("Admin request failed", { ip: ipOf(conn), error: describeError(e) });
    } finally {
      timer.clear();
    }
  }

  /** Stops listening and closes every admin connection; resolves once all are closed. */
  async close(): Promise<void> {
    this.#stop.abort();
    closeQuietly(this.#listener);
    await this.#accepting;
    for (const conn of this.#conns) closeQuietly(conn);
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }
}
