// One registered tunnel on the server: its control channel and its pool of idle proxy connections.

import { ControlChannel, type HeartbeatTiming } from "../control.ts";
import { closeQuietly } from "../io.ts";
import type { Logger } from "../log.ts";
import {
  type ClientMessage,
  decodeClientFrame,
  MAX_DEMAND,
  MAX_IDLE_PROXIES,
  type ServerMessage,
} from "../protocol.ts";
import type { PendingRead } from "../relay.ts";
import type { ByteReader } from "../io.ts";

/** Bytes an idle proxy connection's watch read may take: the start of a response. */
const IDLE_READ_BYTES = 4096;

/** An idle proxy connection, with the read that watches it for a close. */
export interface IdleProxy {
  /** The connection, opened by the client and upgraded. */
  conn: Deno.Conn;
  /** The watch read; its bytes are the first the client sends back. */
  pending: PendingRead;
}

interface Waiter {
  resolve(proxy: IdleProxy | undefined): void;
  timer: ReturnType<typeof setTimeout>;
}

/** A tunnel: the client's control channel, its subdomain and its idle proxies. */
export class Session {
  /** Opaque id the client names in `attach`. */
  readonly id: string;
  /** Secret the client proves in `attach`. */
  readonly secret: string;
  /** The subdomain this session holds. */
  readonly subdomain: string;
  #control: ControlChannel<ClientMessage, ServerMessage>;
  #idle: IdleProxy[] = [];
  #waiters: Waiter[] = [];
  #demand = 0;
  #log: Logger;
  #closed = false;

  /** Creates a session over an upgraded control connection. */
  constructor(
    init: { id: string; secret: string; subdomain: string; log: Logger },
    conn: Deno.Conn,
    reader: ByteReader,
    timing?: HeartbeatTiming,
  ) {
    this.id = init.id;
    this.secret = init.secret;
    this.subdomain = init.subdomain;
    this.#log = init.log;
    this.#control = new ControlChannel(conn, reader, decodeClientFrame, init.log, timing);
  }

  /** Number of idle proxy connections held now. */
  get idleCount(): number {
    return this.#idle.length;
  }

  /** Sends a message on the control channel. */
  send(message: ServerMessage): void {
    this.#control.send(message);
  }

  /** Serves the control channel until it ends, then closes everything the session holds. */
  async run(): Promise<string> {
    const reason = await this.#control.run((message) => {
      if (message.type === "bye") {
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

  /**
   * Adds an upgraded proxy connection: hands it to the oldest waiting public
   * connection, or keeps it idle. Returns false when the pool is full.
   */
  addProxy(conn: Deno.Conn): boolean {
    if (this.#closed || this.#idle.length >= MAX_IDLE_PROXIES) return false;
    const buffer = new Uint8Array(IDLE_READ_BYTES);
    const proxy: IdleProxy = { conn, pending: { buffer, result: conn.read(buffer) } };
    // Whoever takes the proxy awaits the read; this keeps an unawaited failure from
    // becoming an unhandled rejection when the connection is closed before that.
    proxy.pending.result.catch(() => {});
    const waiter = this.#waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(proxy);
      return true;
    }
    this.#idle.push(proxy);
    // While idle, any outcome of the watch read (EOF, error, stray bytes) retires the connection.
    proxy.pending.result.then(() => this.#retire(proxy), () => this.#retire(proxy));
    return true;
  }

  /**
   * Takes an idle proxy connection for a public connection, waiting up to
   * `timeoutMs` for one; undefined on timeout or when the session ends.
   * Each call asks the client for one more proxy connection, so the client
   * replaces every connection used and a burst gets one per waiting visitor.
   */
  takeProxy(timeoutMs: number): Promise<IdleProxy | undefined> {
    if (this.#closed) return Promise.resolve(undefined);
    this.#requestProxy();
    const proxy = this.#idle.pop();
    if (proxy) return Promise.resolve(proxy);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        resolve,
        timer: setTimeout(() => {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          resolve(undefined);
        }, timeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  /** Closes the control channel and idle proxies; waiting public connections get nothing. */
  close(last?: ServerMessage): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#control.close("session closed", last);
    for (const proxy of this.#idle.splice(0)) closeQuietly(proxy.conn);
    for (const waiter of this.#waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.resolve(undefined);
    }
  }

  #retire(proxy: IdleProxy): void {
    const at = this.#idle.indexOf(proxy);
    if (at < 0) return; // taken by a public connection: the relay owns the read now
    this.#idle.splice(at, 1);
    closeQuietly(proxy.conn);
    this.#log.debug("Idle proxy connection ended", { subdomain: this.subdomain });
  }

  // Demands made in one turn of the event loop go out as one frame.
  #requestProxy(): void {
    if (this.#demand++ > 0) return;
    queueMicrotask(() => {
      const count = Math.min(this.#demand, MAX_DEMAND);
      this.#demand = 0;
      this.send({ type: "demand", count });
    });
  }
}
