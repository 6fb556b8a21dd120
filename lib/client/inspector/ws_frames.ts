// WebSocket frames counted as they pass (pure, streaming): the inspector's message
// counts for an upgraded stream. Only frame headers are read; payloads are skipped.

/** What a {@linkcode WsFrameCounter} has seen on one direction of a WebSocket. */
export interface WsCounts {
  /** Data messages complete (text or binary, fragments joined). */
  messages: number;
  /** Frames of any kind, control frames included. */
  frames: number;
  /** Payload bytes of every frame seen so far (partly received frames included). */
  bytes: number;
  /** Ping frames. */
  pings: number;
  /** Pong frames. */
  pongs: number;
  /** Whether a close frame went by. */
  closed: boolean;
  /** Why counting stopped: the bytes are not WebSocket frames (from that point on). */
  invalid: string | undefined;
}

/** Longest frame header: 2 bytes, a 64-bit length, a 4-byte mask key. */
const MAX_HEADER_BYTES = 14;

/**
 * Counts the frames of one direction of a WebSocket (RFC 6455 section 5.2) in
 * bytes pushed as they come, split anywhere. It reads headers only, so its
 * cost is per frame, not per byte. Bytes that cannot be frames stop the count
 * (`invalid` says why); it never throws.
 */
export class WsFrameCounter {
  #header = new Uint8Array(MAX_HEADER_BYTES);
  #have = 0; // header bytes gathered for the next frame
  #skip = 0; // payload bytes of the current frame still to come
  #opcode = 0; // of the current frame
  #fin = false;
  #fragmented = false; // a data message has begun and not ended
  #counts: WsCounts = {
    messages: 0,
    frames: 0,
    bytes: 0,
    pings: 0,
    pongs: 0,
    closed: false,
    invalid: undefined,
  };

  /** The counts so far (a live view: read, do not keep). */
  get counts(): Readonly<WsCounts> {
    return this.#counts;
  }

  /** Reads `bytes`, which follow everything pushed before; returns messages completed in them. */
  push(bytes: Uint8Array): number {
    const before = this.#counts.messages;
    const n = bytes.length;
    let at = 0;
    while (at < n && this.#counts.invalid === undefined) {
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, n - at);
        this.#skip -= take;
        this.#counts.bytes += take;
        at += take;
        if (this.#skip === 0) this.#frameDone();
        continue;
      }
      this.#header[this.#have++] = bytes[at++]!;
      if (this.#have < headerLength(this.#header, this.#have)) continue;
      this.#have = 0;
      const length = this.#startFrame();
      if (length === undefined) break;
      this.#skip = length;
      if (length === 0) this.#frameDone();
    }
    return this.#counts.messages - before;
  }

  // Reads the complete header in #header; the payload length, or undefined if invalid.
  #startFrame(): number | undefined {
    const h = this.#header;
    const fin = (h[0]! & 0x80) !== 0;
    const opcode = h[0]! & 0x0f;
    const len7 = h[1]! & 0x7f;
    let length = len7;
    if (len7 === 126) length = (h[2]! << 8) | h[3]!;
    else if (len7 === 127) {
      const high = ((h[2]! << 24) >>> 0) + (h[3]! << 16) + (h[4]! << 8) + h[5]!;
      const low = ((h[6]! << 24) >>> 0) + (h[7]! << 16) + (h[8]! << 8) + h[9]!;
      if (high >= 0x200000) return this.#invalid("frame length over 2^53");
      length = high * 2 ** 32 + low;
    }
    if (opcode >= 0x8) {
      if (opcode > 0xa) return this.#invalid(`reserved opcode ${opcode}`);
      if (!fin) return this.#invalid("fragmented control frame");
      if (length > 125) return this.#invalid("control frame over 125 bytes");
    } else if (opcode === 0) {
      if (!this.#fragmented) return this.#invalid("continuation frame without a message");
    } else if (opcode <= 2) {
      if (this.#fragmented) return this.#invalid("new message before the last one ended");
    } else return this.#invalid(`reserved opcode ${opcode}`);
    this.#opcode = opcode;
    this.#fin = fin;
    return length;
  }

  #frameDone(): void {
    const counts = this.#counts;
    counts.frames++;
    switch (this.#opcode) {
      case 0x8:
        counts.closed = true;
        return;
      case 0x9:
        counts.pings++;
        return;
      case 0xa:
        counts.pongs++;
        return;
    }
    this.#fragmented = !this.#fin;
    if (this.#fin) counts.messages++;
  }

  #invalid(reason: string): undefined {
    this.#counts.invalid = reason;
    return undefined;
  }
}

/** The length of the header whose first `have` bytes are in `h` (2 until the second byte is in). */
function headerLength(h: Uint8Array, have: number): number {
  if (have < 2) return 2;
  const len7 = h[1]! & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((h[1]! & 0x80) !== 0 ? 4 : 0);
}
