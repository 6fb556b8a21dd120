// One tunnel on the server, for its whole life: a name (a subdomain, a custom
// hostname, or a TCP port) held for a session, its URL, its lease, its streams
// counted against the per-tunnel limit, its token revoked, its name held after
// an unannounced end. Its session (lib/server/session.ts) carries its streams.

import { TunnelStats } from "./tunnel_stats.ts";
import { randomToken } from "../names.ts";
import type { Claim } from "./cluster/claim.ts";

/** What kind of tunnel: a name routed by HTTP Host and TLS SNI, or a TCP port of its own. */
export type TunnelKind = "http" | "tcp";

/** What the server reports about one tunnel. */
export interface TunnelInfo {
  /** The name it holds: a subdomain, a custom hostname, or `tcp:<port>`. */
  subdomain: string;
  /** `http` (routed by Host and SNI) or `tcp` (a port of its own). */
  kind: TunnelKind;
  /** Its public URL. */
  url: string;
  /** The client's address, `ip:port`. */
  peer: string;
  /** When it was registered (ms since the epoch). */
  since: number;
  /** Whether the client answered its grant (only then is its name held if it vanishes). */
  answered: boolean;
  /** Public connections waiting for or relaying a stream now. */
  streams: number;
  /** Idle proxy connections ready now on its control connection (shared by its tunnels). */
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

/** What a tunnel asks of the session that carries it. */
export interface TunnelCarrier {
  /** The client's address. */
  readonly peer: string;
  /** The token it opened the session with (its digest; undefined on an open server). */
  readonly tokenKey: string | undefined;
  /** Frames received on the control connection so far. */
  readonly received: number;
  /** Idle proxy connections now. */
  readonly idleCount: number;
  /** Its tunnel has no stream left and was revoked: the session may close. */
  tunnelIdle(tunnel: ServerTunnel): void;
}

/** How a tunnel is registered. */
export interface TunnelInit {
  /** Its id on the control connection. */
  id: number;
  /** Its name: a subdomain, a custom hostname, or `tcp:<port>`. */
  name: string;
  /** HTTP (by name) or TCP (a port). */
  kind: TunnelKind;
  /** Its public URL. */
  url: string;
  /** The TCP port, for a TCP tunnel. */
  port?: number | undefined;
  /** Whether the name is a custom hostname outside the server's domain. */
  custom: boolean;
  /** The nonce of its lease. */
  leaseNonce: string;
  /** Concurrent streams at most (0: no limit). */
  maxStreams: number;
}

/** A tunnel: a name on a session. */
export class ServerTunnel {
  /** Its id on the control connection, named in each `open`. */
  readonly id: number;
  /** Its id in the whole cluster: the session its directory claim names (random). */
  readonly uid: string = randomToken(16);
  /** In a cluster: its claim in the directory (released when it ends). */
  claim: Claim | undefined;
  /** Its name: a subdomain, a custom hostname, or `tcp:<port>`. */
  readonly name: string;
  /** HTTP (by name) or TCP (a port). */
  readonly kind: TunnelKind;
  /** The TCP port, for a TCP tunnel. */
  readonly port: number | undefined;
  /** Whether the name is a custom hostname. */
  readonly custom: boolean;
  /** The session that carries it. */
  readonly session: TunnelCarrier;
  /** The nonce of the lease its client holds. */
  readonly leaseNonce: string;
  /** When it was registered (ms since the epoch). */
  readonly since: number = Date.now();
  /** What it relayed: bytes, streams, streams a second. */
  readonly stats: TunnelStats = new TunnelStats();
  /** Its public URL (`https://` once a certificate covers it). */
  url: string;
  /** Stops waiting for its certificate (with automatic HTTPS). */
  unwatch: (() => void) | undefined;
  #maxStreams: number;
  #streams = 0;
  #heardAt: number;
  #revoked = false;
  #ended = false;
  #cutStreams = new AbortController();

  /** A tunnel of `session`, granted now. */
  constructor(session: TunnelCarrier, init: TunnelInit) {
    this.session = session;
    this.id = init.id;
    this.name = init.name;
    this.kind = init.kind;
    this.url = init.url;
    this.port = init.port;
    this.custom = init.custom;
    this.leaseNonce = init.leaseNonce;
    this.#maxStreams = init.maxStreams;
    this.#heardAt = session.received;
  }

  /** Whether the client has sent anything since its grant (so it has its lease). */
  get answered(): boolean {
    return this.session.received > this.#heardAt;
  }

  /** Public connections of this tunnel now waiting for or relaying a stream. */
  get streams(): number {
    return this.#streams;
  }

  /** Aborted when its streams must end at once (a token revoked at once). */
  get streamSignal(): AbortSignal {
    return this.#cutStreams.signal;
  }

  /** Whether its token was revoked (its name is not held for it). */
  get revoked(): boolean {
    return this.#revoked;
  }

  /** Whether it has ended (its session closed, or it was taken away). */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Counts a public connection against the tunnel's stream limit: false (and
   * not counted) when the tunnel is at it. Each true is matched by `leaveStream()`.
   */
  enterStream(): boolean {
    if (this.#maxStreams > 0 && this.#streams >= this.#maxStreams) return false;
    this.#streams++;
    return true;
  }

  /** Uncounts a public connection counted by `enterStream()`. */
  leaveStream(): void {
    this.#streams--;
    if (this.#revoked && this.#streams === 0) this.session.tunnelIdle(this);
  }

  /** Its token no longer allows it: streams end at once with `atOnce`, else as they finish. */
  revoke(atOnce: boolean): void {
    this.#revoked = true;
    if (atOnce) this.#cutStreams.abort();
  }

  /** Marks it ended (its session does the rest). */
  end(): void {
    this.#ended = true;
  }

  /** A snapshot for status pages and tests. */
  info(): TunnelInfo {
    return {
      subdomain: this.name,
      kind: this.kind,
      url: this.url,
      peer: this.session.peer,
      since: this.since,
      answered: this.answered,
      streams: this.#streams,
      idleProxies: this.session.idleCount,
      bytesIn: this.stats.bytesIn,
      bytesOut: this.stats.bytesOut,
      streamsTotal: this.stats.streams,
      streamsPerSecond: this.stats.rate.perSecond(),
    };
  }
}
