// `openTunnel`: a tunnel's control session, kept up with reconnects and leases,
// and a pool of proxy connections per session.

import { ControlChannel } from "../control.ts";
import type { HeartbeatTiming } from "../control.ts";
import { TunnelError } from "../errors.ts";
import { closeQuietly, sleep } from "../io.ts";
import { describeError, type Logger, silentLogger, throttleWarnings } from "../log.ts";
import {
  DEFAULT_CLIENT_MAX_STREAMS,
  DEFAULT_POOL_SIZE,
  INSPECTOR_BODY_BUDGET_BYTES,
  INSPECTOR_LIMIT,
  INSPECTOR_MAX_BODY_BYTES,
  MAX_IDLE_PROXIES,
  PROXY_POOL_QUIET_MS,
  PROXY_POOL_QUIET_SIZE,
  RECONNECT_MIN_MS,
} from "../limits.ts";
import {
  type ClientMessage,
  decodeServerFrame,
  PROTOCOL_VERSION,
  type ServerMessage,
} from "../protocol.ts";
import { parseServerUrl, type ServerTarget } from "./dial.ts";
import type { ExchangeObserver, RequestRecord } from "./exchanges.ts";
import type { VisitorInfo } from "./forwarded.ts";
import { captureStream } from "./inspector/capture.ts";
import {
  type InspectOptions,
  type InspectorServer,
  startInspector,
} from "./inspector/inspector.ts";
import { type CapturedExchange, CaptureStore } from "./inspector/store.ts";
import { combineObservers } from "./observers.ts";
import { type Established, openControl, type Welcome } from "./handshake.ts";
import { defaultLeaseFile, LeaseKeeper, LeaseStore } from "./lease_store.ts";
import { LocalDialer } from "./local_dialer.ts";
import { useMemoryTrimmer } from "../memory.ts";
import { AppPool } from "./app_pool.ts";
import { reconnect, RESERVED_RETRY_MARGIN_MS } from "./reconnect.ts";
import { ProxyPool } from "./proxy.ts";

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
   * A tunnel opens 2 idle proxy connections and tops them up to `pool` with its
   * first visitor; after this long without a visitor only 2 stay open again
   * (each costs the server a socket and its watch). @default {60_000}
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

/**
 * Opens a tunnel from a Gotunnel server to a local port. Resolves when the
 * server has registered it; rejects with a {@linkcode TunnelError} when the
 * server cannot be reached or refuses (subdomain taken or invalid). After
 * that, lost connections are re-established with backoff.
 *
 * @example Expose the app on port 3000 through a server
 * ```ts
 * import { openTunnel, startServer } from "@gotunnel/gotunnel";
 * await using server = await startServer({ port: 0, hostname: "127.0.0.1" });
 * await using tunnel = await openTunnel({
 *   port: 3000,
 *   localHost: "127.0.0.1",
 *   server: `http://127.0.0.1:${server.addr.port}`,
 * });
 * console.log(tunnel.url); // http://<random>.localhost:<port>
 * ```
 */
export async function openTunnel(options: TunnelOptions): Promise<Tunnel> {
  const client = new TunnelClient(options);
  await client.start();
  return client;
}

class TunnelClient implements Tunnel {
  #options: TunnelOptions;
  #localHost: string;
  #dialer: LocalDialer;
  #appPool: AppPool;
  #stopTrimmer: () => void;
  #target: ServerTarget;
  #log: Logger & { close(): void };
  #pool: number;
  #welcome: Welcome | undefined;
  #control: ControlChannel<ServerMessage, ClientMessage> | undefined;
  #pools = new Set<ProxyPool>();
  #leases: LeaseKeeper;
  #lease: string | undefined;
  #replaced: TunnelError | undefined;
  #tasks = new Set<Promise<void>>();
  #stop = new AbortController();
  #finished = Promise.withResolvers<void>();
  #closing: Promise<void> | undefined;
  #store: CaptureStore | undefined;
  #inspector: InspectorServer | undefined;

