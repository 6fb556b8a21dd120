// Keep-alive connections to the local app, reused across visitors by the
// HTTP-aware client (as a reverse proxy keeps upstream connections): a
// visitor's `Connection: close` request no longer costs a connect, a shutdown
// and a close on the client and an accept on the app.

import { ByteArena } from "../arena.ts";
import { closeQuietly, type Duplex } from "../io.ts";
import { APP_POOL_IDLE_MS, APP_POOL_MAX_IDLE, APP_REPLAY_MAX_BYTES } from "../limits.ts";
import type { LocalDialer } from "./local_dialer.ts";

/** An idle app connection and the read that watches it for a close. */
interface Idle {
  conn: Duplex;
  /** Bytes read by the watch (a close, or bytes the app should not have sent). */
  watch: Promise<number | null>;
  buffer: Uint8Array;
  since: number;
}

/** A connection taken from the pool: its watch read, still under way, comes first. */
export interface Taken {
  /** The connection. */
  conn: Duplex;
  /** Whether it served another visitor before (its app may have closed it meanwhile). */
  reused: boolean;
  /** The watch read under way on a reused connection, and its buffer. */
  pending?: { result: Promise<number | null>; buffer: Uint8Array } | undefined;
}

/**
 * Idle connections to the local app, kept at most APP_POOL_IDLE_MS (below the
 * idle timeouts of common app servers, so that the app rarely closes one we
 * are about to use) and APP_POOL_MAX_IDLE of them. Each idle one has a read
 * under way: the app closing it (or sending anything) takes it out.
 */
export class AppPool {
  #dialer: LocalDialer;
  #idle: Idle[] = [];
  #sweep: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #arena = new ByteArena();

  /** A pool in front of `dialer`'s plain (not end-to-end TLS) connections. */
  constructor(dialer: LocalDialer) {
    this.#dialer = dialer;
  }

  /** Idle connections now. */
  get size(): number {
    return this.#idle.length;
  }

