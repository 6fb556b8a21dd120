// What `openTunnel` and `openTunnels` take and give: one tunnel's options, the
// options of a client's control connection, and the handles of open tunnels.

import type { HeartbeatTiming } from "../control.ts";
import type { TunnelError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ExchangeObserver, RequestRecord } from "./exchanges.ts";
import type { VisitorInfo } from "./forwarded.ts";
import type { InspectOptions } from "./inspector/inspector.ts";
import type { CapturedExchange } from "./inspector/store.ts";

/** One tunnel: where its visitors go on this machine, and what it asks the server for. */
export interface TunnelSpec {
  /** A name for it (a config file's key): in logs and the inspector. @default {"tunnel<N>"} */
  name?: string;
  /** Port of the local app. */
  port: number;
  /** Host of the local app. @default {"localhost"} */
  localHost?: string;
  /** Subdomain to ask for; a random one when omitted. */
  subdomain?: string;
  /**
   * Relay bytes only: no request framing, no X-Forwarded-* headers. TLS that is
   * end to end is never parsed either way. @default {false}
   */
  raw?: boolean;
  /**
   * Drop `Domain` attributes of the app's Set-Cookie that name the server's
   * domain or a parent of it, so its cookies stay with this tunnel's host and
   * other tunnels on the same server never receive them. @default {false}
   */
  isolateCookies?: boolean;
  /** Host header the local app gets instead of the public one (the original goes in X-Forwarded-Host). */
  hostHeader?: string;
  /**
   * The local app speaks TLS: HTTP visitors reach it over TLS, the certificate
   * checked against `localHost` and `ca`. Visitors whose own TLS goes to the
   * app end to end are relayed as they are. @default {false}
   */
  localHttps?: boolean;
  /** With `localHttps`, accept any certificate (self-signed, expired, other name). @default {false} */
  allowInvalidCert?: boolean;
  /**
   * A full hostname outside the server's domain (CNAME'd to the server by its
   * owner) instead of a subdomain; needs a token whose scope names it.
   */
  customDomain?: string;
  /**
   * A TCP tunnel: the server gives it a port of its own (`tcp://host:port`) and
   * bytes are relayed as they are, one connection to the app per visitor, no
   * HTTP parsing. @default {false}
   */
  tcp?: boolean;
  /** With `tcp`: the port to ask for (one of the server's `--tcp-ports`); a free one when omitted. */
  remotePort?: number;
  /**
   * With `tcp` or `raw`: each connection to the app starts with a PROXY
   * protocol v2 header naming the visitor's address. @default {false}
   */
  proxyProtocol?: boolean;
  /**
   * Called with the public URL each time the tunnel is up: at start and after
   * each reconnect, and again with the `https://` URL when the server's
   * certificate for the name becomes ready after the tunnel was up.
   */
  onReady?: (url: string) => void;
}

/** What a client's tunnels share: the server, the token, leases, the pool, the watchers. */
export interface SessionOptions {
  /**
   * URL of the Gotunnel server, or the URLs of several nodes of one cluster
   * (sharing one lease key), tried in turn: a connect that fails (refused,
   * timed out, TLS, shutting down) moves on to the next at once, and backoff
   * comes only after all failed. Once connected the client stays; after a
   * lost connection it tries the server that worked last first, then the
   * others. Its lease is presented to whichever server it reaches.
   * @default {"http://localhost:8080"}
   */
  server?: string | readonly string[];
  /** Token for a server that requires one. */
  token?: string;
  /** CA certificates (PEM) to trust for an `https://` server (and a `localHttps` app). */
  ca?: string[];
  /**
   * File that keeps leases between runs, so a restarted client reclaims its
   * subdomain at once; `false` keeps them in memory only.
   * @default {"$XDG_CACHE_HOME/gotunnel/leases.json" (else ~/.cache/...)}
   */
  leaseFile?: string | false;
  /** When the subdomain is held for a previous client, wait until it is free. @default {false} */
  wait?: boolean;
  /**
   * Take the subdomain over from a live tunnel of this same client (same lease
   * file), e.g. one left running in another terminal. Without it such a claim is
   * refused while that tunnel answers. @default {false}
   */
  replace?: boolean;
  /**
   * Gets one record per relayed request once its response is complete (or the
   * stream ends without one); not called with `raw`. Format it with the CLI's
   * request log or your own.
   */
  onRequest?: (record: RequestRecord) => void;
  /**
   * Called for each HTTP visitor stream (not with `raw`): an observer that sees
   * its request and response heads and bodies as they pass (an inspector).
   * Observers only watch: they are called synchronously and never delay bytes.
   */
  observe?: (visitor: VisitorInfo) => ExchangeObserver | undefined;
  /**
   * The inspector: a page and a JSON API (on 127.0.0.1:4040, or the next free
   * port up to 4050) that list the tunnel's exchanges as they happen, with
   * heads, bodies, replay and HAR export; see the README. Off in the library,
   * which opens no port it was not asked for (the CLI turns it on). Not with
   * `raw`. @default {false}
   */
  inspect?: false | InspectOptions;
  /**
   * Called with each exchange as the inspector captures it, once its response
   * is complete (at the switch for an upgrade), with or without `inspect`
   * (then within its `limit` and body budget, else the defaults). Not with `raw`.
   */
  onExchange?: (exchange: CapturedExchange) => void;
  /** Idle proxy connections to keep open, ready for visitors. @default {8} */
  pool?: number;
  /**
   * The pool opens 2 idle proxy connections and tops them up to `pool` with
   * its first visitor; after this long without a visitor only 2 stay open
   * again (each costs the server a socket and its watch). @default {60_000}
   */
  poolQuietAfterMs?: number;
  /**
   * Visitors served at once, each a connection to the local app; more are
   * refused (HTTP with 503, TLS with a close), so that no server can flood the
   * app. 0: no limit. @default {256}
   */
  maxStreams?: number;
  /** Where logs go. @default {silent} */
  logger?: Logger;
  /** Aborting it closes the tunnel. */
  signal?: AbortSignal;
  /**
   * Heartbeat timing of the control connection. A knob for tests and for
   * networks that drop idle connections sooner than 30 s; the server's own
   * `--heartbeat` and `--peer-timeout` decide when it gives up on the client.
   * @default {{ intervalMs: 10_000, peerTimeoutMs: 30_000 }}
   */
  heartbeat?: HeartbeatTiming;
}

