// The server's sockets: the plain listener and the TLS port opened with errors that
// say which address failed, and every accepted connection admitted, tracked and
// routed until its handler is done.

import { closeQuietly, type Conn, ipOf, peerOf } from "../io.ts";
import type { ServerLimits } from "../limits.ts";
import { describeError, isDisconnect, type Logger } from "../log.ts";
import type { Outcome, ServerContext } from "./context.ts";
import type { Admission } from "./admission.ts";
import { routeConnection } from "./route.ts";
import { forwardTcp } from "./forward.ts";
import type { TlsPort } from "./tls_port.ts";
import type { AcmeService } from "./acme/service.ts";
import type { ServerMetrics } from "./server_metrics.ts";
import {
  type HeaderRead,
  ProxiedConn,
  readProxyHeader,
  type TrustedProxies,
  visitorAddr,
} from "./proxy_header.ts";

/**
 * A listen failure that says which address could not be had (the plain or
 * the TLS port), or that the certificate or key is unusable; keeps the cause.
 */
export function explainListenError(e: unknown, where: string, tls = false): Error {
  const why = e instanceof Error ? e.message : String(e);
  const certificate = tls && (e instanceof Deno.errors.InvalidData || /key|certificate/i.test(why));
  if (certificate) return new Error(`Cannot use the TLS certificate and key: ${why}`, { cause: e });
  if (e instanceof Deno.errors.AddrInUse) {
    return new Deno.errors.AddrInUse(`Cannot listen on ${where}: address already in use`);
  }
  return new Error(`Cannot listen on ${where}: ${why}`, { cause: e });
}

/** Runs `listen`; a failure becomes {@linkcode explainListenError}'s. */
export function listenOrExplain<L>(listen: () => L, where: string): L {
  try {
    return listen();
  } catch (e) {
    throw explainListenError(e, where);
  }
}

/**
 * Every live connection of a server and the task that handles it: admitted
 * against the per-IP limits, routed, closed when its handler is done (unless a
 * session kept it). `close()` and `shutdown()` read and close them.
 */
export class Connections {
  /** Every live connection, closed by the server's `close()`. */
  readonly conns: Set<Conn> = new Set();
  /** Control connections: closed by their sessions, after a last frame. */
  readonly controlConns: Set<Conn> = new Set();
  /** Handler tasks, waited for by `close()`. */
  readonly tasks: Set<Promise<void>> = new Set();
  #nextId = 1;
  #admission: Admission;
  #metrics: ServerMetrics;
  #log: Logger;
  #trusted: TrustedProxies | undefined;
  /** The context handlers get; set once the server has one. */
  ctx: ServerContext | undefined;

  /**
   * Connections admitted by `admission`, counted in `metrics`; those from
   * `trusted` proxies start with a PROXY header.
   */
  constructor(
    admission: Admission,
    metrics: ServerMetrics,
    log: Logger,
    trusted?: TrustedProxies | undefined,
  ) {
    this.#admission = admission;
    this.#metrics = metrics;
    this.#log = log;
    this.#trusted = trusted;
  }

  /** Runs `task` until it settles; `close()` waits for it. */
  track(task: Promise<void>): void {
    this.tasks.add(task);
    task.finally(() => this.tasks.delete(task));
  }

  /** Whether a connection other than a control one is open (a graceful stop waits for none). */
  get busy(): boolean {
    return [...this.conns].some((c) => !this.controlConns.has(c));
  }

  /**
   * Routes a connection from either port, once it counts against the per-IP
   * limit of connections being routed; `routed` uncounts it.
   */
  handle(conn: Conn, secure: boolean, routed: () => void): void {
    const id = this.#nextId++;
    const ctx = this.ctx!;
    this.conns.add(conn);
    this.track(
      routeConnection(ctx, conn, id, routed, secure)
        .finally(routed)
        .catch((e): Outcome => {
          const fields = { conn: id, error: describeError(e) };
          if (isDisconnect(e)) this.#log.debug("Connection ended", fields);
          else this.#log.warn("Connection failed", fields);
        })
        .then((outcome) => {
          this.conns.delete(conn);
          if (outcome !== "kept") closeQuietly(conn);
        }),
    );
  }

