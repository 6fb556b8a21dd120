// One registered tunnel on the server: its control channel and its pool of idle proxy connections.

import { ControlChannel } from "../control.ts";
import { closeQuietly } from "../io.ts";
import type { Logger } from "../log.ts";
import {
  type ClientMessage,
  decodeClientFrame,
  MAX_DEMAND,
  type ServerLimits,
  type ServerMessage,
} from "../protocol.ts";
import type { ProxyChannel } from "../channel.ts";
import type { ByteReader } from "../io.ts";

interface Waiter {
  resolve(proxy: ProxyChannel | undefined): void;
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
  /** Public connections of this tunnel now waiting for or relaying a stream. */
  streams = 0;
  /** The nonce of the lease this session's client holds. */
  leaseNonce: string | undefined;
  #saidBye = false;
  #replaced = false;
  #control: ControlChannel<ClientMessage, ServerMessage>;
  #idle: ProxyChannel[] = [];
  #waiters: Waiter[] = [];
  #demand = 0;
  #log: Logger;
  #maxIdle: number;
  #closed = false;

  /** Creates a session over an upgraded control connection. */
  constructor(
    init: { id: string; secret: string; subdomain: string; log: Logger; limits: ServerLimits },
    conn: Deno.Conn,
    reader: ByteReader,
  ) {
    this.id = init.id;
    this.secret = init.secret;
    this.subdomain = init.subdomain;
    this.#log = init.log;
    this.#maxIdle = init.limits.maxIdleProxies;
    const { maxFrameBytes, heartbeatIntervalMs, peerTimeoutMs } = init.limits;
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

  /** Ends this session because its client came back on a new connection. */
  replace(): void {
    this.#replaced = true;
    this.close({
      type: "error",
      code: "replaced",
      message: "This tunnel was taken over by a new connection of its client",
    });
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

  /**
   * Adds a proxy connection, new or back from a finished stream: hands it to
   * the oldest waiting visitor, or keeps it idle. False when the session has
   * ended or the pool is full; the caller then closes it.
   */
  addProxy(proxy: ProxyChannel): boolean {
    if (this.#closed) return false;
    const waiter = this.#waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(proxy);
      return true;
    }
    if (this.#maxIdle > 0 && this.#idle.length >= this.#maxIdle) return false;
    this.#idle.push(proxy);
    // While idle, any outcome of the watch read (EOF, error, stray bytes) retires the connection.
    proxy.watch().then(() => this.#retire(proxy));
    return true;
  }

  /**
   * Takes an idle proxy connection for a public connection, waiting up to
   * `timeoutMs` for one; undefined on timeout or when the session ends. The
   * client keeps its pool topped up by itself; a visitor that has to wait asks
   * it for one more connection, so a burst gets one per waiting visitor.
   */
  takeProxy(timeoutMs: number): Promise<ProxyChannel | undefined> {
    if (this.#closed) return Promise.resolve(undefined);
    const proxy = this.#idle.pop();
    if (proxy) return Promise.resolve(proxy);
    this.#requestProxy();
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

  #retire(proxy: ProxyChannel): void {
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
