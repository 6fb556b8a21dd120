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
import { silentLogger, throttleWarnings } from "../log.ts";
import { hostWithPort, HTTPS_PORT, normalizeHost } from "../names.ts";
import type { ServerContext } from "./context.ts";
import { Admission } from "./admission.ts";
import { Auth, type TokenRules } from "./auth.ts";
import { Leases } from "./lease.ts";
import { Registry } from "./registry.ts";
import { acceptLoop } from "./accept.ts";
import { Connections, listenOrExplain, openTlsPort } from "./listeners.ts";
import type { ServerOptions, TunnelServer } from "./server_types.ts";
import type { TlsPort } from "./tls_port.ts";
import { useMemoryTrimmer } from "../memory.ts";
import type { Session } from "./session.ts";
import type { ServerTunnel, TunnelInfo } from "./tunnel.ts";
import { TcpPorts } from "./tcp_ports.ts";
import { endTunnel, revokeTunnel, tunnelTarget } from "./claim.ts";
import { ServerMetrics } from "./server_metrics.ts";
import { AdminListener, checkAdminOptions } from "./admin.ts";
import { adminStatus } from "./admin_status.ts";
import type { ClusterNode } from "./cluster/node.ts";
import type { Claim } from "./cluster/claim.ts";
import { trustedProxies } from "./proxy_header.ts";

export type { ServerOptions, ServerTls, TunnelServer } from "./server_types.ts";

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
  const trusted = trustedProxies(options.trustedProxies); // throws RangeError on a bad entry
  const adminUnusable = options.admin && checkAdminOptions(options.admin);
  if (adminUnusable) throw new RangeError(`Invalid admin options: ${adminUnusable}`);
  // Everything that can fail without a socket comes first: once a listener is
  // open, start-up either completes or closes it again.
  let auth = await Auth.create(options.tokens, options.reservedNames);
  if (options.cluster && !options.leaseKey) {
    throw new TypeError(
      "A cluster node needs a lease key (--lease-key-file), the same file on every node, " +
        "so that a client's lease is valid on any node",
    );
  }
  // In a cluster the directory holds names across restarts: no restart grace.
  const leases = await Leases.create(
    options.leaseKey,
    leaseMs,
    !options.cluster && (options.leaseGrace ?? true),
  );
  if (options.acme && options.tls) throw new TypeError("Cannot use both acme and tls");
  // Opens and locks the cert dir, loads the ACME library: orders nothing yet.
  // Loaded only with ACME: its certificate handling brings node:tls and node:crypto.
  const acme = options.acme
    ? await (await import("./acme/service.ts")).AcmeService.open(options.acme, domain, log)
    : undefined;
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
  const connections = new Connections(admission, metrics, log, trusted);
  const ports: TcpPorts | undefined = options.tcpPorts && options.tcpPorts.length > 0
    ? new TcpPorts({ hostname, ranges: options.tcpPorts, onConnection: connections.handleTcp, log })
    : undefined;
  const { conns, controlConns } = connections;
  let closing = false;
  const stopAccepting = new AbortController();
  let tlsPort: TlsPort | undefined;
  let admin: AdminListener | undefined;
  let cluster: ClusterNode | undefined;
  // A claim of this node taken over through another node: its tunnel ends here.
  const lost = (claim: Claim): void => {
    const name = claim.kind === "port" ? `tcp:${claim.value}` : claim.value;
    const tunnel = registry.get(name);
    if (!tunnel || tunnel.uid !== claim.session) return;
    tunnel.claim = undefined; // another session holds it now: nothing to release
    log.info("Tunnel taken over through another node", { tunnel: name });
    endTunnel(ctx, tunnel, {
      hold: false,
      tell: {
        code: "replaced",
        message: "This tunnel was taken over by a new connection of its client (another node)",
      },
    });
  };
  try {
    if (options.cluster) {
      // Loaded only in a cluster: the directory brings the Redis client.
      const { ClusterNode } = await import("./cluster/node.ts");
      // A dead node's names outlive it by a lease time, for their clients to reclaim them.
      const timings = { claimTtlMs: leaseMs, ...options.cluster.timings };
      cluster = await ClusterNode.open({ ...options.cluster, timings }, {
        hostname: addr.hostname,
        port: addr.port,
        log,
        onLost: lost,
      });
      metrics.extend(...cluster.metricFamilies());
      await cluster.refreshNodes().catch(() => {});
    }
    if (options.tls || acme) {
      const { cert, key, port = DEFAULT_TLS_PORT } = options.tls ?? { port: acme?.port };
      tlsPort = await openTlsPort(
        { hostname, port, cert, key, acme, limits, trusted },
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
          status: () => adminStatus(metrics.counts(), metrics.tunnels(), cluster?.status()),
        },
        { timeoutMs: limits.sniffTimeoutMs, maxHeadBytes: limits.maxSniffBytes },
        log,
      );
    }
  } catch (e) {
    closeQuietly(listener);
    tlsPort?.close();
    await cluster?.close();
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
    cluster,
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
    cluster?.closeConnections();
  };
  const stopTrimmer = useMemoryTrimmer();
  const close = (): Promise<void> => {
    closed ??= (async () => {
      cutShort.abort();
      await stopServing();
      await admin?.close();
      connections.closeAll();
      await connections.settled();
      await cluster?.close(); // after the sessions' last releases
      await acme?.close();
      stopTrimmer();
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
    cluster: () => cluster?.status(),
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
