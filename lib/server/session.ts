// One tunnel on the server, for its whole life: registered under its name, its
// control channel served, its lease renewed, its idle proxy connections pooled,
// its streams counted, and its name held for its client after an unannounced end.

import { ControlChannel } from "../control.ts";
import type { ProxyChannel } from "../channel.ts";
import { type ByteReader, type Conn, peerOf, writeAll } from "../io.ts";
import type { ServerLimits } from "../limits.ts";
import { SECRET_BYTES } from "../limits.ts";
import type { Logger } from "../log.ts";
import { randomToken } from "../names.ts";
import {
  type ClientMessage,
  decodeClientFrame,
  encodeFrame,
  PROTOCOL_VERSION,
  type ServerMessage,
  UPGRADE_RESPONSE,
} from "../protocol.ts";
import { concatBytes } from "../bytes.ts";
import type { Leases } from "./lease.ts";
import { IdlePool } from "./idle_pool.ts";
import type { Registry } from "./registry.ts";
import type { ServerMetrics } from "./server_metrics.ts";
import { TunnelStats } from "./tunnel_stats.ts";

/** What a session needs from its server. */
export interface SessionHost {
  /** The server's URL; a tunnel's is it with the name in front. */
  readonly url: string;
  /** Limits and timeouts in force. */
  readonly limits: ServerLimits;
  /** Where logs go. */
  readonly log: Logger;
  /** Registered tunnels, this one among them while it lives. */
  readonly registry: Registry<Session>;
  /** Leases issued to clients and names held for them. */
  readonly leases: Leases;
  /** Control connections: their sessions close them after a last frame. */
  readonly controlConns: Set<Conn>;
  /** Whether the server is shutting down (then no name is held). */
  readonly closing: boolean;
  /** Where registrations and held names are counted. */
  readonly metrics: ServerMetrics;
  /** With automatic HTTPS: tunnel URLs follow their certificates. */
  readonly certificates?: TunnelCertificates | undefined;
}

/** What a session asks a server with automatic HTTPS (ACME). */
export interface TunnelCertificates {
  /** The tunnel's URL now: `https://` if a certificate covers it, else the plain port's. */
  urlFor(name: string): string;
  /**
   * The tunnel is registered and welcomed: its certificate is ordered if
   * policy allows, and `ready` is called once with its `https://` URL when a
   * certificate covers it. Returns the unsubscribe.
   */
  watch(name: string, ready: (url: string) => void): () => void;
}

/** What a client whose token was revoked hears before its session closes. */
const REVOKED: ServerMessage = {
  type: "error",
  code: "unauthorized",
  message: "This tunnel's token was revoked by the server's operator",
};

/** What the server reports about one tunnel. */
export interface TunnelInfo {
  /** The subdomain it holds. */
  subdomain: string;
  /** The client's address, `ip:port`. */
  peer: string;
  /** When it was registered (ms since the epoch). */
  since: number;
  /** Whether the client answered the welcome (only then is its name held if it vanishes). */
  answered: boolean;
  /** Public connections waiting for or relaying a stream now. */
  streams: number;
  /** Idle proxy connections ready now. */
  idleProxies: number;
  /** Bytes from visitors relayed to it, counted when each relayed connection ends. */
  bytesIn: number;
  /** Bytes from it relayed to visitors, counted when each relayed connection ends. */
  bytesOut: number;
  /** Streams (public connections) relayed to it so far. */
  streamsTotal: number;
  /** Streams started a second, over the last minute (the server does not see each request). */
  streamsPerSecond: number;
}

/** A tunnel: the client's control channel, its subdomain and its idle proxies. */
export class Session {
  /** Opaque id the client names in `attach`. */
  readonly id: string = randomToken(16);
  /** Secret the client proves in `attach`. */
  readonly secret: string = randomToken(SECRET_BYTES);
  /** The subdomain this session holds. */
  readonly subdomain: string;
  /** The nonce of the lease this session's client holds. */
  leaseNonce: string | undefined;
  /** The client's address, `ip:port`. */
  readonly peer: string;
  /** The token it opened the tunnel with (its digest; undefined on an open server). */
  readonly tokenKey: string | undefined;
  /** When the session was created (ms since the epoch). */
  readonly since: number = Date.now();
  /** What it relayed: bytes, streams, streams a second. */
  readonly stats: TunnelStats = new TunnelStats();
  #streams = 0;
  #saidBye = false;
  #replaced = false;
  #control: ControlChannel<ClientMessage, ServerMessage>;
  #pool: IdlePool;
  #log: Logger;
  #limits: ServerLimits;
  #closed = false;
  #revoked = false;
  #cutStreams = new AbortController();

