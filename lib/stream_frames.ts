// Stream frames: the framing of a visitor's bytes on a proxy connection (pure).
// lib/protocol.ts re-exports all of it, with the control frames they share a header with.

/** Bytes in a frame's header: a length (control frames) or a kind and a length (stream frames). */
export const FRAME_HEADER_BYTES = 4;

// On a proxy connection, frames share the control frames' 4-byte
// header: its first byte is the kind, the other three the payload length. A JSON
// frame (kind 0) is a control frame unchanged (they are at most 16 KiB, so their
// first byte is 0). Between streams the server may send `ping` on an idle proxy
// connection and the client answers `ping` (a dead one is found and closed). A
// stream starts with the server's `open`; on a connection quiet for a while the
// `open` asks for the client's ACCEPT first (until it comes, a visitor can be
// moved to another connection, as a NAT may have dropped this one); then DATA
// frames ending, per direction, in one END (half-close) or ABORT (the stream
// failed). Once both directions have ended, the connection carries the next
// `open`: proxy connections are reused, not redialled.

/** Frame kinds on a proxy connection. */
export const FrameKind = { json: 0, data: 1, end: 2, abort: 3, accept: 4 } as const;

/** Largest DATA payload: the 24-bit length of the header. */
export const MAX_DATA_BYTES = 0xff_ffff;

/** How a direction of a stream ended. */
export type StreamEnd = "end" | "abort";

/** The END frame (this direction is over: a half-close). */
export const END_FRAME: Uint8Array = Uint8Array.of(FrameKind.end, 0, 0, 0);
/** The ABORT frame (this direction failed: close the connection). */
export const ABORT_FRAME: Uint8Array = Uint8Array.of(FrameKind.abort, 0, 0, 0);
/** The ACCEPT frame: the client's first answer to `open`, before anything else of the stream. */
export const ACCEPT_FRAME: Uint8Array = Uint8Array.of(FrameKind.accept, 0, 0, 0);

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

/**
 * A direction's last bytes: a DATA frame (none for no bytes) and END, to send
 * in one write.
 *
 * @example
 * ```ts
 * import { lastDataFrame } from "./stream_frames.ts";
 * console.log(lastDataFrame(new Uint8Array([104, 105]))); // DATA "hi", then END
 * ```
 */
export function lastDataFrame(payload: Uint8Array): Uint8Array {
  const data = payload.length > 0 ? FRAME_HEADER_BYTES + payload.length : 0;
  const frames = new Uint8Array(data + END_FRAME.length);
  if (data > 0) {
    putDataHeader(frames, payload.length);
    frames.set(payload, FRAME_HEADER_BYTES);
  }
  frames.set(END_FRAME, data);
  return frames;
}

/** What {@linkcode StreamDecoder.decode} found in a chunk. */
export type StreamDecodeResult =
  /** The chunk held only DATA: its payload is now its first `payload` bytes. */
  | { state: "data"; payload: number }
  /**
   * The direction ended (`how`) after the chunk's first `used` bytes; the
   * payload before it is the chunk's first `payload` bytes, and the bytes from
   * `used` on belong to what follows the stream.
   */
  | { state: "end"; how: StreamEnd; payload: number; used: number }
  /** Not a stream frame: the connection is out of step. */
  | { state: "invalid"; reason: string };

/**
 * Decodes one direction of a stream, chunk by chunk, in place: each chunk's
 * payload bytes are moved over the frame headers between them to its start, so
 * a relay writes them on with one write per chunk. Headers may be split
 * across chunks. No I/O: the relay and the fuzzer feed it alike.
 */
export class StreamDecoder {
  #header = new Uint8Array(FRAME_HEADER_BYTES);
  #have = 0; // header bytes gathered
  #remaining = 0; // payload bytes of the current DATA frame still to come

  /** Decodes `chunk`, which follows what was decoded before; moves its payload to its start. */
  decode(chunk: Uint8Array): StreamDecodeResult {
    let at = 0;
    let out = 0;
    while (at < chunk.length) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.length - at);
        if (out !== at) chunk.copyWithin(out, at, at + take);
        out += take;
        at += take;
        this.#remaining -= take;
        continue;
      }
      const take = Math.min(FRAME_HEADER_BYTES - this.#have, chunk.length - at);
      this.#header.set(chunk.subarray(at, at + take), this.#have);
      this.#have += take;
      at += take;
      if (this.#have < FRAME_HEADER_BYTES) break;
      this.#have = 0;
      const h = this.#header;
      const kind = h[0]!;
      const length = (h[1]! << 16) | (h[2]! << 8) | h[3]!;
      if (kind === FrameKind.data && length > 0) {
        this.#remaining = length;
      } else if ((kind === FrameKind.end || kind === FrameKind.abort) && length === 0) {
        return {
          state: "end",
          how: kind === FrameKind.end ? "end" : "abort",
          payload: out,
          used: at,
        };
      } else {
        return {
          state: "invalid",
          reason: `unexpected frame (kind ${kind}, ${length} bytes) in a stream`,
        };
      }
    }
    return { state: "data", payload: out };
  }
}
