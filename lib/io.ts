// Small I/O helpers over connections: buffered reads, whole writes, deadlines, quiet close.

import { LINGER_MAX_BYTES, LINGER_MS, MAX_FRAME_BYTES } from "./limits.ts";
import { hostWithPort } from "./names.ts";
import { type DecodeResult, FRAME_HEADER_BYTES } from "./protocol.ts";

/** A byte stream the relay and the handlers drive: a `Deno.Conn`, or anything shaped like one. */
export interface Duplex {
  /** Reads into `p`; resolves with the count, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; resolves with how many bytes. */
  write(p: Uint8Array): Promise<number>;
  /** Ends the writing direction (half-close). */
  closeWrite(): Promise<void>;
  /** Closes both directions. */
  close(): void;
}

/**
 * A connection from a peer: a `Deno.Conn`, or a node socket behind an adapter
 * (the server's TLS port, see lib/node_conn.ts).
 */
export interface Conn extends Duplex {
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
}

/** Closes a resource, ignoring that it may be closed already. */
export function closeQuietly(resource: { close(): void }): void {
  // Deno throws BadResource on a second close; a throw costs a stack trace, and
  // connections are often closed from two places (relay, then handler).
  if (closed.has(resource)) return;
  closed.add(resource);
  try {
    resource.close();
  } catch {
    // Closed by someone else first: closing is idempotent for our purposes.
  }
}

const closed = new WeakSet<object>();

/** Writes all of `bytes`, looping over partial writes. */
export async function writeAll(
  conn: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(at === 0 ? bytes : bytes.subarray(at));
}

/** Bytes needed to read one control frame with some room to spare. */
export const FRAME_READER_CAPACITY = FRAME_HEADER_BYTES + MAX_FRAME_BYTES + 4096;

/** First size of a ByteReader's buffer: most heads, hellos and frames fit. */
const READER_START_BYTES = 2048;

/** Reads from a connection into one buffer (grown when full) that callers parse in place. */
export class ByteReader {
  #conn: { read(p: Uint8Array): Promise<number | null> };
  #buffer: Uint8Array;
  #capacity: number;
  #start = 0;
  #end = 0;

  /**
   * Reads from `conn`, starting with `initial`, into a buffer that starts at
   * READER_START_BYTES and doubles as needed up to `capacity` bytes.
   */
  constructor(
    conn: { read(p: Uint8Array): Promise<number | null> },
    capacity: number,
    initial?: Uint8Array,
  ) {
    this.#conn = conn;
    this.#capacity = Math.max(capacity, initial?.length ?? 0);
    const size = Math.max(Math.min(READER_START_BYTES, capacity), initial?.length ?? 0);
    this.#buffer = new Uint8Array(size);
    if (initial) {
      this.#buffer.set(initial);
      this.#end = initial.length;
    }
  }

  /** The bytes read and not yet consumed (a view, valid until the next fill). */
  get buffered(): Uint8Array {
    return this.#buffer.subarray(this.#start, this.#end);
  }

  /** How many more bytes `fill()` may add before the buffer is full. */
  get room(): number {
    return this.#capacity - (this.#end - this.#start);
  }

  /** Marks `n` buffered bytes as used. */
  consume(n: number): void {
    this.#start += n;
  }

  /** Reads more bytes; false at end of stream. Throws when the buffer is full. */
  async fill(): Promise<boolean> {
    if (this.#start > 0) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buffer.length) {
      if (this.#buffer.length >= this.#capacity) {
        throw new RangeError(`Cannot read more: ${this.#capacity}-byte buffer is full`);
      }
      const grown = new Uint8Array(Math.min(this.#capacity, this.#buffer.length * 2));
      grown.set(this.#buffer.subarray(0, this.#end));
      this.#buffer = grown;
    }
    const n = await this.#conn.read(this.#buffer.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /** Reads and decodes one frame; null at a clean end of stream. Throws SyntaxError if invalid. */
  async readFrame<M>(decode: (bytes: Uint8Array) => DecodeResult<M>): Promise<M | null> {
    for (;;) {
      const result = decode(this.buffered);
      if (result.state === "frame") {
        this.consume(result.length);
        return result.message;
      }
      if (result.state === "invalid") throw new SyntaxError(`Invalid frame: ${result.reason}`);
      if (!await this.fill()) {
        if (this.buffered.length === 0) return null;
        throw new Deno.errors.UnexpectedEof("Connection closed inside a frame");
      }
    }
  }
}

/** A timer that can be cancelled; `expired` tells whether it fired. */
export interface Deadline {
  /** Whether the timer has fired. */
  readonly expired: boolean;
  /** Cancels the timer if it has not fired. */
  clear(): void;
}

/** Runs `onExpire` after `ms` unless cleared first. */
export function deadline(ms: number, onExpire: () => void): Deadline {
  let expired = false;
  const id = setTimeout(() => {
    expired = true;
    onExpire();
  }, ms);
  return {
    get expired() {
      return expired;
    },
    clear: () => clearTimeout(id),
  };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(id);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const id = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Writes a final answer, half-closes, and reads and drops what the peer still
 * sends (up to LINGER_MS and LINGER_MAX_BYTES) so that closing does not reset
 * the connection and destroy the answer before the peer reads it. The caller
 * closes the connection afterwards.
 */
export async function answerAndLinger(conn: Duplex, answer: Uint8Array): Promise<void> {
  await writeAll(conn, answer);
  try {
    await conn.closeWrite();
  } catch {
    return; // the peer is gone already
  }
  const timer = deadline(LINGER_MS, () => closeQuietly(conn));
  const buffer = new Uint8Array(4096);
  try {
    for (let total = 0; total < LINGER_MAX_BYTES;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      total += n;
    }
  } catch {
    // Closed by the timer or reset by the peer: either way, done.
  } finally {
    timer.clear();
  }
}

/** The IP address of a connection's peer. */
export function ipOf(conn: Conn): string {
  return (conn.remoteAddr as Deno.NetAddr).hostname;
}

/** A connection's peer as `ip:port` (IPv6 in brackets). */
export function peerOf(conn: Conn): string {
  const { hostname, port } = conn.remoteAddr as Deno.NetAddr;
  return hostWithPort(hostname, port, -1);
}

/**
 * `conn`, whose next read gives the bytes of `first` (a read already under
 * way; null: the end of stream) before reading `conn` itself again.
 */
export function withFirstRead(conn: Duplex, first: Promise<Uint8Array | null>): Duplex {
  let pending: Promise<Uint8Array | null> | undefined = first;
  let rest: Uint8Array | undefined;
  return {
    async read(p) {
      if (pending) {
        const bytes = await pending;
        pending = undefined;
        if (bytes === null) return null;
        rest = bytes;
      }
      if (rest && rest.length > 0) {
        const n = Math.min(rest.length, p.length);
        p.set(rest.subarray(0, n));
        rest = rest.subarray(n);
        return n;
      }
      return await conn.read(p);
    },
    write: (p) => conn.write(p),
    closeWrite: () => conn.closeWrite(),
    close: () => closeQuietly(conn), // the one close of `conn`, known to closeQuietly
  };
}
