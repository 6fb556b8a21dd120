// A tunnel's idle proxy connections on the server: pooled for visitors, pinged
// while idle (one that does not answer is dead), handed to waiting visitors, and
// asked for (`demand`) when a visitor finds none.

import type { ProxyChannel } from "../channel.ts";
import { closeQuietly } from "../io.ts";
import type { Logger } from "../log.ts";
import { MAX_DEMAND } from "../protocol.ts";

interface Waiter {
  resolve(proxy: ProxyChannel | undefined): void;
  timer: ReturnType<typeof setTimeout>;
}

/** What a pool needs from its session. */
export interface IdlePoolOptions {
  /** Idle connections held at most (0: no limit). */
  maxIdle: number;
  /** Interval between pings on idle connections. */
  pingIntervalMs: number;
  /** Asks the client for `count` more connections. */
  demand(count: number): void;
  /** Where logs go. */
  log: Logger;
  /** The tunnel's name, for logs. */
  name: string;
}

/** One tunnel's idle proxy connections and the visitors waiting for one. */
export class IdlePool {
  #options: IdlePoolOptions;
  #idle: ProxyChannel[] = [];
  #waiters: Waiter[] = [];
  #demand = 0;
  #pinging: ReturnType<typeof setInterval>;
  #log: Logger;

  /** An empty pool; its ping timer runs until `close()`. */
  constructor(options: IdlePoolOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#pinging = setInterval(() => this.#pingIdle(), options.pingIntervalMs);
  }

  /** Idle connections now. */
  get size(): number {
    return this.#idle.length;
  }

  /**
   * Adds a proxy connection, new or back from a finished stream: hands it to
   * the oldest waiting visitor, or keeps it idle. False when the session has
   * ended or the pool is full; the caller then closes it.
   */
  add(proxy: ProxyChannel): boolean {
    const waiter = this.#waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(proxy);
      return true;
    }
    const max = this.#options.maxIdle;
    if (max > 0 && this.#idle.length >= max) return false;
    this.#idle.push(proxy);
    this.#watchIdle(proxy);
    return true;
  }

  // While idle, answers to our pings keep a connection; anything else its watch
  // read sees (end of stream, an error, stray bytes) retires it.
  #watchIdle(proxy: ProxyChannel): void {
    proxy.watch().then(async () => {
      if (!this.#idle.includes(proxy)) return; // taken: the stream owns the read's bytes
      if (await proxy.takePongs()) {
        const at = this.#idle.indexOf(proxy);
        if (at < 0) return;
        const waiter = this.#waiters.shift(); // it answered: alive, and someone waits for one
        if (waiter) {
          this.#idle.splice(at, 1);
          clearTimeout(waiter.timer);
          waiter.resolve(proxy);
        } else this.#watchIdle(proxy);
      } else this.#retire(proxy);
    });
  }

  /**
   * A connection of this tunnel failed to accept a stream: ask the client for a
   * fresh one, and ping the idle ones now rather than at the next interval.
   */
  suspect(): void {
    this.#requestProxy();
    for (const proxy of this.#idle) if (!proxy.pingOutstanding) proxy.ping();
  }

  // Every proxyPingIntervalMs: an idle connection that did not answer the last
  // ping is dead (a NAT or firewall dropped it silently); the others get a ping.
  #pingIdle(): void {
    for (const proxy of [...this.#idle]) {
      if (proxy.pingOutstanding) {
        this.#log.debug("Idle proxy connection did not answer a ping", {
          subdomain: this.#options.name,
        });
        this.#retire(proxy);
      } else proxy.ping();
    }
  }

  /**
   * Takes an idle proxy connection for a public connection, waiting up to
   * `timeoutMs` for one; undefined on timeout, when `signal` aborts, or when the session ends. The
   * client keeps its pool topped up by itself; a visitor that has to wait asks
   * it for one more connection, so a burst gets one per waiting visitor.
   */
  take(timeoutMs: number, signal?: AbortSignal): Promise<ProxyChannel | undefined> {
    if (signal?.aborted) return Promise.resolve(undefined);
    // Newest first; one with a ping unanswered may be dead: it waits for its answer.
    const at = this.#idle.findLastIndex((proxy) => !proxy.pingOutstanding);
    if (at >= 0) return Promise.resolve(this.#idle.splice(at, 1)[0]);
    this.#requestProxy();
    return new Promise((resolve) => {
      const give = (proxy: ProxyChannel | undefined): void => {
        signal?.removeEventListener("abort", cancel);
        resolve(proxy);
      };
      const cancel = (): void => {
        clearTimeout(waiter.timer);
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        give(undefined);
      };
      const waiter: Waiter = { resolve: give, timer: setTimeout(cancel, timeoutMs) };
      signal?.addEventListener("abort", cancel, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Closes the idle connections and stops the pings; waiting visitors get nothing. */
  close(): void {
    clearInterval(this.#pinging);
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
    this.#log.debug("Idle proxy connection ended", { subdomain: this.#options.name });
  }

  // Demands made in one turn of the event loop go out as one frame.
  #requestProxy(): void {
    if (this.#demand++ > 0) return;
    queueMicrotask(() => {
      const count = Math.min(this.#demand, MAX_DEMAND);
      this.#demand = 0;
      this.#options.demand(count);
    });
  }
}
