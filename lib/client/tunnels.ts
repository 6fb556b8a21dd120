// TunnelClient: a client's tunnels over one control connection, kept up with
// reconnects and leases, and one pool of proxy connections per connection
// shared by them. Each tunnel is claimed, granted or refused on its own: one
// that is refused fails alone, and the others go on.

import { ControlChannel } from "../control.ts";
import { TunnelError } from "../errors.ts";
import { closeQuietly, sleep } from "../io.ts";
import { describeError, type Logger, silentLogger, throttleWarnings } from "../log.ts";
import {
  DEFAULT_CLIENT_MAX_STREAMS,
  DEFAULT_POOL_SIZE,
  MAX_IDLE_PROXIES,
  MAX_TUNNELS_PER_SESSION,
  PROXY_POOL_QUIET_MS,
  PROXY_POOL_QUIET_SIZE,
} from "../limits.ts";
import { useMemoryTrimmer } from "../memory.ts";
import {
  type ClientMessage,
  decodeServerFrame,
  PROTOCOL_VERSION,
  type ServerMessage,
  type TunnelGrant,
} from "../protocol.ts";
import type { ServerTarget } from "./dial.ts";
import { type InspectorServer, startInspector } from "./inspector/inspector.ts";
import type { CaptureStore } from "./inspector/store.ts";
import { captureStoreFor, tunnelObservers } from "./observers.ts";
import { type Established, openControl, refusalError } from "./handshake.ts";
import { LeaseKeeper } from "./lease_store.ts";
import { afterRefusal, reconnect } from "./reconnect.ts";
import { ProxyPool } from "./proxy.ts";
import { ServerList } from "./server_list.ts";
import { ClientTunnel } from "./client_tunnel.ts";
import type { TunnelGroup, TunnelHandle, TunnelsOptions } from "./tunnel_types.ts";

/**
 * The tunnels of one client and the control connection that carries them.
 *
 * @example Two nodes of one cluster, tried in turn
 * ```ts ignore
 * const servers = ["https://a.tunnel.example", "https://b.tunnel.example"];
 * await using client = new TunnelClient({ server: servers, tunnels: [{ port: 3000 }] });
 * await client.start(); // logs "Connected to https://a.tunnel.example" (or b) on each (re)connect
 * ```
 */
export class TunnelClient implements TunnelGroup {
  #options: TunnelsOptions;
  #servers: ServerList;
  #target: ServerTarget; // the server of the current (or last) connection
  #log: Logger & { close(): void };
  #pool: number;
  #stopTrimmer: (() => void) | undefined; // from start() to close(), which a failed start calls
  #tunnels: ClientTunnel[];
  #byId = new Map<number, ClientTunnel>();
  #control: ControlChannel<ServerMessage, ClientMessage> | undefined;
  /** Counts connections made (a refusal retried on an older one is claimed by the reconnect). */
  #connection = 0;
  #pools = new Set<ProxyPool>();
  #leases: LeaseKeeper;
  #replaced: TunnelError | undefined;
  #tasks = new Set<Promise<void>>();
  #stop = new AbortController();
  #finished = Promise.withResolvers<void>();
  #closing: Promise<void> | undefined;
  #store: CaptureStore | undefined;
  #inspector: InspectorServer | undefined;
  #started = false;