  /** A connection accepted on the plain port: counted, then routed, or closed over a limit. */
  admitPlain = (conn: Deno.Conn): void => {
    if (this.#trusted?.trusts(ipOf(conn))) this.#admitProxied(conn);
    else this.#admitVisitor(conn);
  };

  /**
   * A trusted proxy's connection: its PROXY header is read under the sniff
   * deadline, counted meanwhile against the total of connections being routed
   * only (per IP, every one would be the proxy's); then it is admitted as its
   * visitor's, or closed without a valid header.
   */
  #admitProxied(conn: Deno.Conn): void {
    if (!this.#admission.enterSniffing(undefined)) {
      this.#metrics.connection("limit");
      this.#log.debug("Over the limit of connections being routed", { ip: ipOf(conn) });
      return closeQuietly(conn);
    }
    this.conns.add(conn);
    const reading = readProxyHeader(conn, this.ctx!.limits.sniffTimeoutMs)
      .catch((e): HeaderRead => {
        const reason = describeError(e);
        if (!isDisconnect(e)) this.#log.warn("Reading a PROXY header failed", { error: reason });
        return { state: "failed", reason };
      });
    this.track(reading.then((read) => {
      this.#admission.leaveSniffing(undefined);
      this.conns.delete(conn);
      const own = conn.remoteAddr as Deno.NetAddr;
      if (this.ctx!.closing) return closeQuietly(conn); // closeAll() has been and gone
      if (read.state === "failed") {
        this.#metrics.connection("proxy_invalid");
        this.#log.debug("Trusted proxy's connection closed", {
          ip: own.hostname,
          reason: read.reason,
        });
        return closeQuietly(conn);
      }
      const visitor = new ProxiedConn(conn, visitorAddr(read.header, own), read.rest);
      this.#log.debug("PROXY header read", { ip: own.hostname, visitor: peerOf(visitor) });
      this.#admitVisitor(visitor);
    }));
  }

  /** A visitor's connection: counted against its IP's limit, then routed. */
  #admitVisitor(conn: Conn): void {
    const ip = ipOf(conn);
    if (!this.#admission.enterSniffing(ip)) {
      this.#metrics.connection("limit");
      this.#log.debug("Over the limit of connections being routed", { ip });
      return closeQuietly(conn);
    }
    let sniffing = true;
    this.handle(conn, false, () => {
      if (sniffing) this.#admission.leaveSniffing(ip);
      sniffing = false;
    });
  }

  /** A visitor accepted on a TCP tunnel's port: counted per IP, then relayed, or closed over it. */
  handleTcp = (conn: Deno.Conn, port: number): void => {
    const ip = ipOf(conn);
    if (!this.#admission.enterTcp(ip)) {
      this.#metrics.tcpConnection("limit");
      this.#log.debug("Over the limit of TCP visitors from one IP", { ip, port });
      return closeQuietly(conn);
    }
    const id = this.#nextId++;
    this.conns.add(conn);
    this.track(
      forwardTcp(this.ctx!, conn as Deno.TcpConn, port, id)
        .catch((e) => {
          const fields = { conn: id, error: describeError(e) };
          if (isDisconnect(e)) this.#log.debug("Connection ended", fields);
          else this.#log.warn("Connection failed", fields);
        })
        .finally(() => {
          this.#admission.leaveTcp(ip);
          this.conns.delete(conn);
          closeQuietly(conn);
        }),
    );
  };

  /** Closes every connection but the control ones (their sessions close those). */
  closeAll(): void {
    for (const conn of this.conns) if (!this.controlConns.has(conn)) closeQuietly(conn);
  }

  /** Resolves once every handler has returned. */
  async settled(): Promise<void> {
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
  }
}

/** Where and how the TLS port listens. */
export interface TlsPortPlan {
  /** Address to listen on. */
  hostname: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** PEM certificate (none with ACME: handshakes wait for one chosen by SNI). */
  cert?: string | undefined;
  /** PEM key. */
  key?: string | undefined;
  /** With ACME: certificates chosen by SNI. */
  acme: AcmeService | undefined;
  /** Limits in force (the handshake shares the sniff deadline). */
  limits: ServerLimits;
  /** Peers whose connections start with a PROXY header. */
  trusted: TrustedProxies | undefined;
}

/** Opens the TLS port; its connections go to `connections` once their handshake completes. */
export async function openTlsPort(
  plan: TlsPortPlan,
  connections: Connections,
  admission: Admission,
  metrics: ServerMetrics,
  log: Logger,
): Promise<TlsPort> {
  const { hostname, port, cert, key, acme } = plan;
  // Loaded only for a TLS port: node:tls costs a plain server ~5 MiB of RSS.
  const { TlsPort } = await import("./tls_port.ts");
  return await TlsPort.open({
    hostname,
    port,
    cert,
    key,
    sni: acme && ((host) => acme.book.contextFor(host)),
    handshakeTimeoutMs: plan.limits.sniffTimeoutMs,
    trusted: plan.trusted,
    admit: (ip) => {
      const admitted = admission.enterSniffing(ip);
      if (!admitted) metrics.connection("limit");
      return admitted;
    },
    release: (ip) => admission.leaveSniffing(ip),
    onConnection: (conn, routed) => connections.handle(conn, true, routed),
    onProxyError: (reason, ip) => {
      metrics.connection("proxy_invalid");
      log.debug("Trusted proxy's connection closed", { ip, reason });
    },
    onHandshakeError: (e) => {
      metrics.connection("tls_error");
      log.debug("TLS handshake failed", { error: describeError(e) });
    },
  }).catch((e) => {
    throw explainListenError(e, `${hostname}:${port} (TLS port)`, true);
  });
}
