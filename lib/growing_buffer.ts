// Read buffers for relays: small while a flow is small, then two medium ones in
// turn, then two large ones for bulk flows, all from free lists shared by every
// connection. How many medium and large buffers exist at once is capped, so
// memory follows the number of bulk flows only up to a bound.

import {
  RELAY_BUFFER_LARGE_BYTES,
  RELAY_BUFFER_MEDIUM_BYTES,
  RELAY_BUFFER_SMALL_BYTES,
  RELAY_LARGE_BUFFERS_MAX,
  RELAY_MEDIUM_BUFFERS_MAX,
} from "./limits.ts";

/** A read buffer that may be swapped for a larger one after reads that fill it. */
export interface ReadBuffer {
  /** The buffer for the next read. */
  readonly buffer: Uint8Array;
  /** Reports how many bytes the last read into `buffer` returned. */
  filled(bytes: number): void;
  /** Whether `filled()` moves to another buffer, so a write may still use the last one. */
  readonly large: boolean;
}

/** Full reads in a row that move a direction up from each tier (small, medium). */
const FULL_READS_TO_GROW = [2, 8] as const;

/** One size of buffer: its free list, and how many are in use now and at most lately. */
interface Tier {
  readonly bytes: number;
  /** Buffers of this size that may exist at once (in use); Infinity for small ones. */
  readonly max: number;
  readonly free: Uint8Array[];
  live: number;
  peak: number;
}

const tiers: readonly Tier[] = [
  { bytes: RELAY_BUFFER_SMALL_BYTES, max: Infinity, free: [], live: 0, peak: 0 },
  { bytes: RELAY_BUFFER_MEDIUM_BYTES, max: RELAY_MEDIUM_BUFFERS_MAX, free: [], live: 0, peak: 0 },
  { bytes: RELAY_BUFFER_LARGE_BYTES, max: RELAY_LARGE_BUFFERS_MAX, free: [], live: 0, peak: 0 },
];

function take(tier: Tier): Uint8Array {
  if (++tier.live > tier.peak) tier.peak = tier.live;
  return tier.free.pop() ?? new Uint8Array(tier.bytes);
}

function give(tier: Tier, buffer: Uint8Array): void {
  tier.live--;
  tier.free.push(buffer);
}

/**
 * Drops free buffers beyond what the concurrency seen since the last call
 * could need again (the peak in use then, minus those in use now), so that
 * after a load ends two calls in a row give everything back; returns the
 * bytes dropped (freed once the collector runs).
 *
 * @example
 * ```ts
 * import { trimFreeBuffers } from "./growing_buffer.ts";
 * trimFreeBuffers(); // keeps what the last period's peak could need
 * console.log(trimFreeBuffers()); // 0: nothing was in use since
 * ```
 */
export function trimFreeBuffers(): number {
  let dropped = 0;
  for (const tier of tiers) {
    const keep = Math.max(0, tier.peak - tier.live);
    if (tier.free.length > keep) {
      dropped += (tier.free.length - keep) * tier.bytes;
      tier.free.length = keep;
    }
    tier.peak = tier.live;
  }
  return dropped;
}

/**
 * Relay buffers in use and free, by size in bytes (for memory reports and tests).
 *
 * @example
 * ```ts
 * import { bufferCounts } from "./growing_buffer.ts";
 * for (const { bytes, live, free } of bufferCounts()) console.log(bytes, live, free);
 * ```
 */
export function bufferCounts(): { bytes: number; live: number; free: number }[] {
  return tiers.map(({ bytes, live, free }) => ({ bytes, live, free: free.length }));
}

/**
 * Read buffers from shared free lists for one direction of a relay: one small
 * buffer at first; after reads in a row that fill it, two medium ones used in
 * turn, then two large ones (while their caps allow), so the next read can go
 * on while the last write is still in flight. The caller awaits a write before
 * it reads into that buffer again (at most one write in flight) and before
 * `release()`.
 *
 * @example
 * ```ts
 * import { GrowingBuffer } from "./growing_buffer.ts";
 * const reads = new GrowingBuffer();
 * reads.filled(reads.buffer.length);
 * reads.filled(reads.buffer.length); // two full reads: a flow worth two larger buffers
 * console.log(reads.large, reads.buffer.length); // true 65536
 * reads.release();
 * ```
 */
export class GrowingBuffer implements ReadBuffer {
  #level = 0;
  #buffers: Uint8Array[] = [take(tiers[0]!)];
  #index = 0;
  #offset: number;
  #view: Uint8Array;
  #fullReads = 0;
  #onRead: (() => void) | undefined;

  /**
   * A buffer whose reads land after `offset` reserved bytes (room for a frame
   * header); `onRead` is called for each read reported to `filled()`.
   */
  constructor(offset = 0, onRead?: () => void) {
    this.#offset = offset;
    this.#onRead = onRead;
    this.#view = this.#viewOf(this.#buffers[0]!);
  }

  /** The buffer the next read goes to, reserved bytes included. */
  get whole(): Uint8Array {
    return this.#buffers[this.#index]!;
  }

  /** Where the next read goes. */
  get buffer(): Uint8Array {
    return this.#view;
  }

  /** Whether two buffers are used in turn (a flow past its first reads). */
  get large(): boolean {
    return this.#buffers.length === 2;
  }

  /** Reports a read into `buffer`; moves to the next buffer, growing after full reads. */
  filled(bytes: number): void {
    this.#onRead?.();
    const full = bytes === this.#view.length;
    this.#fullReads = full ? this.#fullReads + 1 : 0;
    const next = tiers[this.#level + 1];
    if (next && this.#fullReads >= FULL_READS_TO_GROW[this.#level]! && next.live + 2 <= next.max) {
      // The buffer just read into may still be in a write: the old ones are left to the
      // collector rather than reused while a write could still read them.
      tiers[this.#level]!.live -= this.#buffers.length;
      this.#level++;
      this.#buffers = [take(next), take(next)];
      this.#index = 0;
      this.#fullReads = 0;
    } else if (this.large) this.#index ^= 1;
    this.#view = this.#viewOf(this.#buffers[this.#index]!);
  }

  /** Returns the buffers to the free lists; the object must not be used afterwards. */
  release(): void {
    const tier = tiers[this.#level]!;
    for (const buffer of this.#buffers) give(tier, buffer);
    this.#buffers = [];
  }

  #viewOf(buffer: Uint8Array): Uint8Array {
    return this.#offset === 0 ? buffer : buffer.subarray(this.#offset);
  }
}
