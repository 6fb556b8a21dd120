// A proxy connection after `attach`: JSON messages between streams, framed bytes within one.
//
// Frames share the control frames' 4-byte header: its first byte is the kind, the
// other three the payload length. A JSON frame (kind 0) is the control frame format
// unchanged. A stream is DATA frames ending, per direction, in one END (half-close)
// or ABORT (the stream failed). Once both directions have ended, the connection
// carries the next `open`: proxy connections are reused, not redialled.

import type { PendingRead } from "./relay.ts";
import { concatBytes, type DecodeResult, FRAME_HEADER_BYTES } from "./protocol.ts";
import { writeAll } from "./io.ts";

/** Frame kinds on a proxy connection. */
export const FrameKind = { json: 0, data: 1, end: 2, abort: 3 } as const;

/** Largest DATA payload: the 24-bit length of the header. */
export const MAX_DATA_BYTES = 0xff_ffff;
/**
 * Bytes of the read that watches an idle proxy connection for a close. It
 * becomes the first read of the next stream, so it holds the start of an answer;
 * eight of them per tunnel are most of an idle tunnel's memory.
 */
export const IDLE_READ_BYTES = 2048;

/** How a direction of a stream ended. */
export type StreamEnd = "end" | "abort";

const END_FRAME = Uint8Array.of(FrameKind.end, 0, 0, 0);
const ABORT_FRAME = Uint8Array.of(FrameKind.abort, 0, 0, 0);

/** Writes a DATA header for `length` payload bytes into `buffer[0..4]`. */
export function putDataHeader(buffer: Uint8Array, length: number): void {
  if (length < 1 || length > MAX_DATA_BYTES) throw new RangeError(`Bad DATA length ${length}`);
  buffer[0] = FrameKind.data;
  buffer[1] = length >>> 16;
  buffer[2] = (length >>> 8) & 0xff;
  buffer[3] = length & 0xff;
}