/** Options for {@linkcode openTunnel}: one tunnel and its control connection. */
export interface TunnelOptions extends TunnelSpec, SessionOptions {}

/** Options for {@linkcode openTunnels}: several tunnels over one control connection. */
export interface TunnelsOptions extends SessionOptions {
  /** The tunnels, in order (URL lines are printed in this order). */
  tunnels: TunnelSpec[];
  /** Called with a tunnel's public URL each time it is up (after its own `onReady`). */
  onReady?: (url: string, tunnel: TunnelHandle) => void;
  /** Called once when a tunnel is lost for good (refused, taken over, its token revoked). */
  onFailed?: (error: TunnelError, tunnel: TunnelHandle) => void;
}

/** One tunnel of a {@linkcode TunnelGroup}. */
export interface TunnelHandle {
  /** Its name (from its spec, else `tunnel<N>`). */
  readonly name: string;
  /** `http` (a name, routed by Host and SNI) or `tcp` (a port of its own). */
  readonly kind: "http" | "tcp";
  /** The public URL (`http://…`, `https://…`, `tcp://host:port`); empty while not up. */
  readonly url: string;
  /** The subdomain (or custom hostname) the server gave; empty for TCP tunnels. */
  readonly subdomain: string;
  /** The TCP port the server gave, for a TCP tunnel. */
  readonly remotePort: number | undefined;
  /** The local address visitors are relayed to. */
  readonly addr: Deno.NetAddr;
  /** Why it was lost for good, if it was (the others go on). */
  readonly error: TunnelError | undefined;
}

/** Several tunnels over one control connection. */
export interface TunnelGroup {
  /** The tunnels, in the order asked for; those refused have an `error`. */
  readonly tunnels: readonly TunnelHandle[];
  /** The inspector's page, when `inspect` asked for one. */
  readonly inspector: { readonly url: string } | undefined;
  /**
   * Resolves when closed by `close()` or the signal; rejects with a
   * {@linkcode TunnelError} once every tunnel is lost for good.
   */
  readonly finished: Promise<void>;
  /** Closes the control connection and every proxy and local connection. */
  close(): Promise<void>;
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** An open tunnel. */
export interface Tunnel {
  /** The public URL, e.g. `http://demo.localhost:8080`. */
  readonly url: string;
  /** The subdomain (or custom hostname) the server gave; empty for a TCP tunnel. */
  readonly subdomain: string;
  /** The TCP port the server gave, for a TCP tunnel. */
  readonly remotePort: number | undefined;
  /** The local address visitors are relayed to (`localHost` and `port`). */
  readonly addr: Deno.NetAddr;
  /** The inspector's page, when `inspect` asked for one: `{ url: "http://127.0.0.1:4040" }`. */
  readonly inspector: { readonly url: string } | undefined;
  /**
   * Resolves when the tunnel is closed by `close()` or the signal; rejects with
   * a {@linkcode TunnelError} when the server refuses a reconnect for good.
   */
  readonly finished: Promise<void>;
  /** Closes the control and every proxy and local connection. */
  close(): Promise<void>;
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}
