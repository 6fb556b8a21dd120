// Copies of small byte runs packed into shared slabs: the inspector keeps a copy of
// every head and body chunk it sees, and one ArrayBuffer per copy (each a malloc and
// an object for V8's ArrayBuffer sweeper) made capture cost the client a fifth of
// its keep-alive rate. The app pool keeps requests it may send again the same way.
// A slab lives while any copy in it is kept.

import { ARENA_SLAB_BYTES } from "./limits.ts";

/**
 * A bump allocator of byte copies: runs up to half a slab are copied
 * into the current slab (a new one when it is full), larger ones get their own
 * buffer.
 *
 * @example
 * ```ts
 * import { ByteArena } from "./arena.ts";
 * const arena = new ByteArena();
 * const a = arena.copy(new Uint8Array([1, 2]));
 * const b = arena.copy(new Uint8Array([3]));
 * console.log(a.buffer === b.buffer); // true: one slab
 * ```
 */
export class ByteArena {
  #slabBytes: number;
  #slab: Uint8Array | undefined;
  #at = 0;

  /** An arena of `slabBytes` slabs; none is allocated before the first copy. */
  constructor(slabBytes = ARENA_SLAB_BYTES) {
    this.#slabBytes = slabBytes;
  }

  /** A copy of `bytes` that stays valid after `bytes` is reused. */
  copy(bytes: Uint8Array): Uint8Array {
    const n = bytes.length;
    if (n > this.#slabBytes / 2) return bytes.slice();
    if (!this.#slab || this.#at + n > this.#slab.length) {
      this.#slab = new Uint8Array(this.#slabBytes);
      this.#at = 0;
    }
    const view = this.#slab.subarray(this.#at, this.#at + n);
    view.set(bytes);
    this.#at += n;
    return view;
  }
}