/** A whole DATA frame holding `payload` (a copy; for small, one-off payloads). */
export function dataFrame(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  putDataHeader(frame, payload.length);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/** A read buffer that may be swapped for a larger one after reads that fill it. */
export interface ReadBuffer {
  /** The buffer for the next read. */
  readonly buffer: Uint8Array;
  /** Reports how many bytes the last read into `buffer` returned. */
  filled(bytes: number): void;
  /** Whether `filled()` moves to another buffer, so a write may still use the last one. */
  readonly large: boolean;
}

/** Anything bytes can be written to, like a `Deno.Conn`. */
export interface Writer {
  /** Writes some of `p`; resolves with how many bytes. */
  write(p: Uint8Array): Promise<number>;
  /** For a writer that may still hold bytes it took: resolves once they are written on. */
  drain?(): Promise<void>;
}

/** Where a stream's inbound DATA goes; `undefined` drops it. */
export type StreamSink = Writer | undefined;

/**
 * One proxy connection, on either side. It owns `conn`'s inbound bytes: the
 * idle watch read, bytes read past the end of a stream, and the reads of the
 * current stream all go through it, so no byte is lost between streams.
 */
export class ProxyChannel {
  /** The upgraded TCP connection. */
  readonly conn: Deno.Conn;
  #leftover: Uint8Array | undefined;
  #pending: PendingRead | undefined;

  /** Wraps `conn`; `leftover` holds bytes already read from it. */
  constructor(conn: Deno.Conn, leftover?: Uint8Array) {
    this.conn = conn;
    if (leftover && leftover.length > 0) this.#leftover = leftover;
  }

  /**
   * Starts a read on an idle channel and resolves when it completes (bytes,
   * end of stream or error). Whatever it read is the start of the next read.
   */
  watch(): Promise<void> {
    if (this.#leftover) return Promise.resolve();
    const buffer = new Uint8Array(IDLE_READ_BYTES);
    const pending = { buffer, result: this.conn.read(buffer) };
    this.#pending = pending;
    return pending.result.then(() => {}, () => {});
  }

  /** The next inbound bytes: leftover, the watch read, or a fresh read into `buffer`. */
  async #chunk(buffer: Uint8Array): Promise<Uint8Array | null> {
    const leftover = this.#leftover;
    if (leftover) {
      this.#leftover = undefined;
      return leftover;
    }
    const pending = this.#pending;
    if (pending) {
      this.#pending = undefined;
      const n = await pending.result;
      return n === null ? null : pending.buffer.subarray(0, n);
    }
    const n = await this.conn.read(buffer);
    return n === null ? null : buffer.subarray(0, n);
  }

  /** Reads one JSON message between streams; null at a clean end of stream. */
  async readMessage<M>(decode: (bytes: Uint8Array) => DecodeResult<M>): Promise<M | null> {
    let bytes: Uint8Array = new Uint8Array(0);
    const buffer = new Uint8Array(IDLE_READ_BYTES);
    for (;;) {
      const result = decode(bytes);
      if (result.state === "frame") {
        if (result.length < bytes.length) this.#leftover = bytes.slice(result.length);
        return result.message;
      }
      if (result.state === "invalid") throw new SyntaxError(`Invalid frame: ${result.reason}`);
      const chunk = await this.#chunk(buffer);
      if (chunk === null) {
        if (bytes.length === 0) return null;
        throw new Deno.errors.UnexpectedEof("Proxy connection closed inside a frame");
      }
      bytes = bytes.length === 0 ? chunk.slice() : concatBytes(bytes, chunk);
    }
  }

  /** Sends `payload` bytes that follow a 4-byte gap at the start of `buffer`. */
  sendData(buffer: Uint8Array, payload: number): Promise<void> {
    putDataHeader(buffer, payload);
    return writeAll(this.conn, buffer.subarray(0, FRAME_HEADER_BYTES + payload));
  }

  /** Ends this side's direction of the stream. */
  sendEnd(how: StreamEnd): Promise<void> {
    return writeAll(this.conn, how === "end" ? END_FRAME : ABORT_FRAME);
  }

  /**
   * Copies the stream's inbound DATA to `sink` until its END or ABORT, reading
   * into `reads.buffer`. A write to `sink` that fails calls `onSinkFailed` once
   * and drops the rest, so the channel stays in step. Throws SyntaxError on a
   * framing error and the read's error when the connection fails.
   */
  async receive(
    sink: StreamSink,
    reads: ReadBuffer,
    onSinkFailed: () => void = () => {},
  ): Promise<{ end: StreamEnd; bytes: number }> {
    const header = new Uint8Array(FRAME_HEADER_BYTES);
    let have = 0;
    let remaining = 0;
    let bytes = 0;
    let target = sink;
    // Payload bytes of a chunk are moved together over the headers between them
    // and written with one write per chunk, not one per frame piece.
    const flush = async (payload: Uint8Array): Promise<void> => {
      if (!target || payload.length === 0) return;
      try {
        await writeAll(target, payload);
      } catch {
        target = undefined;
        onSinkFailed();
      }
    };
    let flushing: Promise<void> = Promise.resolve(); // never rejects: flush catches
    try {
      for (;;) {
        const buffer = reads.buffer;
        const chunk = await this.#chunk(buffer);
        if (chunk === null) {
          throw new Deno.errors.UnexpectedEof("Proxy connection closed mid-stream");
        }
        const fresh = chunk.buffer === buffer.buffer; // a read into `reads`, not leftover
        let at = 0;
        let out = 0; // payload bytes gathered at the start of `chunk`
        while (at < chunk.length) {
          if (remaining > 0) {
            const take = Math.min(remaining, chunk.length - at);
            if (out !== at) chunk.copyWithin(out, at, at + take);
            out += take;
            at += take;
            remaining -= take;
            bytes += take;
            continue;
          }
          const take = Math.min(FRAME_HEADER_BYTES - have, chunk.length - at);
          header.set(chunk.subarray(at, at + take), have);
          have += take;
          at += take;
          if (have < FRAME_HEADER_BYTES) break;
          have = 0;
          const length = (header[1]! << 16) | (header[2]! << 8) | header[3]!;
          if (header[0] === FrameKind.data && length > 0) {
            remaining = length;
          } else if (
            (header[0] === FrameKind.end || header[0] === FrameKind.abort) && length === 0
          ) {
            if (at < chunk.length) this.#leftover = chunk.slice(at);
            await flushing;
            await flush(chunk.subarray(0, out));
            return { end: header[0] === FrameKind.end ? "end" : "abort", bytes };
          } else {
            throw new SyntaxError(
              `Unexpected frame (kind ${header[0]}, ${length} bytes) in a stream`,
            );
          }
        }
        // In a bulk flow the write goes on while the next read fills the other
        // buffer; otherwise it ends before the buffer is read into again.
        await flushing;
        flushing = flush(chunk.subarray(0, out));
        if (!reads.large) await flushing;
        if (fresh) reads.filled(chunk.length);
      }
    } finally {
      await flushing; // a write may still use a buffer the caller is about to release
    }
  }
}
