// One control connection on the server: the client's session, its tunnels (each a
// name or a TCP port, lib/server/tunnel.ts), its idle proxy connections shared by
// them, its claims judged one batch after another, and its leases renewed.

import { ControlChannel } from "../control.ts";
import type { ProxyChannel } from "../channel.ts";
import { type ByteReader, type Conn, ipOf, peerOf, writeAll } from "../io.ts";
import type { ServerLimits } from "../limits.ts";
import { SECRET_BYTES } from "../limits.ts";
import { describeError, type Logger } from "../log.ts";
import { randomToken } from "../names.ts";
import {
  type ClientMessage,
  decodeClientFrame,
  encodeFrame,
  frameBatches,
  PROTOCOL_VERSION,
  type ServerMessage,
  type TunnelClaim,
  type TunnelGrant,
  UPGRADE_RESPONSE,
} from "../protocol.ts";
import { concatBytes } from "../bytes.ts";
import { IdlePool } from "./idle_pool.ts";
import type { ServerTunnel, TunnelCarrier } from "./tunnel.ts";

/** What a client whose token was revoked hears before its session closes. */
export const REVOKED: ServerMessage = {
  type: "error",
  code: "unauthorized",
  message: "This tunnel's token was revoked by the server's operator",
};

/** What a session is told by its server as it lives. */
export interface SessionEvents {
  /** A batch of claims to judge; resolves with one grant or refusal per claim, in order. */
  claim(session: Session, claims: TunnelClaim[]): Promise<TunnelGrant[]>;
  /** A revoked tunnel's last stream ended. */
  tunnelIdle(session: Session, tunnel: ServerTunnel): void;
}

/** A client's control connection: its tunnels and their idle proxies. */
export class Session implements TunnelCarrier {
  /** Opaque id the client names in `attach`. */
  readonly id: string = randomToken(16);
  /** Secret the client proves in `attach`. */
  readonly secret: string = randomToken(SECRET_BYTES);
  /** The client's address, `ip:port`. */
  readonly peer: string;
  /** The client's IP address (per-IP limits count by it). */
  readonly ip: string;
  /** The token it opened the session with (its digest; undefined on an open server). */
  readonly tokenKey: string | undefined;
  /** When the session was created (ms since the epoch). */
  readonly since: number = Date.now();
  /** Its tunnels by id. */
  readonly tunnels: Map<number, ServerTunnel> = new Map();
  #nextTunnel = 1;
  #saidBye = false;
  #replaced = false;
  #control: ControlChannel<ClientMessage, ServerMessage>;
  #pool: IdlePool;
  #events: SessionEvents;
  #log: Logger;
  #closed = false;
  #claims: Promise<void> = Promise.resolve();

  /** Creates a session over an upgraded control connection. */
  constructor(
    conn: Conn,
    reader: ByteReader,
    init: {
      log: Logger;
      limits: ServerLimits;
      tokenKey?: string | undefined;
      events: SessionEvents;
    },
  ) {
    this.tokenKey = init.tokenKey;
    this.peer = peerOf(conn);
    this.ip = ipOf(conn);
    this.#events = init.events;
    this.#log = init.log;
    const { maxFrameBytes, heartbeatIntervalMs, peerTimeoutMs } = init.limits;
    this.#pool = new IdlePool({
      maxIdle: init.limits.maxIdleProxies,
      pingIntervalMs: init.limits.proxyPingIntervalMs,
      demand: (count) => this.send({ type: "demand", count }),
      log: init.log,
      name: this.peer,
    });
    this.#control = new ControlChannel(
      conn,
      reader,
      (bytes) => decodeClientFrame(bytes, maxFrameBytes),
      init.log,
      { intervalMs: heartbeatIntervalMs, peerTimeoutMs },
    );
  }

  /** Frames received on the control connection so far (pings included). */
  get received(): number {
    return this.#control.received;
  }

  /** Whether the client closed the session on purpose (its names are free at once). */
  get saidBye(): boolean {
    return this.#saidBye;
  }

  /** Whether a new session of the same client took this one's place. */
  get replaced(): boolean {
    return this.#replaced;
  }

  /** Whether the session has ended. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Number of idle proxy connections held now. */
  get idleCount(): number {
    return this.#pool.size;
  }

  /** The id for its next tunnel. */
  nextTunnelId(): number {
    return this.#nextTunnel++;
  }

  /** Its revoked tunnel's last stream ended. */
  tunnelIdle(tunnel: ServerTunnel): void {
    this.#events.tunnelIdle(this, tunnel);
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

  /** Writes the `101` and the welcome. */
  async welcome(conn: Conn, proxyPingMs: number): Promise<void> {
    const welcome = encodeFrame({
      type: "welcome",
      version: PROTOCOL_VERSION,
      session: this.id,
      secret: this.secret,
      proxyPingMs,
    });
    await writeAll(conn, concatBytes(UPGRADE_RESPONSE, welcome));
  }

  /**
   * Serves the control channel until it ends (claims judged in turn, each batch
   * answered with `claimed`), then closes everything the session holds;
   * resolves with why it ended once the claims under way are done.
   */
  async run(): Promise<string> {
    const reason = await this.#control.run((message) => {
      if (message.type === "bye") {
        this.#saidBye = true;
        this.#control.close("client said bye");
        return;
      }
      if (message.type === "claim") {
        // Batches are judged one after another; a bug in one is logged, and the session ends.
        this.#claims = this.#claims.then(async () => {
          const grants = await this.#events.claim(this, message.tunnels);
          for (const tunnels of frameBatches(grants)) this.send({ type: "claimed", tunnels });
        }).catch((e) => {
          this.#log.error("Cannot judge claims", { error: describeError(e) });
          this.close();
        });
        return;
      }
      this.#control.close("unexpected frame", {
        type: "error",
        code: "bad-request",
        message: `Unexpected ${message.type} frame on control connection`,
      });
    });
    this.close();
    await this.#claims;
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
