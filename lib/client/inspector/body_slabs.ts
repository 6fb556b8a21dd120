// Where the inspector keeps body bytes: slabs that are written in turn and used
// again once every piece in them is freed. Bodies pass at the relay's rate (a
// 64 KiB keep-alive load is near 1 GB/s) and are freed oldest first; fresh memory
// for each copy (one ArrayBuffer per chunk, or new slabs left to the collector)
// made V8 collect garbage a tenth of the client's time.

import { INSPECTOR_BODY_SLAB_BYTES, INSPECTOR_FREE_SLABS } from "../../limits.ts";

/** A slab and how many bytes in it are still kept. */
interface Slab {
  readonly bytes: Uint8Array;
  live: number;
}

/** Kept bytes: a view into a slab, valid until `release`. */
export interface Piece {
  readonly slab: Slab;
  readonly bytes: Uint8Array;
}

/**
 * Copies of body chunks packed into reusable slabs. A piece is valid until it
 * is released; read it only synchronously (copy it out before any await),
 * since its slab is written again once all of it is free.
 *
 * @example
 * ```ts
 * import { BodySlabs } from "./body_slabs.ts";
 * const slabs = new BodySlabs(1024);
 * const piece = slabs.copy(new Uint8Array([1, 2, 3]));
 * console.log([...piece.bytes]); // [1, 2, 3]
 * slabs.release(piece); // its slab may be written again
 * ```
 */
export class BodySlabs {
  #slabBytes: number;
  #current: Slab | undefined;
  #at = 0;
  #free: Slab[] = [];

  /** Slabs of `slabBytes` each (no chunk may be larger); none allocated before the first copy. */
  constructor(slabBytes = INSPECTOR_BODY_SLAB_BYTES) {
    this.#slabBytes = slabBytes;
  }

  /** A copy of `bytes` (at most one slab long). */
  copy(bytes: Uint8Array): Piece {
    const n = bytes.length;
    if (n > this.#slabBytes) throw new RangeError(`A ${n}-byte piece does not fit a slab`);
    let slab = this.#current;
    if (!slab || this.#at + n > slab.bytes.length) {
      if (slab && slab.live === 0) this.#recycle(slab);
      slab = this.#current = this.#free.pop() ??
        { bytes: new Uint8Array(this.#slabBytes), live: 0 };
      this.#at = 0;
    }
    const view = slab.bytes.subarray(this.#at, this.#at + n);
    view.set(bytes);
    this.#at += n;
    slab.live += n;
    return { slab, bytes: view };
  }

  /** Frees `piece`: its slab is used again once none of it is kept. */
  release(piece: Piece): void {
    const slab = piece.slab;
    slab.live -= piece.bytes.length;
    if (slab.live === 0 && slab !== this.#current) this.#recycle(slab);
  }

  #recycle(slab: Slab): void {
    if (this.#free.length < INSPECTOR_FREE_SLABS) this.#free.push(slab);
  }
}
