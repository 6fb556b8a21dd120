// The public server: one port for browsers and clients; routes each connection by its first bytes.

import { closeQuietly, sleep } from "../io.ts";
import {
  checkLimits,
  DEFAULT_SERVER_LIMITS,
  LEASE_MS,
  LEASE_RANGE_MS,
  type ServerLimits,
  SHUTDOWN_GRACE_MS,
  SHUTDOWN_POLL_MS,
} from "../limits.ts";
import { type Logger, silentLogger, throttleWarnings } from "../log.ts";
import { hostWithPort, HTTPS_PORT, normalizeHost } from "../names.ts";
import type { ServerContext } from "./context.ts";
import { Admission } from "./admission.ts";
import { Auth, type TokenRules } from "./auth.ts";
import { Leases } from "./lease.ts";
import { Registry } from "./registry.ts";
import { acceptLoop } from "./accept.ts";
import { Connections, listenOrExplain, openTlsPort } from "./listeners.ts";
import type { TlsPort } from "./tls_port.ts";
import { AcmeService, type ServerAcme } from "./acme/service.ts";
import type { Session } from "./session.ts";
import type { ServerTunnel, TunnelInfo } from "./tunnel.ts";
import { TcpPorts } from "./tcp_ports.ts";
import { revokeTunnel, tunnelTarget } from "./claim.ts";
import { ServerMetrics } from "./server_metrics.ts";
import { AdminListener, type AdminOptions, checkAdminOptions } from "./admin.ts";
import { adminStatus } from "./admin_status.ts";

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
   * subdomains it may claim (`"*"`: any). An empty map lets no one open a
   * tunnel. @default {undefined: anyone may open tunnels}
   */
  tokens?: TokenRules;
  /**
   * Subdomains that only a token scoped to them may claim, besides the default
   * ones (`www`, `api`, `admin`, `mail`, `localhost`) and `xn--` labels. @default {[]}
   */
  reservedNames?: readonly string[];
  /**
   * When `reloadAuth()` revokes a token, cut its tunnels' relayed connections at
   * once instead of letting them finish. @default {false}
   */
  revokeAtOnce?: boolean;
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
  /** Terminate TLS on a second port: tunnel URLs become `https://`. */
  tls?: ServerTls;
  /** Answer plain-HTTP requests for tunnels with 308 to `https://` (needs `tls` or `acme`). @default {false} */
  redirectHttp?: boolean;
  /**
   * Serve `/metrics`, `/api/tunnels` and `/dashboard` on a listener of their
   * own; off loopback it needs a token. @default {undefined: no admin listener}
   */
  admin?: AdminOptions;
  /**
   * Automatic HTTPS: certificates from an ACME CA, obtained, stored and renewed
   * by the server, served on a TLS port by SNI (instead of `tls`).
   */
  acme?: ServerAcme;
  /**
   * TCP tunnels: the ports (inclusive ranges) a client may have one of, each
   * listened on while its tunnel lives (and its lease holds it).
   * @default {undefined: no TCP tunnels}
   */
  tcpPorts?: readonly (readonly [number, number])[];
  /**
   * The tunnel (its subdomain or custom hostname) that gets connections whose
   * Host or SNI names no tunnel, instead of a 404: a server for one client,
   * with no wildcard DNS. @default {undefined: none}
   */
  defaultTunnel?: string;
  /** With `defaultTunnel`: the server's own domain (and IP addresses) go to it too. @default {false} */
  defaultTunnelApex?: boolean;
}

/** TLS termination: a certificate for `*.<domain>` and the apex, and its port. */
export interface ServerTls {
  /** PEM certificate chain. */
  cert: string;
  /** PEM private key. */
  key: string;
  /** Port for HTTPS; 0 picks a free one. @default {8443} */
  port?: number;
}

