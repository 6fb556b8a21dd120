// What `openTunnel` takes and gives: its options and the handle of an open tunnel.

import type { HeartbeatTiming } from "../control.ts";
import type { Logger } from "../log.ts";
import type { ExchangeObserver, RequestRecord } from "./exchanges.ts";
import type { VisitorInfo } from "./forwarded.ts";
import type { InspectOptions } from "./inspector/inspector.ts";
import type { CapturedExchange } from "./inspector/store.ts";

/** Options for {@linkcode openTunnel}. */
export interface TunnelOptions {
  /** Port of the local app. */
  port: number;
  /** Host of the local app. @default {"localhost"} */
  localHost?: string;
  /** URL of the Gotunnel server. @default {"http://localhost:8080"} */
  server?: string;
  /** Subdomain to ask for; a random one when omitted. */
  subdomain?: string;
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
  /**
   * The local app speaks TLS: HTTP visitors reach it over TLS, the certificate
   * checked against `localHost` and `ca`. Visitors whose own TLS goes to the
   * app end to end are relayed as they are. @default {false}
   */
  localHttps?: boolean;
  /** With `localHttps`, accept any certificate (self-signed, expired, other name). @default {false} */
  allowInvalidCert?: boolean;
  /** Idle proxy connections to keep open, ready for visitors. @default {8} */
  pool?: number;
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
   * Called with the public URL each time the tunnel is up: at start and after
   * each reconnect, and again with the `https://` URL when the server's
   * certificate for the name becomes ready after the tunnel was up.
   */
  onReady?: (url: string) => void;
  /**
   * Heartbeat timing of the control connection. A knob for tests and for
   * networks that drop idle connections sooner than 30 s; the server's own
   * `--heartbeat` and `--peer-timeout` decide when it gives up on the client.
   * @default {{ intervalMs: 10_000, peerTimeoutMs: 30_000 }}
   */
  heartbeat?: HeartbeatTiming;
}

/** An open tunnel. */
export interface Tunnel {
  /** The public URL, e.g. `http://demo.localhost:8080`. */
  readonly url: string;
  /** The subdomain the server gave. */
  readonly subdomain: string;
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
