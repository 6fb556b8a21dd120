// A plain relay between two byte streams, with half-close: the baseline
// `deno task bench:relay` holds the stream relay (lib/relay.ts) to. (Server
// nodes piped forwarded visitors with it until node connections carried stream
// frames and were reused.)

import { GrowingBuffer } from "../lib/growing_buffer.ts";
import { closeQuietly, type Duplex, writeAll } from "../lib/io.ts";

/** Bytes moved by a finished pipe, and the error that ended it, if any. */
export interface PipeResult {
  /** Bytes copied from the first stream to the second. */
  aToB: number;
  /** Bytes copied from the second stream to the first. */
  bToA: number;
  /** The first error in either direction (an idle timeout too); undefined when both ended cleanly. */
  error: unknown;
}

/** How a pipe runs. */
export interface PipeOptions {
  /** Both streams are closed after this long with no byte either way (0: never). @default {0} */
  idleTimeoutMs?: number;
}

/**
 * Copies `src` to `dst` until `src` ends, then half-closes `dst` so that its
 * peer sees the end while the other direction goes on.
 */
async function pump(
  src: Duplex,
  dst: Duplex,
  count: { bytes: number; at: number },
): Promise<void> {
  const reads = new GrowingBuffer();
  try {
    for (;;) {
      const buffer = reads.buffer;
      const n = await src.read(buffer);
      if (n === null) break;
      count.at = Date.now();
      await writeAll(dst, buffer.subarray(0, n));
      count.bytes += n;
      reads.filled(n);
    }
  } finally {
    reads.release();
  }
  try {
    await dst.closeWrite();
  } catch {
    // The peer is gone already; the other direction sees it and ends the pipe.
  }
}

/**
 * Relays between `a` and `b` until both directions end, then closes both.
 * The pipe owns both streams from the call on: when either direction fails
 * (or nothing moved for `idleTimeoutMs`), both are closed at once, exactly
 * once, which ends the other direction.
 *
 * @example Join two loopback connections
 * ```ts ignore
 * import { pipe } from "./pipe.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [a, b] = await Promise.all([listener.accept(), Deno.connect(listener.addr)]);
 * const result = await pipe(a, b, { idleTimeoutMs: 60_000 });
 * console.log(result.aToB, result.bToA);
 * ```
 */
export async function pipe(a: Duplex, b: Duplex, options: PipeOptions = {}): Promise<PipeResult> {
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
  const aToB = { bytes: 0, at: Date.now() };
  const bToA = { bytes: 0, at: Date.now() };
  const idleMs = options.idleTimeoutMs ?? 0;
  const timer = idleMs > 0
    ? setInterval(() => {
      if (Date.now() - Math.max(aToB.at, bToA.at) < idleMs) return;
      fail(new Deno.errors.TimedOut(`No byte either way for ${idleMs} ms`));
    }, Math.max(1, Math.round(idleMs / 4)))
    : undefined;
  try {
    await Promise.all([pump(a, b, aToB).catch(fail), pump(b, a, bToA).catch(fail)]);
  } finally {
    clearInterval(timer);
  }
  closeBoth();
  return { aToB: aToB.bytes, bToA: bToA.bytes, error };
}
