// Moves bytes both ways between two connections: back-pressure, half-close, one close.

import type { ProxyChannel, ReadBuffer, StreamEnd, Writer } from "./channel.ts";
import { closeQuietly, writeAll } from "./io.ts";
import { concatBytes, FRAME_HEADER_BYTES, LINGER_MS } from "./protocol.ts";

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

/** What a stream over a proxy channel did. */
export interface StreamResult {
  /** Bytes read from the raw connection and sent as DATA. */
  sent: number;
  /** DATA bytes received and written to the raw connection. */
  received: number;
  /** Whether the channel is in step and may carry the next stream. */
  reusable: boolean;
  /** What broke the channel, if it broke. */
  error: unknown;
}

/** A byte stream the stream relay can drive: a `Deno.Conn`, or anything shaped like one. */
export interface Duplex extends Writer {
  /** Reads into `p`; resolves with the count, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Ends the writing direction (half-close). */
  closeWrite(): Promise<void>;
  /** Closes both directions. */
  close(): void;
}

/** Optional parts of {@linkcode relayStream}. */
export interface StreamOptions {
  /** Abort a stream with no read either way for this long; 0 never. @default {0} */
  idleTimeoutMs?: number;
  /** Where inbound bytes go instead of `raw` itself (a request rewriter in front of it). */
  inboundSink?: Writer;
  /**
   * When `raw` fails before it sent anything, an answer to send instead of an
   * ABORT (a refusal the rewriter made).
   */
  lastWord?: () => Uint8Array | undefined;
  /** Sees each chunk read from `raw`, before it is sent (a response watcher). */
  onOutbound?: (bytes: Uint8Array) => void;
  /** Called once `raw` has nothing more to send (end of stream or error). */
  onOutboundEnd?: () => void;
  /** Aborting it closes `raw` (its read fails: the stream is aborted, or ends with `lastWord`). */
  signal?: AbortSignal;
}

/**
 * Relays one stream between a raw connection (a visitor, or the local app) and
 * a proxy channel, until both directions have ended; closes `raw` at the end.
 * The raw connection's end of stream becomes an END frame and an inbound END a
 * half-close, so half-close crosses the tunnel; a failed raw connection becomes
 * an ABORT and an inbound ABORT closes it. When the channel itself fails, both
 * are closed and the result is not reusable. With `idleTimeoutMs`, a stream
 * with no read either way for that long is aborted; see {@linkcode StreamOptions}
 * for the hooks an HTTP-aware client uses.
 */
export async function relayStream(
  raw: Duplex,
  channel: ProxyChannel,
  options: StreamOptions = {},
): Promise<StreamResult> {
  const { idleTimeoutMs = 0, inboundSink = raw, lastWord, onOutbound, onOutboundEnd, signal } =
    options;
  let rawClosed = false;
  const closeRaw = (): void => {
    if (rawClosed) return;
    rawClosed = true;
    closeQuietly(raw);
  };
  let error: unknown;
  const breakChannel = (e: unknown): void => {
    error ??= e;
    closeQuietly(channel.conn);
    closeRaw();
  };
  let sent = 0;
  let received = 0;
  let outboundEnded = false;
  // A raw connection that cannot take more bytes: while our direction is open,
  // closing it makes our read fail and send ABORT, which stops the other side.
  // After our END there is no frame left to say so, so the channel goes.
  const sinkFailed = (): void => {
    if (outboundEnded) breakChannel(new Deno.errors.BrokenPipe("raw connection gone after END"));
    else closeRaw();
  };

  // Idle timeout: reads stamp the time; one timer checks it and re-arms itself.
  let lastRead = Date.now();
  const touch = (): void => {
    lastRead = Date.now();
  };
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  const checkIdle = (): void => {
    const idle = Date.now() - lastRead;
    if (idle < idleTimeoutMs) {
      idleTimer = setTimeout(checkIdle, idleTimeoutMs - idle);
      return;
    }
    closeRaw(); // our read fails: ABORT both ways, and the channel is kept...
    // ...if the far side answers with its own end in time; otherwise the channel goes too.
    idleTimer = setTimeout(
      () => breakChannel(new Deno.errors.TimedOut("no end of stream after an idle abort")),
      LINGER_MS,
    );
  };
  if (idleTimeoutMs > 0) idleTimer = setTimeout(checkIdle, idleTimeoutMs);

  const outbound = async (): Promise<void> => {
    const reads = new GrowingBuffer(FRAME_HEADER_BYTES, touch);
    let writing: Promise<void> = Promise.resolve();
    let end: StreamEnd = "end";
    try {
      for (;;) {
        let n: number | null;
        try {
          n = await raw.read(reads.buffer);
        } catch {
          end = "abort"; // reset by its peer, or closed by us after an inbound ABORT
          // ...or closed to refuse the visitor: then, if nothing went out yet, say why.
          const answer = sent === 0 ? lastWord?.() : undefined;
          if (answer) {
            await writing;
            const frame = concatBytes(new Uint8Array(FRAME_HEADER_BYTES), answer);
            await channel.sendData(frame, answer.length);
            end = "end";
          }
          break;
        }
        if (n === null) break;
        onOutbound?.(reads.buffer.subarray(0, n));
        await writing;
        writing = channel.sendData(reads.whole, n);
        writing.catch(() => {}); // handled where it is awaited, not reported as unhandled
        if (!reads.large) await writing; // small flows: no second buffer to read into
        sent += n;
        reads.filled(n);
      }
      await writing;
      outboundEnded = true;
      await channel.sendEnd(end);
    } catch (e) {
      breakChannel(e);
    } finally {
      await writing.catch(() => {});
      reads.release();
      onOutboundEnd?.();
    }
  };

  const inbound = async (): Promise<void> => {
    const reads = new GrowingBuffer(0, touch);
    try {
      const { end, bytes } = await channel.receive(inboundSink, reads, sinkFailed);
      received = bytes;
      if (end === "abort") closeRaw();
      else {
        await inboundSink.drain?.(); // what a rewriter still holds goes before the half-close
        if (!rawClosed) await raw.closeWrite().catch(() => {});
      }
    } catch (e) {
      breakChannel(e);
    } finally {
      reads.release();
    }
  };

  signal?.addEventListener("abort", closeRaw, { once: true });
  await Promise.all([outbound(), inbound()]);
  signal?.removeEventListener("abort", closeRaw);
  clearTimeout(idleTimer);
  closeRaw();
  return { sent, received, reusable: error === undefined, error };
}
