// What a tunnel (or the whole server) relayed: bytes each way, streams, and
// streams a second over the last minute.

import { RATE_WINDOW_S } from "../limits.ts";

/**
 * Events in the last `RATE_WINDOW_S` seconds, in one-second slots (allocated
 * on the first event, so an idle tunnel costs nothing).
 */
export class MinuteRate {
  #counts: Uint32Array | undefined;
  #seconds: Float64Array | undefined;

  /** Counts one event at `now` (ms since the epoch). */
  add(now: number = Date.now()): void {
    const second = Math.floor(now / 1000);
    const at = second % RATE_WINDOW_S;
    this.#counts ??= new Uint32Array(RATE_WINDOW_S);
    this.#seconds ??= new Float64Array(RATE_WINDOW_S).fill(-1);
    if (this.#seconds[at] !== second) {
      this.#seconds[at] = second;
      this.#counts[at] = 0;
    }
    this.#counts[at]!++;
  }

  /** Events in the last window, up to and including the second of `now`. */
  count(now: number = Date.now()): number {
    if (!this.#counts || !this.#seconds) return 0;
    const second = Math.floor(now / 1000);
    let total = 0;
    for (let i = 0; i < RATE_WINDOW_S; i++) {
      const age = second - this.#seconds[i]!;
      if (age >= 0 && age < RATE_WINDOW_S) total += this.#counts[i]!;
    }
    return total;
  }

  /** Events a second over the last window: its count divided by its length. */
  perSecond(now: number = Date.now()): number {
    return this.count(now) / RATE_WINDOW_S;
  }
}

/** Counts of one tunnel's relayed streams, kept by its session. */
export class TunnelStats {
  /** Bytes from visitors relayed to the tunnel. */
  bytesIn = 0;
  /** Bytes from the tunnel relayed to visitors. */
  bytesOut = 0;
  /** Streams relayed (started) so far. */
  streams = 0;
  /** Streams started over the last minute. */
  readonly rate: MinuteRate = new MinuteRate();

  /** A stream starts relaying. */
  started(now?: number): void {
    this.streams++;
    this.rate.add(now);
  }

  /** A stream ended, having relayed these bytes each way. */
  ended(bytesIn: number, bytesOut: number): void {
    this.bytesIn += bytesIn;
    this.bytesOut += bytesOut;
  }
}