/** A running server. */
export interface TunnelServer {
  /** The address the server listens on, with the bound port. */
  readonly addr: Deno.NetAddr;
  /**
   * The server's own URL, e.g. `http://localhost:8080` (`https://…` with TLS;
   * with ACME, once a certificate covers the domain).
   */
  readonly url: string;
  /** The HTTPS address, when TLS is on. */
  readonly tlsAddr: Deno.NetAddr | undefined;
  /** The admin listener's address, when there is one. */
  readonly adminAddr: Deno.NetAddr | undefined;
  /**
   * Swaps the TLS certificate: new connections get the new one, open ones
   * are untouched. Rejects (keeping the old one) if the pair is unusable.
   */
  reloadTls(cert: string, key: string): Promise<void>;
  /**
   * Swaps the tokens and reserved names (`tokens` undefined: an open server).
   * Tunnels whose token no longer allows their name are told and closed once
   * their relayed connections end (at once with `revokeAtOnce`); resolves with
   * how many were revoked.
   */
  reloadAuth(tokens: TokenRules | undefined, reservedNames?: readonly string[]): Promise<number>;
  /** Resolves when the server has closed and every connection is closed. */
  readonly finished: Promise<void>;
  /** Number of tunnels registered now. */
  readonly tunnelCount: number;
  /** The tunnels registered now, each as a snapshot. */
  tunnels(): TunnelInfo[];
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

const DEFAULT_TLS_PORT = 8443;

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
  // Warnings are per connection, so a flood of bad ones could flood the log: the same
  // warning is written once per interval, with a count.
  const log = throttleWarnings(options.logger ?? silentLogger);
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
  const unusable = checkLimits(limits);
  if (unusable) throw new RangeError(`Invalid limits: ${unusable}`);
  const leaseMs = options.leaseMs ?? LEASE_MS;
  if (!Number.isInteger(leaseMs) || leaseMs < 1 || leaseMs > LEASE_RANGE_MS[1]) {
    throw new RangeError(`Invalid leaseMs ${leaseMs}: use 1-${LEASE_RANGE_MS[1]}`);
  }
  const hostname = options.hostname ?? "0.0.0.0";
  const adminUnusable = options.admin && checkAdminOptions(options.admin);
  if (adminUnusable) throw new RangeError(`Invalid admin options: ${adminUnusable}`);
  // Everything that can fail without a socket comes first: once a listener is
  // open, start-up either completes or closes it again.
  let auth = await Auth.create(options.tokens, options.reservedNames);
  const leases = await Leases.create(
    options.leaseKey,
    leaseMs,
    options.leaseGrace ?? true,
  );
  if (options.acme && options.tls) throw new TypeError("Cannot use both acme and tls");
  // Opens and locks the cert dir, loads the ACME library: orders nothing yet.
  const acme = options.acme ? await AcmeService.open(options.acme, domain, log) : undefined;
  let listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  try {
    listener = listenOrExplain(
      () => Deno.listen({ port: options.port ?? 8080, hostname }),
      `${hostname}:${options.port ?? 8080}`,
    );
  } catch (e) {
    await acme?.close();
    throw e;
  }
  const addr = listener.addr;
  const registry = new Registry<ServerTunnel, Session>();
  const admission = new Admission(limits);
  const tunnels = (): TunnelInfo[] => [...registry.tunnels()].map((tunnel) => tunnel.info());
  const metrics = new ServerMetrics({
    tunnels,
    heldNames: () => leases.heldCount,
    idleProxies: () => [...registry.sessions()].reduce((sum, s) => sum + s.idleCount, 0),
    tcpPorts: (): number => ports?.size ?? 0,
  }, options.admin?.perTunnelMetrics === true);
  const connections = new Connections(admission, metrics, log);
  const ports: TcpPorts | undefined = options.tcpPorts && options.tcpPorts.length > 0
    ? new TcpPorts({ hostname, ranges: options.tcpPorts, onConnection: connections.handleTcp, log })
    : undefined;
  const { conns, controlConns } = connections;
  let closing = false;
  const stopAccepting = new AbortController();
  let tlsPort: TlsPort | undefined;
  let admin: AdminListener | undefined;
  try {
    if (options.tls || acme) {
      const { cert, key, port = DEFAULT_TLS_PORT } = options.tls ?? { port: acme?.port };
      tlsPort = await openTlsPort(
        { hostname, port, cert, key, acme, limits },
        connections,
        admission,
        metrics,
        log,
      );
    }
    if (options.admin) {
      admin = await AdminListener.open(
        options.admin,
        {
          metrics: () => metrics.render(),
          status: () => adminStatus(metrics.counts(), metrics.tunnels()),
        },
        { timeoutMs: limits.sniffTimeoutMs, maxHeadBytes: limits.maxSniffBytes },
        log,
      );
    }
  } catch (e) {
    closeQuietly(listener);
    tlsPort?.close();
    await acme?.close();
    throw e;
  }
  const tlsAddr = tlsPort?.addr;
  const plainUrl = (host: string): string => `http://${hostWithPort(host, addr.port)}`;
  const httpsUrl = (host: string): string =>
    `https://${hostWithPort(host, tlsAddr?.port ?? HTTPS_PORT, HTTPS_PORT)}`;
  // With ACME, https:// once a certificate covers the domain.
  const serverUrl = (): string =>
    tlsAddr && (acme?.covers(domain) ?? true) ? httpsUrl(domain) : plainUrl(domain);
  const ctx: ServerContext = {
    domain,
    get url() {
      return serverUrl();
    },
    // ACME: https once a certificate covers it; a static certificate covers the subdomains only.
    hostUrl: (host, custom) =>
      acme
        ? acme.covers(host) ? httpsUrl(host) : plainUrl(host)
        : tlsAddr && !custom
        ? httpsUrl(host)
        : plainUrl(host),
    ports,
    defaultTunnel: options.defaultTunnel === undefined
      ? undefined
      : { name: options.defaultTunnel, apex: options.defaultTunnelApex === true },
    acme,
    certificates: acme?.tunnels(plainUrl, httpsUrl),
    limits,
    admission,
    get auth() {
      return auth;
    },
    redirectPort: options.redirectHttp && tlsAddr ? tlsAddr.port : undefined,
    leases,
    log,
    registry,
    conns,
    controlConns,
    metrics,
    get closing() {
      return closing;
    },
  };
  connections.ctx = ctx;
  const accepting = acceptLoop(listener, connections.admitPlain, log, stopAccepting.signal);
  const reloadTls = async (cert: string, key: string): Promise<void> => {
    await Promise.resolve();
    if (!tlsPort || closing) throw new Error("Cannot reload TLS: the server has no TLS port");
    if (acme) throw new Error("Cannot reload TLS: ACME manages the certificates");
    tlsPort.setCertificate(cert, key); // throws, keeping the old pair, if this one is unusable
    log.info("TLS certificate reloaded", {});
  };
  const finished = Promise.withResolvers<void>();
  let closed: Promise<void> | undefined;
  const stopServing = async (): Promise<void> => {
    closing = true;
    stopAccepting.abort();
    closeQuietly(listener);
    tlsPort?.close();
    await accepting;
    await ports?.close();
    for (const session of registry.sessions()) {
      session.close({ type: "error", code: "shutdown", message: "Server is shutting down" });
    }
  };
  const close = (): Promise<void> => {
    closed ??= (async () => {
      cutShort.abort();
      await stopServing();
      await admin?.close();
      connections.closeAll();
      await connections.settled();
      await acme?.close();
      log.info("Server closed");
      log.close();
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
      while (connections.busy && Date.now() < deadline && !cutShort.signal.aborted) {
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
  log.info("Listening", { url: serverUrl(), addr: hostWithPort(addr.hostname, addr.port, -1) });
  if (tlsAddr) {
    log.info("Listening for HTTPS", { addr: hostWithPort(tlsAddr.hostname, tlsAddr.port, -1) });
  }
  if (ports) {
    const ranges = ports.ranges.map(([a, b]) => a === b ? `${a}` : `${a}-${b}`).join(",");
    log.info("TCP tunnels on ports", { ports: ranges });
  }
  const warnAuth = (): void => {
    if (!auth.required) {
      log.warn("Open server: anyone who can reach it may open tunnels (see --token)");
    } else if (auth.tokenCount === 0) {
      log.warn("No tokens: no one may open tunnels (the tokens file is empty)");
    }
  };
  warnAuth();
  const reloadAuth = async (
    tokens: TokenRules | undefined,
    reservedNames: readonly string[] = options.reservedNames ?? [],
  ): Promise<number> => {
    auth = await Auth.create(tokens, reservedNames);
    let revoked = 0;
    for (const tunnel of [...registry.tunnels()]) {
      if (auth.allows(tunnel.session.tokenKey, tunnelTarget(tunnel))) continue;
      log.info("Tunnel's token revoked", { tunnel: tunnel.name, streams: tunnel.streams });
      revokeTunnel(ctx, tunnel, options.revokeAtOnce === true);
      revoked++;
    }
    log.info("Tokens reloaded", { tokens: auth.tokenCount, revoked });
    warnAuth();
    return revoked;
  };
  acme?.start({
    httpsUrl,
    isScoped: (name) => auth.isScoped(name),
    isRegistered: (name) => registry.get(name) !== undefined,
    setDefault: (certificate) => tlsPort?.setCertificate(certificate.cert, certificate.key),
  });
  await Promise.resolve();
  return {
    addr,
    get url() {
      return serverUrl();
    },
    tlsAddr,
    adminAddr: admin?.addr,
    reloadTls,
    reloadAuth,
    finished: finished.promise,
    get tunnelCount() {
      return registry.size;
    },
    tunnels,
    close,
    shutdown,
    [Symbol.asyncDispose]: close,
  };
}
