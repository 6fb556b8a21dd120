// `openTunnel`: a tunnel's control session, kept up with reconnects and leases,
// and a pool of proxy connections per session.

export type { Tunnel, TunnelOptions } from "./tunnel_types.ts";

import { ControlChannel } from "../control.ts";
import { TunnelError } from "../errors.ts";
import { closeQuietly, sleep } from "../io.ts";
import { describeError, type Logger, silentLogger, throttleWarnings } from "../log.ts";
import {
  DEFAULT_CLIENT_MAX_STREAMS,
  DEFAULT_POOL_SIZE,
  MAX_IDLE_PROXIES,
  RECONNECT_MIN_MS,
} from "../limits.ts";
import {
  type ClientMessage,
  decodeServerFrame,
  PROTOCOL_VERSION,
  type ServerMessage,
} from "../protocol.ts";
import { parseServerUrl, type ServerTarget } from "./dial.ts";
import { type InspectorServer, startInspector } from "./inspector/inspector.ts";
import type { CaptureStore } from "./inspector/store.ts";
import { captureStoreFor, tunnelObservers } from "./observers.ts";
import type { Tunnel, TunnelOptions } from "./tunnel_types.ts";
import { type Established, openControl, type Welcome } from "./handshake.ts";
import { defaultLeaseFile, LeaseKeeper, LeaseStore } from "./lease_store.ts";
import { LocalDialer } from "./local_dialer.ts";
import { AppPool } from "./app_pool.ts";
import { reconnect, RESERVED_RETRY_MARGIN_MS } from "./reconnect.ts";
import { ProxyPool } from "./proxy.ts";

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
    if (!options.raw) this.#store = captureStoreFor(options, this.#log);
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
      idleSilenceMs: welcome.proxyPingMs === undefined ? undefined : welcome.proxyPingMs * 3,
      maxStreams: this.#options.maxStreams ?? DEFAULT_CLIENT_MAX_STREAMS,
      dialer: this.#dialer,
      appPool: this.#appPool,
      http: this.#options.raw ? undefined : {
        hostHeader: this.#options.hostHeader,
        observe: tunnelObservers(this.#options, this.#store),
        isolateCookiesFor: this.#options.isolateCookies ? new URL(welcome.url).hostname : undefined,
      },
      log: this.#log,
      track: (task) => this.#track(task),
    });
    this.#pools.add(pool);
    pool.open(this.#pool);
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