  /** Creates a session for `subdomain` over an upgraded control connection. */
  constructor(
    subdomain: string,
    conn: Conn,
    reader: ByteReader,
    init: { log: Logger; limits: ServerLimits; tokenKey?: string | undefined },
  ) {
    this.subdomain = subdomain;
    this.tokenKey = init.tokenKey;
    this.peer = peerOf(conn);
    this.#log = init.log;
    this.#limits = init.limits;
    const { maxFrameBytes, heartbeatIntervalMs, peerTimeoutMs } = init.limits;
    this.#pool = new IdlePool({
      maxIdle: init.limits.maxIdleProxies,
      pingIntervalMs: init.limits.proxyPingIntervalMs,
      demand: (count) => this.send({ type: "demand", count }),
      log: init.log,
      name: subdomain,
    });
    this.#control = new ControlChannel(
      conn,
      reader,
      (bytes) => decodeClientFrame(bytes, maxFrameBytes),
      init.log,
      { intervalMs: heartbeatIntervalMs, peerTimeoutMs },
    );
  }

  /** Whether the client has sent anything on the control connection (so it got its welcome). */
  get heardFrom(): boolean {
    return this.#control.received > 0;
  }

  /** Whether the client closed the tunnel on purpose (its name is free at once). */
  get saidBye(): boolean {
    return this.#saidBye;
  }

  /** Whether a new session of the same client took this one's place. */
  get replaced(): boolean {
    return this.#replaced;
  }

  /** Public connections of this tunnel now waiting for or relaying a stream. */
  get streams(): number {
    return this.#streams;
  }

  /** Number of idle proxy connections held now. */
  get idleCount(): number {
    return this.#pool.size;
  }

  /** A snapshot of this tunnel for status pages and tests. */
  info(): TunnelInfo {
    return {
      subdomain: this.subdomain,
      peer: this.peer,
      since: this.since,
      answered: this.heardFrom,
      streams: this.#streams,
      idleProxies: this.#pool.size,
      bytesIn: this.stats.bytesIn,
      bytesOut: this.stats.bytesOut,
      streamsTotal: this.stats.streams,
      streamsPerSecond: this.stats.rate.perSecond(),
    };
  }

  /** Ends this session because its client came back on a new connection. */
  replace(): void {
    this.#replaced = true;
    this.close({
      type: "error",
      code: "replaced",
      message: "This tunnel was taken over by a new connection of its client",
    });
  }

  /** Whether the client answers a ping within `timeoutMs` (false once closed). */
  probe(timeoutMs: number): Promise<boolean> {
    return this.#control.probe(timeoutMs);
  }

  /** Sends a message on the control channel. */
  send(message: ServerMessage): void {
    this.#control.send(message);
  }

  /**
   * Counts a public connection against the tunnel's stream limit: false (and
   * not counted) when the tunnel is at it. Each true is matched by `leaveStream()`.
   */
  enterStream(): boolean {
    const max = this.#limits.maxStreamsPerTunnel;
    if (max > 0 && this.#streams >= max) return false;
    this.#streams++;
    return true;
  }

  /** Uncounts a public connection counted by `enterStream()`. */
  leaveStream(): void {
    this.#streams--;
    if (this.#revoked && this.#streams === 0) this.close(REVOKED);
  }

  /** Aborted when the session's streams must end at once (a token revoked at once). */
  get streamSignal(): AbortSignal {
    return this.#cutStreams.signal;
  }

  /** Whether its token was revoked (its name is not held for it). */
  get revoked(): boolean {
    return this.#revoked;
  }

  /**
   * Its token no longer allows it: the client is told and the session closes,
   * once its in-flight streams have ended, or at once (cutting them) with
   * `atOnce`. The caller has already removed it from the registry.
   */
  revoke(atOnce: boolean): void {
    this.#revoked = true;
    if (atOnce) this.#cutStreams.abort();
    if (atOnce || this.#streams === 0) this.close(REVOKED);
  }

  /** Serves the control channel until it ends, then closes everything the session holds. */
  async run(): Promise<string> {
    const reason = await this.#control.run((message) => {
      if (message.type === "bye") {
        this.#saidBye = true;
        this.#control.close("client said bye");
        return;
      }
      this.#control.close("unexpected frame", {
        type: "error",
        code: "bad-request",
        message: `Unexpected ${message.type} frame on control connection`,
      });
    });
    this.close();
    return reason;
  }

  /** Adds a proxy connection, new or back from a finished stream (see `IdlePool.add`). */
  addProxy(proxy: ProxyChannel): boolean {
    return !this.#closed && this.#pool.add(proxy);
  }

  /** Takes an idle proxy connection for a visitor (see `IdlePool.take`). */
  takeProxy(timeoutMs: number, signal?: AbortSignal): Promise<ProxyChannel | undefined> {
    return this.#closed ? Promise.resolve(undefined) : this.#pool.take(timeoutMs, signal);
  }

  /** A connection failed to accept a stream (see `IdlePool.suspect`). */
  suspectIdle(): void {
    this.#pool.suspect();
  }

  /** Closes the control channel and idle proxies; waiting public connections get nothing. */
  close(last?: ServerMessage): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#control.close("session closed", last);
    this.#pool.close();
  }
}