  /** The newest idle connection that is still fresh, or a new one. */
  async take(signal: AbortSignal): Promise<Taken> {
    const now = Date.now();
    for (let entry = this.#idle.pop(); entry; entry = this.#idle.pop()) {
      if (now - entry.since < APP_POOL_IDLE_MS) {
        return {
          conn: entry.conn,
          reused: true,
          pending: { result: entry.watch, buffer: entry.buffer },
        };
      }
      closeQuietly(entry.conn);
    }
    return { conn: await this.#dialer.dial(false, signal), reused: false };
  }

  /** A copy of request bytes a link keeps to send again (packed with others). */
  copy(bytes: Uint8Array): Uint8Array {
    return this.#arena.copy(bytes);
  }

  /** A fresh connection, for a request sent again after a reused one failed. */
  dial(signal: AbortSignal): Promise<Duplex> {
    return this.#dialer.dial(false, signal);
  }

  /** Keeps `conn` for the next visitor (closes it when the pool is full or closed). */
  give(conn: Duplex): void {
    if (this.#closed || this.#idle.length >= APP_POOL_MAX_IDLE) return closeQuietly(conn);
    const buffer = new Uint8Array(APP_WATCH_BYTES);
    const entry: Idle = { conn, buffer, since: Date.now(), watch: conn.read(buffer) };
    // Anything the watch sees while idle (a close, stray bytes, an error) retires it.
    entry.watch.then(
      () => this.#retire(entry),
      () => this.#retire(entry),
    );
    this.#idle.push(entry);
    this.#sweep ??= setInterval(() => this.#expire(), APP_POOL_IDLE_MS);
  }

  /** Closes every idle connection; what is given afterwards is closed at once. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#sweep);
    for (const entry of this.#idle.splice(0)) closeQuietly(entry.conn);
  }

  #retire(entry: Idle): void {
    const at = this.#idle.indexOf(entry);
    if (at < 0) return; // taken: the visitor's link reads what the watch brought
    this.#idle.splice(at, 1);
    closeQuietly(entry.conn);
  }

  #expire(): void {
    const now = Date.now();
    for (const entry of [...this.#idle]) {
      if (now - entry.since >= APP_POOL_IDLE_MS) this.#retire(entry);
    }
    if (this.#idle.length === 0) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }
}

/** The watch read's buffer: it only holds what an app sends on an idle connection. */
const APP_WATCH_BYTES = 512;

/** What a link asks of the HTTP stream it serves. */
export interface LinkState {
  /** Every request forwarded has its whole answer, and none is half forwarded. */
  readonly settled: boolean;
  /** Nothing so far rules out another request on this connection. */
  readonly reusable: boolean;
  /** The visitor asked its connection to end after the answer. */
  readonly visitorClosing: boolean;
  /** The one request in flight may be sent again (safe method, whole, no answer yet). */
  readonly replayable: boolean;
  /** The visitor's last answer is complete and the connection could carry another (latched). */
  readonly done: boolean;
}

/**
 * A visitor stream's connection to the app, taken from an {@linkcode AppPool}:
 * the relay drives it as it would the app's socket. Once the visitor asked to
 * close and its answer is complete, reads end (the relay ends the stream) and
 * the connection goes back to the pool. A reused connection that fails before
 * any answer to a request that may be sent again is replaced by a new one, and
 * the request is sent again.
 */
export class AppLink implements Duplex {
  #pool: AppPool;
  #signal: AbortSignal;
  #state: LinkState | undefined;
  #taken: Taken;
  #keep = true; // false once the connection must not go back to the pool
  #replay: Uint8Array[] | undefined; // what went out on a reused connection, to send again
  #replayBytes = 0;
  #answered = false; // a byte came from the app on this link

  private constructor(pool: AppPool, taken: Taken, signal: AbortSignal) {
    this.#pool = pool;
    this.#taken = taken;
    this.#signal = signal;
    if (taken.reused) this.#replay = [];
  }

  /** A link over a pooled or new connection; rejects as a dial does. */
  static async open(pool: AppPool, signal: AbortSignal): Promise<AppLink> {
    return new AppLink(pool, await pool.take(signal), signal);
  }

  /** Tells the link what the stream's exchanges are (set once, before the relay starts). */
  watch(state: LinkState): void {
    this.#state = state;
  }

  /** Reads the app's answer; ends (null) once the visitor's last answer is complete. */
  async read(p: Uint8Array): Promise<number | null> {
    if (this.#state?.done) return null; // the relay usually ends first (its adapter is `done`)
    let n: number | null;
    try {
      n = await this.#readConn(p);
    } catch (e) {
      if (await this.#again()) return this.read(p);
      throw e;
    }
    if (n === null && this.#taken.reused && !this.#answered) {
      if (await this.#again()) return this.read(p);
      // Not sent again (not safe to repeat): the visitor is told, not left with an empty close.
      throw new Deno.errors.ConnectionReset(
        "the app closed a kept-alive connection before answering",
      );
    }
    if (n !== null) {
      this.#answered = true;
      this.#replay = undefined; // answered: nothing is ever sent again
    }
    return n;
  }

  async #readConn(p: Uint8Array): Promise<number | null> {
    const pending = this.#taken.pending;
    if (!pending) return await this.#taken.conn.read(p);
    this.#taken.pending = undefined;
    const n = await pending.result;
    if (n === null || n === 0) return n;
    const take = Math.min(n, p.length);
    p.set(pending.buffer.subarray(0, take));
    if (take < n) {
      this.#taken.pending = {
        result: Promise.resolve(n - take),
        buffer: pending.buffer.subarray(take),
      };
    }
    return take;
  }

  // A reused connection failed before any answer (its app closed it while idle):
  // if the request may be sent again, it goes out on a new connection.
  async #again(): Promise<boolean> {
    const replay = this.#replay;
    if (!replay || !this.#state?.replayable || this.#signal.aborted) return false;
    this.#replay = undefined;
    closeQuietly(this.#taken.conn);
    this.#taken = { conn: await this.#pool.dial(this.#signal), reused: false };
    for (const bytes of replay) {
      for (let at = 0; at < bytes.length;) at += await this.#taken.conn.write(bytes.subarray(at));
    }
    return true;
  }

  /** Writes a request's bytes (kept, on a reused connection, until an answer comes). */
  async write(p: Uint8Array): Promise<number> {
    if (this.#state?.done) this.#keep = false; // more after the last answer: not reused
    const replay = this.#replay;
    if (replay) {
      if (this.#replayBytes + p.length > APP_REPLAY_MAX_BYTES) this.#replay = undefined;
      else {
        replay.push(this.#pool.copy(p));
        this.#replayBytes += p.length;
      }
    }
    try {
      return await this.#taken.conn.write(p);
    } catch (e) {
      // The app closed a reused connection: the read sees it, and sends the request again.
      if (this.#replay) return p.length;
      throw e;
    }
  }

  /** The visitor is done sending: a connection going back to the pool stays open. */
  async closeWrite(): Promise<void> {
    if (this.#state?.done) return;
    this.#keep = false;
    await this.#taken.conn.closeWrite();
  }

  /**
   * The stream is over: the connection goes back to the pool if the visitor's
   * last answer is complete and nothing was sent after it (a pipelined request
   * would be pending), else it closes.
   */
  close(): void {
    if (this.#keep && this.#state?.done && !this.#taken.pending) this.#pool.give(this.#taken.conn);
    else closeQuietly(this.#taken.conn);
  }
}
