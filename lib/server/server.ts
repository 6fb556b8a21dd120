// The public server: one port for browsers and clients; routes each connection by its first bytes.

import { closeQuietly, sleep } from "../io.ts";
import { describeError, isDisconnect, type Logger, silentLogger } from "../log.ts";
import { normalizeHost } from "../names.ts";
import {
  ACCEPT_BACKOFF_MAX_MS,
  ACCEPT_BACKOFF_MIN_MS,
  DEFAULT_SERVER_LIMITS,
  LEASE_MS,
  type ServerLimits,
  SHUTDOWN_GRACE_MS,
  SHUTDOWN_POLL_MS,
} from "../protocol.ts";
import { ipOf, type Outcome, type ServerContext } from "./context.ts";
import { Auth, type TokenRules } from "./auth.ts";
import { Leases } from "./lease.ts";
import { Admission } from "./limits.ts";
import { Registry } from "./registry.ts";
import { routeConnection } from "./route.ts";

/** Options for {@linkcode startServer}. */
export interface ServerOptions {
  /** TCP port for browsers and clients; 0 picks a free one. @default {8080} */
  port?: number;
  /** Address to listen on. @default {"0.0.0.0"} */
  hostname?: string;
  /** Tunnels are `<name>.<domain>`; the domain itself serves the landing page. @default {"localhost"} */
  domain?: string;
  /** Where logs go. @default {silent} */
  logger?: Logger;
  /** Aborting it closes the server. */
  signal?: AbortSignal;
  /** Limits and timeouts; see {@linkcode ServerLimits}. @default {DEFAULT_SERVER_LIMITS} */
  limits?: Partial<ServerLimits>;
  /**
   * Tokens a client must present to open a tunnel, each mapped to the
   * subdomains it may claim (`"*"`: any). @default {none: anyone may open tunnels}
   */
  tokens?: TokenRules;
  /** How long a client that went away keeps its subdomain for itself. @default {60 s} */
  leaseMs?: number;
  /**
   * Key that signs leases (32 random bytes, kept across restarts so that
   * clients reclaim their names after one). @default {a random key per process}
   */
  leaseKey?: Uint8Array;
  /**
   * With a `leaseKey`, whether this start may be a restart: then, for the
   * first `leaseMs`, a subdomain can only be claimed with a valid lease (its
   * previous client may be on its way back). @default {true}
   */
  leaseGrace?: boolean;
}

