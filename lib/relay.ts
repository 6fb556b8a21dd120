// Relays one stream between a raw connection (a visitor, or the local app) and a
// proxy channel: back-pressure, half-close, idle timeout, one close.

import { concatBytes } from "./bytes.ts";
import type { ProxyChannel, Writer } from "./channel.ts";
import { GrowingBuffer } from "./growing_buffer.ts";
import { closeQuietly, type Duplex, writeAll } from "./io.ts";

export type { Duplex };
import { LINGER_MS } from "./limits.ts";
import { describeError, isBug, type LogFields, type Logger } from "./log.ts";
import { dataFrame, FRAME_HEADER_BYTES, lastDataFrame, type StreamEnd } from "./protocol.ts";

/** What a stream over a proxy channel did. */
export interface StreamResult {
  /** Bytes read from the raw connection and sent as DATA. */
  sent: number;
  /** DATA bytes received and written to the raw connection. */
  received: number;
  /** Whether the channel is in step and may carry the next stream. */
  reusable: boolean;
  /** Whether either direction ended in ABORT (the channel may still be in step). */
  aborted: boolean;
  /** What broke the channel, if it broke. */
  error: unknown;
  /** What ended the raw connection early (a reset, a failed write), if anything did. */
  rawError: unknown;
}

/**
 * Logs a finished stream at debug (bytes each way, whether the channel is
 * reusable, what ended it) and, at error, anything that ended it because of a bug.
 */
export function logStream(
  log: Logger,
  result: StreamResult,
  fields: LogFields,
): void {
  log.debug("Stream done", {
    ...fields,
    sent: result.sent,
    received: result.received,
    reusable: result.reusable,
    ...(result.error === undefined ? {} : { error: describeError(result.error) }),
    ...(result.rawError === undefined ? {} : { raw_error: describeError(result.rawError) }),
  });
  for (const e of [result.error, result.rawError]) {
    if (isBug(e)) log.error("Stream failed", { ...fields, error: describeError(e) });
  }
}

/**
 * A layer between `raw` and the channel (the HTTP-aware client): it takes the
 * inbound bytes in place of `raw` and sees the outbound ones.
 */
export interface StreamAdapter {
  /** Where inbound bytes go instead of `raw` itself (a request rewriter in front of it). */
  readonly inbound: Writer;
  /**
   * Sees each chunk read from `raw` before it is sent (a response watcher):
   * undefined sends it as it is, bytes are sent instead (maybe none: held back).
   */
  outbound(bytes: Uint8Array): Uint8Array | undefined;
  /** At `raw`'s end of stream: bytes still held back, sent before the END. */
  flush(): Uint8Array | undefined;
  /** `raw` has nothing more to send (end of stream or error). */
  outboundEnded(): void;
  /**
   * When `raw` fails before it sent anything, an answer to send instead of an
   * ABORT (a refusal the adapter made).
   */
  lastWord(): Uint8Array | undefined;
  /**
   * True once `raw` has sent all it will (the last answer a closing visitor
   * asked for): the relay ends its direction with the chunk just read, END in
   * the same write, without reading `raw` again.
   */
  readonly done?: boolean;
}

/** Optional parts of {@linkcode relayStream}. */
export interface StreamOptions {
  /** Abort a stream with no read either way for this long; 0 never. @default {0} */
  idleTimeoutMs?: number;
  /** A layer that rewrites inbound bytes and watches outbound ones. @default {none} */
  adapter?: StreamAdapter;
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
 * with no read either way for that long is aborted; a {@linkcode StreamAdapter}
 * lets the HTTP-aware client rewrite and watch the stream.
 */
export async function relayStream(
  raw: Duplex,
  channel: ProxyChannel,
  options: StreamOptions = {},
): Promise<StreamResult> {
  const { idleTimeoutMs = 0, adapter, signal } = options;
  const inboundSink: Writer = adapter?.inbound ?? raw;
  let rawClosed = false;
  const closeRaw = (): void => {
    if (rawClosed) return;
    rawClosed = true;
    closeQuietly(raw);
  };
  let error: unknown;
  let rawError: unknown;
  const breakChannel = (e: unknown): void => {
    error ??= e;
    closeQuietly(channel.conn);
    closeRaw();
  };
  let sent = 0;
  let received = 0;
  let outboundEnded = false;
  let aborted = false;
  // A raw connection that cannot take more bytes: while our direction is open,
  // closing it makes our read fail and send ABORT, which stops the other side.
  // After our END there is no frame left to say so, so the channel goes.
  const sinkFailed = (e: unknown): void => {
    rawError ??= e;
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
        } catch (e) {
          if (!rawClosed) rawError ??= e; // not our own close after an inbound ABORT
          end = "abort"; // reset by its peer, or closed by us after an inbound ABORT
          // ...or closed to refuse the visitor: then, if nothing went out yet, say why.
          const answer = sent === 0 ? adapter?.lastWord() : undefined;
          if (answer) {
            await writing;
            const frame = concatBytes(new Uint8Array(FRAME_HEADER_BYTES), answer);
            await channel.sendData(frame, answer.length);
            end = "end";
          }
          break;
        }
        if (n === null) {
          // An end of stream seen after we closed `raw` (its sink failed) is our own close.
          if (rawClosed) end = "abort";
          break;
        }
        const instead = adapter?.outbound(reads.buffer.subarray(0, n));
        await writing;
        if (adapter?.done) {
          // The last chunk: DATA and END leave in one write.
          const last = instead ?? reads.buffer.subarray(0, n);
          await writeAll(channel.conn, lastDataFrame(last));
          sent += n;
          outboundEnded = true;
          return;
        }
        writing = instead === undefined
          ? channel.sendData(reads.whole, n)
          : instead.length > 0
          ? writeAll(channel.conn, dataFrame(instead))
          : Promise.resolve();
        writing.catch(() => {}); // handled where it is awaited, not reported as unhandled
        if (!reads.large) await writing; // small flows: no second buffer to read into
        sent += n;
        reads.filled(n);
      }
      await writing;
      const held = end === "end" ? adapter?.flush() : undefined;
      if (held && held.length > 0) await writeAll(channel.conn, dataFrame(held));
      outboundEnded = true;
      if (end === "abort") aborted = true;
      await channel.sendEnd(end);
    } catch (e) {
      breakChannel(e);
    } finally {
      await writing.catch(() => {});
      reads.release();
      adapter?.outboundEnded();
    }
  };

  const inbound = async (): Promise<void> => {
    const reads = new GrowingBuffer(0, touch);
    try {
      const { end, bytes } = await channel.receive(inboundSink, reads, sinkFailed);
      received = bytes;
      if (end === "abort") {
        aborted = true;
        closeRaw();
      } else {
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
  return { sent, received, reusable: error === undefined, aborted, error, rawError };
}
