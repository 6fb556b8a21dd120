// A plain relay between two Deno.Conn with the relay's buffers: the baseline
// `deno task bench:relay` holds the stream relay to. Only benchmarks use it.

import { GrowingBuffer } from "../lib/growing_buffer.ts";
import { closeQuietly, writeAll } from "../lib/io.ts";

/** A read already started on a connection; the relay takes its bytes first. */
export interface PendingRead {
  /** The buffer the read fills. */
  buffer: Uint8Array;
  /** The read itself: bytes read, or null at end of stream. */
  result: Promise<number | null>;
}

/** Bytes moved by a finished relay, and the error that ended it, if any. */
export interface RelayResult {
  /** Bytes copied from the first connection to the second. */
  aToB: number;
  /** Bytes copied from the second connection to the first. */
  bToA: number;
  /** The first error in either direction; undefined when both ended cleanly. */
  error: unknown;
}

/**
 * Copies `src` to `dst` until `src` ends, then half-closes `dst` so the peer
 * sees the end while the other direction goes on. Counts the bytes copied in `count`.
 */
async function pump(
  src: Deno.Conn,
  dst: Deno.Conn,
  count: { bytes: number },
  pending?: PendingRead,
): Promise<void> {
  if (pending) {
    const n = await pending.result;
    if (n === null) return finish(dst);
    await writeAll(dst, pending.buffer.subarray(0, n));
    count.bytes += n;
  }
  const reads = new GrowingBuffer();
  try {
    for (;;) {
      const buffer = reads.buffer;
      const n = await src.read(buffer);
      if (n === null) break;
      await writeAll(dst, buffer.subarray(0, n));
      count.bytes += n;
      reads.filled(n);
    }
  } finally {
    reads.release();
  }
  return finish(dst);
}

async function finish(dst: Deno.Conn): Promise<void> {
  try {
    await dst.closeWrite();
  } catch {
    // The peer is gone already; the other direction sees it and ends the relay.
  }
}

/**
 * Relays between `a` and `b` until both directions end, then closes both.
 * The relay owns both connections from the call on: when either direction
 * fails, both are closed at once (exactly once), which ends the other one.
 * `pendingB` is a read already under way on `b` whose bytes go to `a` first.
 */
export async function relay(
  a: Deno.Conn,
  b: Deno.Conn,
  options: { pendingB?: PendingRead } = {},
): Promise<RelayResult> {
  let closed = false;
  let error: unknown;
  const closeBoth = (): void => {
    if (closed) return;
    closed = true;
    closeQuietly(a);
    closeQuietly(b);
  };
  const fail = (e: unknown): void => {
    if (!closed) error = e;
    closeBoth();
  };
  const aToB = { bytes: 0 };
  const bToA = { bytes: 0 };
  await Promise.all([
    pump(a, b, aToB).catch(fail),
    pump(b, a, bToA, options.pendingB).catch(fail),
  ]);
  closeBoth();
  return { aToB: aToB.bytes, bToA: bToA.bytes, error };
}