/** A running server. */
export interface TunnelServer {
  /** The address the server listens on, with the bound port. */
  readonly addr: Deno.NetAddr;
  /** The server's own URL, e.g. `http://localhost:8080`. */
  readonly url: string;
  /** Resolves when the server has closed and every connection is closed. */
  readonly finished: Promise<void>;
  /** Number of tunnels registered now. */
  readonly tunnelCount: number;
  /** Stops accepting, closes every connection at once, resolves when all are closed. */
  close(): Promise<void>;
  /**
   * Graceful stop: stops accepting, tells clients (they reconnect with
   * backoff), lets relayed connections finish for up to `graceMs`, then
   * closes what is left. Resolves when all are closed; `close()` during it
   * ends it at once.
   */
  shutdown(graceMs?: number): Promise<void>;
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Formats `host:port` for a URL, bracketing IPv6 and dropping port 80. */
export function hostWithPort(host: string, port: number): string {
  const h = host.includes(":") ? `[${host}]` : host;
  return port === 80 ? h : `${h}:${port}`;
}

/**
 * Starts a Gotunnel server listening on one TCP port. Resolves once it listens.
 *
 * @example Start on a free port and stop again
 * ```ts
 * import { startServer } from "@gotunnel/gotunnel";
 * await using server = await startServer({ port: 0, hostname: "127.0.0.1" });
 * console.log(server.url); // http://localhost:<port>
 * ```
 */
export async function startServer(options: ServerOptions = {}): Promise<TunnelServer> {
  const normalized = normalizeHost(options.domain ?? "localhost");
  if (typeof normalized === "string" || normalized.ip) {
    throw new TypeError(`Invalid domain ${JSON.stringify(options.domain)}: use a DNS name`);
  }
  const domain = normalized.host;
  const log = options.logger ?? silentLogger;
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
  const listener = Deno.listen({
    port: options.port ?? 8080,
    hostname: options.hostname ?? "0.0.0.0",
  });
  const addr = listener.addr;
  const url = `http://${hostWithPort(domain, addr.port)}`;
  const registry = new Registry();
  const admission = new Admission(limits);
  const auth = await Auth.create(options.tokens);
  const leases = await Leases.create(
    options.leaseKey,
    options.leaseMs ?? LEASE_MS,
    options.leaseGrace ?? true,
  );
  const conns = new Set<Deno.Conn>();
  const controlConns = new Set<Deno.Conn>(); // closed by their sessions, after a last frame
  const tasks = new Set<Promise<void>>();
  let closing = false;
  let nextId = 1;
  const ctx: ServerContext = {
    domain,
    url,
    limits,
    admission,
    auth,
    leases,
    log,
    registry,
    conns,
    controlConns,
    get closing() {
      return closing;
    },
  };
  const stopAccepting = new AbortController();

  const track = (task: Promise<void>): void => {
    tasks.add(task);
    task.finally(() => tasks.delete(task));
  };

  const acceptLoop = async (): Promise<void> => {
    let backoff = ACCEPT_BACKOFF_MIN_MS;
    while (!closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
        backoff = ACCEPT_BACKOFF_MIN_MS;
      } catch (e) {
        if (closing || e instanceof Deno.errors.BadResource) break;
        if (isDisconnect(e)) {
          // One peer reset before we accepted it: not the listener's fault.
          log.debug("Accepted connection was already gone", { error: describeError(e) });
          continue;
        }
        log.warn("Accept failed, backing off", { error: describeError(e), ms: backoff });
        await sleep(backoff, stopAccepting.signal);
        backoff = Math.min(backoff * 2, ACCEPT_BACKOFF_MAX_MS);
        continue;
      }
      const id = nextId++;
      const ip = ipOf(conn);
      if (!admission.enterSniffing(ip)) {
        log.debug("Over the limit of connections being routed", { conn: id, ip });
        closeQuietly(conn);
        continue;
      }
      let sniffing = true;
      const routed = (): void => {
        if (sniffing) admission.leaveSniffing(ip);
        sniffing = false;
      };
      conns.add(conn);
      track(
        routeConnection(ctx, conn, id, routed)
          .finally(routed)
          .catch((e): Outcome => {
            const fields = { conn: id, error: describeError(e) };
            if (isDisconnect(e)) log.debug("Connection ended", fields);
            else log.warn("Connection failed", fields);
          })
          .then((outcome) => {
            conns.delete(conn);
            if (outcome !== "kept") closeQuietly(conn);
          }),
      );
    }
  };

  const accepting = acceptLoop();
  const finished = Promise.withResolvers<void>();
  let closed: Promise<void> | undefined;
  const stopServing = async (): Promise<void> => {
    closing = true;
    stopAccepting.abort();
    closeQuietly(listener);
    await accepting;
    for (const session of registry.sessions()) {
      session.close({ type: "error", code: "shutdown", message: "Server is shutting down" });
    }
  };
  const close = (): Promise<void> => {
    closed ??= (async () => {
      cutShort.abort();
      await stopServing();
      for (const conn of conns) if (!controlConns.has(conn)) closeQuietly(conn);
      while (tasks.size > 0) await Promise.allSettled([...tasks]);
      log.info("Server closed");
      finished.resolve();
    })();
    return closed;
  };
  // Aborted by close(), to cut a graceful shutdown short.
  const cutShort = new AbortController();
  let shuttingDown: Promise<void> | undefined;
  const shutdown = (graceMs: number = SHUTDOWN_GRACE_MS): Promise<void> => {
    shuttingDown ??= (async () => {
      log.info("Shutting down", { grace_ms: graceMs });
      await stopServing();
      const deadline = Date.now() + graceMs;
      const busy = (): boolean => [...conns].some((c) => !controlConns.has(c));
      while (busy() && Date.now() < deadline && !cutShort.signal.aborted) {
        await sleep(SHUTDOWN_POLL_MS, cutShort.signal);
      }
      await close();
    })();
    return shuttingDown;
  };
  const onAbort = (): void => void close();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  finished.promise.then(() => options.signal?.removeEventListener("abort", onAbort));
  if (options.signal?.aborted) void close();
  log.info("Listening", { url, addr: `${addr.hostname}:${addr.port}` });
  if (!auth.required) {
    log.warn("Open server: anyone who can reach it may open tunnels (see --token)");
  }

  await Promise.resolve();
  return {
    addr,
    url,
    finished: finished.promise,
    get tunnelCount() {
      return registry.size;
    },
    close,
    shutdown,
    [Symbol.asyncDispose]: close,
  };
}
