// What the server's connection handlers share: configuration, the registry, live sockets.

import type { Conn } from "../io.ts";
import type { Logger } from "../log.ts";
import type { ServerLimits } from "../limits.ts";
import type { Auth } from "./auth.ts";
import type { Leases } from "./lease.ts";
import type { Admission } from "./admission.ts";
import type { Registry } from "./registry.ts";
import type { Session } from "./session.ts";
import type { ServerTunnel } from "./tunnel.ts";
import type { ServerMetrics } from "./server_metrics.ts";
import type { TcpPorts } from "./tcp_ports.ts";
import type { ClusterNode } from "./cluster/node.ts";

/** State shared by the accept loops and the handlers of one server. */
export interface ServerContext {
  /** Tunnels are `<name>.<domain>`. */
  readonly domain: string;
  /** The server's own URL (`http://<domain>[:port]`). */
  readonly url: string;
  /**
   * The URL of a tunnel's `host` now: `https://` when a certificate covers it
   * (the server's own for its subdomains, or one from ACME), else the plain port's.
   */
  hostUrl(host: string, custom: boolean): string;
  /** Limits and timeouts in force. */
  readonly limits: ServerLimits;
  /** Where logs go. */
  readonly log: Logger;
  /** Registered tunnels by name, sessions by id. */
  readonly registry: Registry<ServerTunnel, Session>;
  /** Per-IP counts against the limits. */
  readonly admission: Admission;
  /** Who may open tunnels. */
  readonly auth: Auth;
  /** Reconnect leases and the names held for clients that went away. */
  readonly leases: Leases;
  /** Every live connection, closed by `close()`. */
  readonly conns: Set<Conn>;
  /** Control connections: their sessions close them after a last frame. */
  readonly controlConns: Set<Conn>;
  /** With `--redirect-http`: the HTTPS port plain requests for tunnels are sent to. */
  readonly redirectPort: number | undefined;
  /** Whether the server is shutting down (then no name is held). */
  readonly closing: boolean;
  /** Where registrations, outcomes and held names are counted. */
  readonly metrics: ServerMetrics;
  /** With `--tcp-ports`: the TCP ports tunnels may have. */
  readonly ports: TcpPorts | undefined;
  /**
   * With `--default-tunnel`: the tunnel that gets connections whose Host or SNI
   * names no tunnel (and with `apex`, the server's own domain too).
   */
  readonly defaultTunnel: { name: string; apex: boolean } | undefined;
  /** With `--redis`: this server as a node of a cluster (names claimed in a shared directory). */
  readonly cluster?: ClusterNode | undefined;
  /** With automatic HTTPS (ACME): HTTP-01 answers, and which hosts have a certificate. */
  readonly acme?: AcmeRouting | undefined;
  /** With automatic HTTPS: tunnel URLs follow their certificates. */
  readonly certificates?: TunnelCertificates | undefined;
}

/** What routing asks a server with automatic HTTPS. */
export interface AcmeRouting {
  /** The answer to an HTTP-01 request for a token being validated now (any Host); else undefined. */
  answer(method: string, target: string): Uint8Array | undefined;
  /** Whether a certificate covers `host` now (plain requests are redirected only then). */
  covers(host: string): boolean;
}

/** What a tunnel asks a server with automatic HTTPS (ACME). */
export interface TunnelCertificates {
  /** The URL of `host` now: `https://` if a certificate covers it, else the plain port's. */
  urlFor(host: string): string;
  /**
   * A tunnel is registered for `name` (a subdomain, or with `custom` a full
   * hostname): its certificate is ordered if policy allows, and `ready` is
   * called once with its `https://` URL when a certificate covers it.
   * Returns the unsubscribe.
   */
  watch(name: string, custom: boolean, ready: (url: string) => void): () => void;
}

/** What a connection handler did with its connection: `kept` handed it to a session. */
export type Outcome = void | "kept";
