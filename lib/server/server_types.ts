// What `startServer` takes and gives: its options and the handle of a running server.

import type { ClusterOptions, ClusterStatus } from "./cluster/node.ts";
import type { Logger } from "../log.ts";
import type { ServerLimits } from "../limits.ts";
import type { TokenRules } from "./auth.ts";
import type { ServerAcme } from "./acme/service.ts";
import type { TunnelInfo } from "./tunnel.ts";
import type { AdminOptions } from "./admin.ts";

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
  /**
   * Several nodes, one directory in Redis (`--redis`): names, ports and
   * hostnames are claimed cluster-wide and visitors are forwarded to the node
   * that holds their tunnel. Needs `leaseKey` (the same on every node).
   * @default {undefined: one node, names in memory}
   */
  cluster?: ClusterOptions;
  /**
   * Proxies (L4 load balancers) the server is behind: CIDR ranges or bare
   * addresses, IPv4 or IPv6, an entry may hold several comma-separated. A
   * connection from one of them, on the public port and on the TLS port, must
   * start with a PROXY protocol header (v1 or v2; v2 LOCAL, a health check,
   * keeps the proxy's own address); it is then admitted, logged and reported
   * to the client (X-Forwarded-For) as from the visitor the header names. A
   * missing or invalid header closes it. Any other peer that sends a header is
   * refused (400, or closed for v2). A bad entry is a RangeError.
   * @default {undefined: no proxy is trusted}
   *
   * @example Behind load balancers in 10.0.0.0/8
   * ```ts
   * import { startServer } from "@gotunnel/gotunnel";
   * await using server = await startServer({
   *   port: 0,
   *   hostname: "127.0.0.1",
   *   trustedProxies: ["10.0.0.0/8", "fd00::/8"],
   * });
   * ```
   */
  trustedProxies?: readonly string[];
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
  /** In a cluster: this node's view (its id, Redis, the nodes, what it forwarded). */
  cluster(): ClusterStatus | undefined;
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