  constructor(options: TunnelOptions) {
    this.#options = options;
    this.#target = parseServerUrl(options.server ?? "http://localhost:8080", options.ca);
    // Per-visitor warnings (an app that refuses) are written once per interval, with a count.
    this.#log = throttleWarnings(options.logger ?? silentLogger);
    this.#localHost = options.localHost ?? "localhost";
    if (options.hostHeader !== undefined && !/^[\x21-\x7e]+$/.test(options.hostHeader)) {
      throw new TypeError(
        `hostHeader must be printable ASCII: ${JSON.stringify(options.hostHeader)}`,
      );
    }
    this.#dialer = new LocalDialer(
      this.#localHost,
      options.port,
      options.localHttps
        ? {
          serverName: this.#localHost,
          caCerts: options.ca,
          allowInvalid: options.allowInvalidCert === true,
        }
        : undefined,
    );
    this.#appPool = new AppPool(this.#dialer);
    this.#stopTrimmer = useMemoryTrimmer(); // stopped by close(), which a failed start calls
    this.#pool = Math.min(options.pool ?? DEFAULT_POOL_SIZE, MAX_IDLE_PROXIES);
    const leaseFile = options.leaseFile === false
      ? undefined
      : options.leaseFile ?? defaultLeaseFile();
    this.#leases = new LeaseKeeper(
      leaseFile === undefined
        ? undefined
        : new LeaseStore(leaseFile, (message) => this.#log.warn(message)),
      this.#target.url,
      this.#log,
    );
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new RangeError(`Invalid local port ${options.port}: use 1-65535`);
    }
    this.#finished.promise.catch(() => {}); // callers may never look
    const inspect = options.inspect || undefined;
    if ((inspect || options.onExchange) && !options.raw) {
      this.#store = new CaptureStore({
        limit: inspect?.limit ?? INSPECTOR_LIMIT,
        bodyBudgetBytes: inspect?.bodyBudgetBytes ?? INSPECTOR_BODY_BUDGET_BYTES,
        maxBodyBytes: inspect?.maxBodyBytes ?? INSPECTOR_MAX_BODY_BYTES,
      });
      const onExchange = options.onExchange;
      if (onExchange) {
        this.#store.onComplete = (exchange) => {
          try {
            onExchange(exchange);
          } catch (e) {
            this.#log.error("onExchange callback failed", { error: describeError(e) });
          }
        };
      }
    }
  }

  get inspector(): { readonly url: string } | undefined {
    return this.#inspector && { url: this.#inspector.url };
  }

  get url(): string {
    return this.#welcome?.url ?? "";
  }

  get subdomain(): string {
    return this.#welcome?.subdomain ?? "";
  }

  get addr(): Deno.NetAddr {
    return { transport: "tcp", hostname: this.#localHost, port: this.#options.port };
  }

  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  async start(): Promise<void> {
    const signal = this.#options.signal;
    const onAbort = (): void => void this.close();
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#finished.promise.finally(() => signal?.removeEventListener("abort", onAbort))
      .catch(() => {});
    if (signal?.aborted) this.#stop.abort();
    let first: Established | undefined;
    try {
      const inspect = this.#options.inspect;
      if (inspect && this.#store) {
        this.#inspector = startInspector(inspect, {
          store: this.#store,
          dialer: this.#dialer,
          hostHeader: this.#options.hostHeader,
          publicUrl: () => this.url,
          log: this.#log,
        });
      }
      while (!first) {
        try {
          first = await this.#establish();
        } catch (e) {
          const wait = e instanceof TunnelError && e.code === "subdomain-reserved" &&
            this.#options.wait && !this.#stop.signal.aborted;
          if (!wait) throw e;
          const ms = (e.retryAfterMs ?? RECONNECT_MIN_MS) + RESERVED_RETRY_MARGIN_MS;
          this.#log.info("Subdomain reserved, waiting", { ms });
          await sleep(ms, this.#stop.signal);
        }
      }
    } catch (e) {
      await this.close();
      throw e;
    }
    await this.#adopt(first.welcome);
    this.#track(this.#loop(first));
  }

  // Takes the server's welcome: its subdomain and lease, saved before the URL is
  // shown, so that a client killed any time after that can reclaim the name.
  async #adopt(welcome: Welcome): Promise<void> {
    this.#welcome = welcome;
    if (this.#lease === welcome.lease) return;
    this.#lease = welcome.lease;
    await this.#leases.save(welcome.subdomain, welcome.lease);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      // Only a bye that can reach the server frees the name; otherwise keep the lease.
      const byeSent = this.#control !== undefined && !this.#control.closed;
      this.#control?.close("client closing", { type: "bye" });
      for (const pool of this.#pools) pool.close();
      this.#appPool.close();
      this.#stopTrimmer();
      await this.#inspector?.close();
      while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
      if (this.#welcome && byeSent && !this.#replaced) {
        await this.#leases.save(this.#welcome.subdomain, undefined);
      }
      this.#log.close();
      this.#finished.resolve();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.catch((e) => this.#log.error("Internal error", { error: describeError(e) }))
      .finally(() => this.#tasks.delete(task));
  }

  // Opens a control connection and reads the welcome; throws TunnelError on refusal.
  async #establish(): Promise<Established> {
    const hello: ClientMessage = { type: "hello", version: PROTOCOL_VERSION };
    const subdomain = this.#welcome?.subdomain ?? this.#options.subdomain;
    if (subdomain !== undefined) hello.subdomain = subdomain;
    if (this.#options.token !== undefined) hello.token = this.#options.token;
    if (this.#options.replace && this.#welcome === undefined) hello.replace = true;
    const lease = this.#lease ??
      (subdomain === undefined ? undefined : await this.#leases.load(subdomain));
    if (lease !== undefined) hello.lease = lease;
    return await openControl(this.#target, hello, this.#stop.signal, this.#log);
  }

  async #loop(first: Established): Promise<void> {
    let session: Established | undefined = first;
    while (session) {
      if (this.#stop.signal.aborted) return closeQuietly(session.conn);
      const reason = await this.#serve(session);
      if (this.#stop.signal.aborted) return;
      if (this.#replaced) {
        this.#log.error("Tunnel taken over by another connection of this client", {});
        this.#finished.reject(this.#replaced);
        void this.close();
        return;
      }
      this.#log.warn("Lost connection to server", { reason });
      try {
        session = await this.#reconnect();
      } catch (e) {
        this.#log.error("Server refused reconnect", { error: describeError(e) });
        this.#finished.reject(e);
        void this.close();
        return;
      }
    }
  }

  async #serve({ conn, reader, welcome }: Established): Promise<string> {
    await this.#adopt(welcome);
    const control = new ControlChannel<ServerMessage, ClientMessage>(
      conn,
      reader,
      decodeServerFrame,
      this.#log,
      this.#options.heartbeat,
    );
    this.#control = control; // it owns `conn`; close() sends bye through it
    this.#log.info("Tunnel ready", { url: welcome.url });
    this.#ready(welcome.url);
    const pool = new ProxyPool({
      target: this.#target,
      tunnel: welcome.tunnel,
      secret: welcome.secret,
      size: this.#pool,
      quietAfterMs: this.#options.poolQuietAfterMs ?? PROXY_POOL_QUIET_MS,
      idleSilenceMs: welcome.proxyPingMs === undefined ? undefined : welcome.proxyPingMs * 3,
      maxStreams: this.#options.maxStreams ?? DEFAULT_CLIENT_MAX_STREAMS,
      dialer: this.#dialer,
      appPool: this.#appPool,
      http: this.#options.raw ? undefined : {
        hostHeader: this.#options.hostHeader,
        observe: this.#observe(),
        isolateCookiesFor: this.#options.isolateCookies ? new URL(welcome.url).hostname : undefined,
      },
      log: this.#log,
      track: (task) => this.#track(task),
    });
    this.#pools.add(pool);
    // A tunnel starts quiet: a few idle connections, the rest opened with its first visitor.
    pool.open(Math.min(this.#pool, PROXY_POOL_QUIET_SIZE));
    const reason = await control.run((message) => {
      if (message.type === "demand") pool.open(message.count);
      else if (message.type === "lease") {
        this.#lease = message.lease;
        this.#track(this.#leases.save(welcome.subdomain, message.lease));
      } else if (message.type === "url") {
        // The server's certificate for this name is ready: its https:// URL, told once.
        this.#welcome = { ...welcome, url: message.url };
        this.#log.info("Tunnel URL changed", { url: message.url });
        this.#ready(message.url);
      } else if (message.type === "error") {
        this.#log.warn("Server says", { code: message.code, message: message.message });
        if (message.code === "replaced") {
          this.#replaced = new TunnelError("replaced", message.message);
        }
      }
    });
    pool.retire();
    this.#track(this.#forget(pool));
    return reason;
  }

  // Who watches each HTTP stream: the request log, the caller's observer, the capture.
  #observe(): ((visitor: VisitorInfo) => ExchangeObserver | undefined) | undefined {
    const { onRequest, observe } = this.#options;
    const store = this.#store;
    return combineObservers([
      onRequest && (() => ({ exchange: onRequest })),
      observe,
      store && ((visitor) => captureStream(store, visitor)),
    ]);
  }

  #ready(url: string): void {
    try {
      this.#options.onReady?.(url);
    } catch (e) {
      this.#log.error("onReady callback failed", { error: describeError(e) });
    }
  }

  // Drops a retired pool once its busy connections are done.
  async #forget(pool: ProxyPool): Promise<void> {
    await pool.drained;
    this.#pools.delete(pool);
  }

  #reconnect(): Promise<Established | undefined> {
    return reconnect(() => this.#establish(), this.#stop.signal, this.#log);
  }
}
