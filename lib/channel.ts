// A proxy connection after `attach`, on either side: JSON messages between
// streams, stream frames (lib/protocol.ts) within one.

import { concatBytes } from "./bytes.ts";
import type { ReadBuffer } from "./growing_buffer.ts";
import { closeQuietly, type Conn, writeAll } from "./io.ts";
import {
  ABORT_FRAME,
  ACCEPT_FRAME,
  type DecodeResult,
  END_FRAME,
  FRAME_HEADER_BYTES,
  PING_FRAME,
  putDataHeader,
  StreamDecoder,
  type StreamEnd,
} from "./protocol.ts";

/**
 * Bytes of the read that watches an idle proxy connection for a close. It
 * becomes the first read of the next stream, so it holds the start of an answer;
 * eight of them per tunnel are most of an idle tunnel's memory.
 */
export const IDLE_READ_BYTES = 2048;
/** An empty read: where a message starts before anything was read. */
const NO_BYTES = new Uint8Array(0);

/** A read already started on a connection; its bytes come before any later read's. */
export interface PendingRead {
  /** The buffer the read fills. */
  buffer: Uint8Array;
  /** The read itself: bytes read, or null at end of stream. */
  result: Promise<number | null>;
}

/** Anything bytes can be written to, like a `Conn`. */
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
  readonly conn: Conn;
  #leftover: Uint8Array | undefined;
  #pending: PendingRead | undefined;
  #writing: Promise<void> = Promise.resolve();
  // Reused read buffers (one allocation per channel, not one per stream): the idle watch's,
  // and readMessage's. What was read into one is used before the next read into it.
  #watchBuffer: Uint8Array | undefined;
  #messageBuffer: Uint8Array | undefined;
  /** Whether a ping went out on this idle channel with no answer yet. */
  pingOutstanding = false;
  /** When bytes last came in (ms since the epoch): a channel heard lately is alive. */
  heardAt: number = Date.now();

  /** Wraps `conn`; `leftover` holds bytes already read from it. */
  constructor(conn: Conn, leftover?: Uint8Array) {
    this.conn = conn;
    if (leftover && leftover.length > 0) this.#leftover = leftover;
  }

  /**
   * Starts a read on an idle channel and resolves when it completes (bytes,
   * end of stream or error). Whatever it read is the start of the next read.
   */
  watch(): Promise<void> {
    if (this.#leftover) return Promise.resolve();
    const buffer = this.#watchBuffer ??= new Uint8Array(IDLE_READ_BYTES);
    const pending = { buffer, result: this.conn.read(buffer) };
    this.#pending = pending;
    return pending.result.then(() => {}, () => {});
  }

  /**
   * After a `watch()` read completed on an idle channel: whether what it read
   * is only whole `ping` frames (answers to ours), which are then dropped. False
   * for anything else (end of stream, an error, stray bytes): retire the channel.
   */
  async takePongs(): Promise<boolean> {
    const pending = this.#pending;
    if (!pending) return false;
    let n: number | null;
    try {
      n = await pending.result;
    } catch {
      return false;
    }
    if (n === null || n % PING_FRAME.length !== 0) return false;
    for (let at = 0; at < n; at++) {
      if (pending.buffer[at] !== PING_FRAME[at % PING_FRAME.length]) return false;
    }
    this.#pending = undefined;
    this.pingOutstanding = false;
    this.heardAt = Date.now();
    return true;
  }

  /** Sends a `ping` on an idle channel (its answer comes to the watch read). */
  ping(): void {
    this.pingOutstanding = true;
    this.#writing = this.#writing.then(() => writeAll(this.conn, PING_FRAME)).catch(() => {
      // A dead connection: its watch read ends too, and retires it.
    });
  }

  /** Writes the start of a stream (`open` and the first bytes), after any ping in flight. */
  async sendStart(bytes: Uint8Array): Promise<void> {
    await this.#writing;
    await writeAll(this.conn, bytes);
  }

  /**
   * Waits for the client's ACCEPT of the stream just opened, skipping answers
   * to pings sent before it; true once it came. False when it does not come
   * within `timeoutMs`, the connection ends, or something else comes: the
   * stream was not taken, and the channel must be closed.
   */
  async readAccept(timeoutMs: number): Promise<boolean> {
    const timer = setTimeout(() => closeQuietly(this.conn), timeoutMs);
    const buffer = new Uint8Array(IDLE_READ_BYTES);
    let bytes: Uint8Array = new Uint8Array(0);
    try {
      for (;;) {
        while (bytes.length >= PING_FRAME.length && startsWith(bytes, PING_FRAME)) {
          bytes = bytes.subarray(PING_FRAME.length);
        }
        if (bytes.length >= FRAME_HEADER_BYTES) {
          if (!startsWith(bytes, ACCEPT_FRAME)) return false;
          if (bytes.length > FRAME_HEADER_BYTES) this.#leftover = bytes.slice(FRAME_HEADER_BYTES);
          return true;
        }
        const chunk = await this.#chunk(buffer);
        if (chunk === null) return false;
        bytes = bytes.length === 0 ? chunk.slice() : concatBytes(bytes, chunk);
      }
    } catch {
      return false; // closed by the timer, or reset
    } finally {
      clearTimeout(timer);
    }
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
      if (n === null) return null;
      this.heardAt = Date.now();
      return pending.buffer.subarray(0, n);
    }
    const n = await this.conn.read(buffer);
    if (n === null) return null;
    this.heardAt = Date.now();
    return buffer.subarray(0, n);
  }

  /** Reads one JSON message between streams; null at a clean end of stream. */
  async readMessage<M>(decode: (bytes: Uint8Array) => DecodeResult<M>): Promise<M | null> {
    let bytes: Uint8Array = NO_BYTES;
    const buffer = this.#messageBuffer ??= new Uint8Array(IDLE_READ_BYTES);
    for (;;) {
      const result = decode(bytes);
      if (result.state === "frame") {
        // A view: the stream's first bytes, used before this buffer is read into again.
        if (result.length < bytes.length) this.#leftover = bytes.subarray(result.length);
        return result.message;
      }
      if (result.state === "invalid") throw new SyntaxError(`Invalid frame: ${result.reason}`);
      if (bytes.buffer === buffer.buffer) bytes = bytes.slice(); // a frame split over reads
      const chunk = await this.#chunk(buffer);
      if (chunk === null) {
        if (bytes.length === 0) return null;
        throw new Deno.errors.UnexpectedEof("Proxy connection closed inside a frame");
      }
      bytes = bytes.length === 0 ? chunk : concatBytes(bytes, chunk);
    }
  }

  /** Sends `payload` bytes that follow a 4-byte gap at the start of `buffer`. */
  sendData(buffer: Uint8Array, payload: number): Promise<void> {
    putDataHeader(buffer, payload);
    return writeAll(this.conn, buffer.subarray(0, FRAME_HEADER_BYTES + payload));
  }

  /** Takes the stream just opened (the client's first answer to `open`). */
  sendAccept(): Promise<void> {
    return writeAll(this.conn, ACCEPT_FRAME);
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
    onSinkFailed: (error: unknown) => void = () => {},
  ): Promise<{ end: StreamEnd; bytes: number }> {
    const decoder = new StreamDecoder();
    let bytes = 0;
    let target = sink;
    const flush = async (payload: Uint8Array): Promise<void> => {
      if (!target || payload.length === 0) return;
      try {
        await writeAll(target, payload);
      } catch (e) {
        target = undefined;
        onSinkFailed(e);
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
        const result = decoder.decode(chunk);
        if (result.state === "invalid") throw new SyntaxError(`Invalid stream: ${result.reason}`);
        bytes += result.payload;
        if (result.state === "end") {
          if (result.used < chunk.length) this.#leftover = chunk.slice(result.used);
          await flushing;
          await flush(chunk.subarray(0, result.payload));
          return { end: result.how, bytes };
        }
        // In a bulk flow the write goes on while the next read fills the other
        // buffer; otherwise it ends before the buffer is read into again.
        await flushing;
        flushing = flush(chunk.subarray(0, result.payload));
        if (!reads.large) await flushing;
        if (fresh) reads.filled(chunk.length);
      }
    } finally {
      await flushing; // a write may still use a buffer the caller is about to release
    }
  }
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}
