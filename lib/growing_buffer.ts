// Read buffers for relays: small while a flow is small, two large ones in turn
// once it is bulk, all from free lists shared by every connection.

/** A read buffer that may be swapped for a larger one after reads that fill it. */
export interface ReadBuffer {
  /** The buffer for the next read. */
  readonly buffer: Uint8Array;
  /** Reports how many bytes the last read into `buffer` returned. */
  filled(bytes: number): void;
  /** Whether `filled()` moves to another buffer, so a write may still use the last one. */
  readonly large: boolean;
}

/** A relay buffer starts at this size, which keeps idle connections cheap... */
export const RELAY_BUFFER_SMALL = 8 * 1024;
/** ...and grows to this size once reads keep filling it (a bulk flow). */
export const RELAY_BUFFER_LARGE = 256 * 1024;
/** Consecutive full reads that switch a direction to the large buffer. */
const FULL_READS_TO_GROW = 2;
/** Free buffers kept for reuse, per size. */
const MAX_FREE_SMALL = 1024;
const MAX_FREE_LARGE = 16;

const freeSmall: Uint8Array[] = [];
const freeLarge: Uint8Array[] = [];

/**
 * Read buffers from shared free lists for one direction of a relay: one small
 * buffer at first; after FULL_READS_TO_GROW reads in a row fill it, two large
 * ones used in turn, so the next read can go on while the last write is still
 * in flight. The caller awaits a write before it reads into that buffer again
 * (at most one write in flight) and before `release()`.
 */
export class GrowingBuffer implements ReadBuffer {
  #buffers: Uint8Array[] = [freeSmall.pop() ?? new Uint8Array(RELAY_BUFFER_SMALL)];
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

  /** Whether the large buffers are in use (a bulk flow). */
  get large(): boolean {
    return this.#buffers.length === 2;
  }

  /** Reports a read into `buffer`; moves to the next buffer, growing after full reads. */
  filled(bytes: number): void {
    this.#onRead?.();
    if (this.large) {
      this.#index ^= 1;
      this.#view = this.#viewOf(this.#buffers[this.#index]!);
      return;
    }
    this.#fullReads = bytes === this.#view.length ? this.#fullReads + 1 : 0;
    if (this.#fullReads < FULL_READS_TO_GROW) return;
    // The small buffer may still be in a write: leave it to the collector.
    this.#buffers = [takeLarge(), takeLarge()];
    this.#index = 0;
    this.#view = this.#viewOf(this.#buffers[0]!);
  }

  /** Returns the buffers to the free lists; the object must not be used afterwards. */
  release(): void {
    for (const buffer of this.#buffers) {
      const large = buffer.length === RELAY_BUFFER_LARGE;
      const free = large ? freeLarge : freeSmall;
      if (free.length < (large ? MAX_FREE_LARGE : MAX_FREE_SMALL)) free.push(buffer);
    }
    this.#buffers = [];
  }

  #viewOf(buffer: Uint8Array): Uint8Array {
    return this.#offset === 0 ? buffer : buffer.subarray(this.#offset);
  }
}

function takeLarge(): Uint8Array {
  return freeLarge.pop() ?? new Uint8Array(RELAY_BUFFER_LARGE);
}