  /** A client for `options.tunnels`; nothing is opened until `start()`. */
  constructor(options: TunnelsOptions) {
    this.#options = options;
    if (options.tunnels.length === 0) throw new TypeError("Cannot open tunnels: none given");
    if (options.tunnels.length > MAX_TUNNELS_PER_SESSION) {
      throw new RangeError(
        `Cannot open ${options.tunnels.length} tunnels: at most ${MAX_TUNNELS_PER_SESSION}`,
      );
    }
    this.#servers = new ServerList(options.server ?? "http://localhost:8080", options.ca);
    this.#target = this.#servers.current;
    // Per-visitor warnings (an app that refuses) are written once per interval, with a count.
    this.#log = throttleWarnings(options.logger ?? silentLogger);
    const names = new Set<string>();
    this.#tunnels = options.tunnels.map((spec, i) => {
      const tunnel = new ClientTunnel(spec, i, options.ca);
      if (names.has(tunnel.name)) throw new TypeError(`Two tunnels are named "${tunnel.name}"`);
      names.add(tunnel.name);
      return tunnel;
    });
    const perTunnel = options.pool ?? DEFAULT_POOL_SIZE;
    this.#pool = Math.min(
      options.pool === undefined ? perTunnel * this.#tunnels.length : perTunnel,
      MAX_IDLE_PROXIES,
    );
    this.#leases = LeaseKeeper.inFile(options.leaseFile, this.#servers.urls, this.#log);
    this.#finished.promise.catch(() => {}); // callers may never look
    const http = this.#tunnels.filter((t) => t.local.http !== undefined);
    if (http.length > 0) this.#store = captureStoreFor(options, this.#log);
    for (const tunnel of this.#tunnels) {
      if (!tunnel.local.http) continue;
      const spec = tunnel.spec;
      tunnel.local.http = {
        hostHeader: spec.hostHeader,
        // The inspector names the tunnel of each exchange when there are several.
        observe: tunnelObservers(options, this.#store, http.length > 1 ? tunnel.name : undefined),
        isolateCookiesFor: undefined, // set from the URL once granted
      };
    }
  }

  get tunnels(): readonly TunnelHandle[] {
    return this.#tunnels;
  }

  get inspector(): { readonly url: string } | undefined {
    return this.#inspector && { url: this.#inspector.url };
  }

  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /** Opens the control connection and claims every tunnel (what `openTunnels` does). */
  async start(): Promise<void> {
    this.#stopTrimmer = useMemoryTrimmer();
    const signal = this.#options.signal;
    const onAbort = (): void => void this.close();
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#finished.promise.finally(() => signal?.removeEventListener("abort", onAbort))
      .catch(() => {});
    if (signal?.aborted) this.#stop.abort();
    try {
      const inspect = this.#options.inspect;
      if (inspect && this.#store) {
        this.#inspector = startInspector(inspect, {
          store: this.#store,
          log: this.#log,
          tunnels: () =>
            this.#tunnels.filter((t) => t.local.http).map((t) => ({
              name: t.name,
              dialer: t.local.dialer,
              hostHeader: t.spec.hostHeader,
              url: t.url,
            })),
        });
      }
      const first = await this.#establish(true);
      this.#track(this.#loop(first));
      await Promise.race([
        Promise.all(this.#tunnels.map((t) => t.settled)),
        this.#finished.promise,
      ]);
      this.#started = true;
      if (!this.#tunnels.some((t) => t.state === "up")) {
        throw this.#tunnels.find((t) => t.error)?.error ??
          new TunnelError("protocol", "Cannot open tunnel: the client closed");
      }
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const up = this.#tunnels.filter((t) => t.state === "up");
      this.#stop.abort();
      // Only a bye that can reach the server frees the names; otherwise keep the leases.
      const byeSent = this.#control !== undefined && !this.#control.closed;
      this.#control?.close("client closing", { type: "bye" });
      for (const pool of this.#pools) pool.close();
      for (const tunnel of this.#tunnels) tunnel.local.close();
      await this.#inspector?.close();
      while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
      if (byeSent && !this.#replaced) {
        for (const tunnel of up) {
          if (tunnel.leaseName) await this.#leases.save(tunnel.leaseName, undefined);
        }
      }
      this.#stopTrimmer?.();
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

  // Opens a control connection with a claim for each tunnel not lost for good, and
  // takes the answers; throws TunnelError when the server refuses the connection.
  async #establish(first: boolean): Promise<Established> {
    const hello: ClientMessage = { type: "hello", version: PROTOCOL_VERSION };
    if (this.#options.token !== undefined) hello.token = this.#options.token;
    const wanted = this.#tunnels.filter((t) => t.state !== "failed");
    const replace = first && this.#options.replace === true;
    const claims = await Promise.all(wanted.map((t) => t.claim(this.#leases, replace)));
    // Each server in turn, at once: backoff is for a round in which all failed.
    const { value: established, target } = await this.#servers.connect(
      (server) => openControl(server, hello, claims, this.#stop.signal, this.#log),
      this.#log,
      this.#stop.signal,
    );
    this.#target = target;
    this.#leases.use(target.url); // leases are the cluster's: saved for the node in use
    this.#log.info(`Connected to ${target.url}`);
    this.#byId.clear();
    this.#connection++;
    await this.#take(established.grants, first);
    return established;
  }

  // The answers to claims: tunnels up (their lease saved before their URL is shown,
  // so that a client killed any time after that can reclaim the name), waiting to
  // claim again, or lost for good.
  async #take(grants: TunnelGrant[], first: boolean): Promise<void> {
    for (const grant of grants) {
      const tunnel = this.#tunnels.find((t) => t.ref === grant.ref);
      if (!tunnel || tunnel.state === "failed") continue;
      if (grant.ok) {
        tunnel.granted(grant);
        this.#byId.set(grant.id, tunnel);
        if (tunnel.local.http && tunnel.spec.isolateCookies) {
          tunnel.local.http.isolateCookiesFor = new URL(grant.url).hostname;
        }
        await this.#leases.save(grant.name, grant.lease);
        continue;
      }
      const error = new TunnelError(grant.code, grant.message, {
        retryAfterMs: grant.retryAfterMs,
      });
      if (grant.code === "subdomain-taken" || grant.code === "port-taken") {
        tunnel.takenSince ??= Date.now();
      } else tunnel.takenSince = undefined;
      const next = afterRefusal(grant, {
        first,
        wait: this.#options.wait === true,
        takenSince: tunnel.takenSince,
        attempts: tunnel.attempts,
      });
      if (next === undefined) {
        this.#fail(tunnel, error);
        continue;
      }
      tunnel.attempts++;
      this.#log.warn("Tunnel refused, claiming it again", {
        tunnel: tunnel.name,
        error: grant.message,
        in_ms: next,
      });
      this.#reclaimLater(tunnel, next);
    }
    // Every tunnel lost for good: nothing left to keep up.
    if (this.#started && this.#tunnels.every((t) => t.state === "failed")) this.#allFailed();
    for (const grant of grants) {
      const tunnel = this.#tunnels.find((t) => t.ref === grant.ref);
      if (grant.ok && tunnel?.state === "up") this.#ready(tunnel);
    }
  }

  // Claims `tunnel` again on the current connection after `ms` (its control channel
  // may not be in place yet when the refusal came with the connection's welcome).
  #reclaimLater(tunnel: ClientTunnel, ms: number): void {
    const connection = this.#connection;
    this.#track((async () => {
      await sleep(ms, this.#stop.signal);
      if (this.#stop.signal.aborted || tunnel.state !== "pending") return;
      const now = this.#control;
      if (!now || now.closed || this.#connection !== connection) return; // a reconnect claims it
      now.send({ type: "claim", tunnels: [await tunnel.claim(this.#leases, false)] });
    })());
  }

  #fail(tunnel: ClientTunnel, error: TunnelError): void {
    if (tunnel.state === "failed") return;
    tunnel.failed(error);
    this.#log.error("Tunnel lost", { tunnel: tunnel.name, error: error.message });
    try {
      this.#options.onFailed?.(error, tunnel);
    } catch (e) {
      this.#log.error("onFailed callback failed", { error: describeError(e) });
    }
    if (this.#started && this.#tunnels.every((t) => t.state === "failed")) this.#allFailed();
  }

  #allFailed(): void {
    if (this.#closing) return;
    const error = this.#replaced ?? this.#tunnels.find((t) => t.error)?.error;
    this.#finished.reject(error);
    void this.close();
  }

  async #loop(first: Established): Promise<void> {
    let session: Established | undefined = first;
    while (session) {
      if (this.#stop.signal.aborted) return closeQuietly(session.conn);
      const reason = await this.#serve(session);
      for (const tunnel of this.#tunnels) tunnel.lost();
      if (this.#stop.signal.aborted) return;
      if (this.#replaced) {
        this.#log.error("Tunnel taken over by another connection of this client", {});
        for (const tunnel of this.#tunnels) this.#fail(tunnel, this.#replaced);
        this.#allFailed();
        return;
      }
      if (this.#tunnels.every((t) => t.state === "failed")) return;
      this.#log.warn("Lost connection to server", { reason });
      try {
        session = await reconnect(() => this.#establish(false), this.#stop.signal, this.#log);
      } catch (e) {
        this.#log.error("Server refused reconnect", { error: describeError(e) });
        for (const tunnel of this.#tunnels) this.#fail(tunnel, e as TunnelError);
        this.#finished.reject(e);
        void this.close();
        return;
      }
    }
  }

  async #serve({ conn, reader, welcome }: Established): Promise<string> {
    const control = new ControlChannel<ServerMessage, ClientMessage>(
      conn,
      reader,
      decodeServerFrame,
      this.#log,
      this.#options.heartbeat,
    );
    this.#control = control; // it owns `conn`; close() sends bye through it
    const pool = new ProxyPool({
      target: this.#target,
      session: welcome.session,
      secret: welcome.secret,
      size: this.#pool,
      quietAfterMs: this.#options.poolQuietAfterMs ?? PROXY_POOL_QUIET_MS,
      idleSilenceMs: welcome.proxyPingMs === undefined ? undefined : welcome.proxyPingMs * 3,
      maxStreams: this.#options.maxStreams ?? DEFAULT_CLIENT_MAX_STREAMS,
      local: (id) => this.#byId.get(id)?.local,
      log: this.#log,
      track: (task) => this.#track(task),
    });
    this.#pools.add(pool);
    // The pool starts quiet: a few idle connections, the rest opened with the first visitor.
    pool.open(Math.min(this.#pool, PROXY_POOL_QUIET_SIZE));
    const reason = await control.run((message) => {
      const tunnel = "tunnel" in message ? this.#byId.get(message.tunnel) : undefined;
      if (message.type === "demand") pool.open(message.count);
      else if (message.type === "lease" && tunnel) {
        tunnel.renewed(message.lease);
        this.#track(this.#leases.save(tunnel.leaseName!, message.lease));
      } else if (message.type === "url" && tunnel) {
        // The server's certificate for this name is ready: its https:// URL, told once.
        tunnel.moved(message.url);
        this.#log.info("Tunnel URL changed", { tunnel: tunnel.name, url: message.url });
        this.#ready(tunnel);
      } else if (message.type === "claimed") {
        control.send({ type: "ping" }); // the grants (and their leases) arrived
        this.#track(this.#take(message.tunnels, false));
      } else if (message.type === "closed" && tunnel) {
        this.#byId.delete(message.tunnel);
        this.#fail(tunnel, new TunnelError(message.code, message.message));
      } else if (message.type === "error") {
        this.#log.warn("Server says", { code: message.code, message: message.message });
        if (message.code === "replaced") {
          this.#replaced = new TunnelError("replaced", message.message);
        } else if (message.code === "version" || message.code === "unauthorized") {
          const error = refusalError(message);
          for (const t of this.#tunnels) this.#fail(t, error);
        }
      }
    });
    pool.retire();
    this.#track(this.#forget(pool));
    return reason;
  }

  #ready(tunnel: ClientTunnel): void {
    this.#log.info("Tunnel ready", { tunnel: tunnel.name, url: tunnel.url });
    try {
      tunnel.spec.onReady?.(tunnel.url);
      this.#options.onReady?.(tunnel.url, tunnel);
    } catch (e) {
      this.#log.error("onReady callback failed", { error: describeError(e) });
    }
  }

  // Drops a retired pool once its busy connections are done.
  async #forget(pool: ProxyPool): Promise<void> {
    await pool.drained;
    this.#pools.delete(pool);
  }
}