/**
 * Registers a tunnel for `name` on `conn` (whose hello was accepted), welcomes
 * the client, serves the tunnel until it ends, and then holds the name for a
 * client that went away without `bye` (if it ever answered the welcome, so it
 * has its lease). `claim.nonce` is the nonce of a lease the client came back
 * with, `claim.tokenKey` the token it was allowed by.
 */
export async function serveSession(
  ctx: SessionHost,
  conn: Conn,
  reader: ByteReader,
  claim: { name: string; nonce: string | undefined; tokenKey: string | undefined },
  id: number,
): Promise<void> {
  const { name, nonce: claimedNonce, tokenKey } = claim;
  const session = new Session(name, conn, reader, { log: ctx.log, limits: ctx.limits, tokenKey });
  ctx.registry.add(session);
  ctx.metrics.registered();
  ctx.controlConns.add(conn);
  let reason = "welcome not delivered";
  let renewing: ReturnType<typeof setInterval> | undefined;
  let unwatch: (() => void) | undefined;
  try {
    // A client that comes back with its lease keeps its nonce, so the lease it
    // holds stays good whatever happens to this welcome.
    const issued = await ctx.leases.issue(name, claimedNonce);
    session.leaseNonce = issued.nonce;
    ctx.log.info("Tunnel registered", { conn: id, subdomain: name, peer: session.peer });
    const url = ctx.certificates?.urlFor(name) ?? ctx.url.replace("//", `//${name}.`);
    const welcome = encodeFrame({
      type: "welcome",
      version: PROTOCOL_VERSION,
      tunnel: session.id,
      secret: session.secret,
      subdomain: name,
      url,
      lease: issued.lease,
      proxyPingMs: ctx.limits.proxyPingIntervalMs,
    });
    await writeAll(conn, concatBytes(UPGRADE_RESPONSE, welcome));
    // Once the welcome is out: its https:// URL follows as a `url` frame when ready.
    if (!url.startsWith("https:")) {
      unwatch = ctx.certificates?.watch(name, (https) => session.send({ type: "url", url: https }));
    }
    // Fresh leases as the session lives: after a restart, a recent one proves its holder.
    renewing = setInterval(() => {
      ctx.leases.issue(name, issued.nonce).then(
        ({ lease }) => session.send({ type: "lease", lease }),
        (e) => ctx.log.error("Cannot renew lease", { subdomain: name, error: `${e}` }),
      );
    }, ctx.leases.durationMs / 2);
    reason = await session.run();
  } finally {
    unwatch?.();
    clearInterval(renewing);
    session.close();
    ctx.controlConns.delete(conn);
    ctx.registry.remove(session);
    const holds = session.heardFrom && !session.saidBye && !session.replaced && !session.revoked &&
      session.leaseNonce !== undefined && !ctx.closing && !ctx.registry.get(name);
    if (holds) ctx.leases.hold(name, session.leaseNonce!);
    if (holds) ctx.metrics.leaseHeld();
    ctx.log.info("Tunnel closed", { conn: id, subdomain: name, reason, held: holds });
  }
}
