// One stream of a proxy channel seen as a plain connection: reads give its
// inbound DATA (null at END, an error at ABORT), writes send DATA, closeWrite
// sends END. A server node hands a visitor forwarded by another node to
// forward() this way, so the relay in between is the one every visitor gets.

import type { ProxyChannel } from "./channel.ts";
import { GrowingBuffer } from "./growing_buffer.ts";
import { closeQuietly, type Conn, writeAll } from "./io.ts";
import {
  dataFrame,
  FRAME_HEADER_BYTES,
  MAX_DATA_BYTES,
  putDataHeader,
  type StreamEnd,
} from "./protocol.ts";

/** Largest payload a write copies into one frame; a larger one goes as a header, then itself. */
const COPY_MAX_BYTES = 16 * 1024;

/** A read waiting for DATA, or DATA waiting for a read. */
interface Waiting<T> {
  bytes: Uint8Array;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/**
 * The current stream of `channel` as a {@linkcode Conn} whose peer is
 * `remoteAddr` (a relayed visitor's own address travels apart, as forward()'s
 * `origin`). Inbound DATA is copied straight into the reader's buffer (a write
 * from the channel waits for a read: back-pressure). Once both
 * directions ended with END the stream is `clean` and `close()` leaves the
 * channel in step for the next stream; closed any other way (an ABORT either
 * way, a reset, a failed write, half a frame) it closes the channel's
 * connection, which ends the stream on the other side too.
 *
 * @example Serve one stream of a channel, then see whether the channel can carry another
 * ```ts ignore
 * import { ChannelStream } from "./channel_stream.ts";
 * const stream = new ChannelStream(channel, channel.conn.remoteAddr);
 * const n = await stream.read(new Uint8Array(4096)); // DATA, or null at END
 * await stream.write(new TextEncoder().encode("answer"));
 * await stream.closeWrite(); // END
 * stream.close();
 * console.log(stream.clean); // true once the other side's END came too
 * ```
 */
export class ChannelStream implements Conn {
  /** The address given for the stream's peer (the channel's, unless the caller knows better). */
  readonly remoteAddr: Deno.Addr;
  #channel: ProxyChannel;
  #in: StreamEnd | "failed" | undefined;
  #out: StreamEnd | undefined;
  #ending = false;
  #closed = false;
  #error: unknown;
  #read: Waiting<number | null> | undefined;
  #offer: Waiting<number> | undefined;
  /** Settles once the stream's inbound direction has ended (END, ABORT, or a failure). */
  readonly received: Promise<void>;

  /** Starts reading the current stream of `channel`; its peer is `remoteAddr`. */
  constructor(channel: ProxyChannel, remoteAddr: Deno.Addr) {
    this.#channel = channel;
    this.remoteAddr = remoteAddr;
    this.received = this.#receive();
  }

  /** Whether both directions ended with END: the channel is in step for another stream. */
  get clean(): boolean {
    return this.#in === "end" && this.#out === "end";
  }

  async #receive(): Promise<void> {
    const reads = new GrowingBuffer();
    const sink = { write: (p: Uint8Array): Promise<number> => this.#deliver(p) };
    try {
      const { end } = await this.#channel.receive(sink, reads, () => this.close());
      this.#in = end;
      if (end === "abort") this.#error = new Deno.errors.ConnectionReset("Stream aborted");
    } catch (e) {
      this.#in = "failed";
      this.#error = e;
    } finally {
      reads.release();
    }
    const read = this.#read;
    this.#read = undefined;
    if (this.#in === "end") read?.resolve(null);
    else read?.reject(this.#error);
    if (this.#in === "failed") this.close(); // out of step: the channel goes
  }

  /** The channel's sink: `p` goes to the next read (as much as its buffer takes). */
  #deliver(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("Stream closed"));
    const read = this.#read;
    if (read) {
      this.#read = undefined;
      const n = Math.min(p.length, read.bytes.length);
      read.bytes.set(p.subarray(0, n));
      read.resolve(n);
      return Promise.resolve(n);
    }
    return new Promise((resolve, reject) => this.#offer = { bytes: p, resolve, reject });
  }

  /** Reads the stream's next DATA bytes into `p`; null after END; rejects after ABORT. */
  read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("Stream closed"));
    const offer = this.#offer;
    if (offer) {
      this.#offer = undefined;
      const n = Math.min(offer.bytes.length, p.length);
      p.set(offer.bytes.subarray(0, n));
      offer.resolve(n);
      return Promise.resolve(n);
    }
    if (this.#in === "end") return Promise.resolve(null);
    if (this.#in !== undefined) return Promise.reject(this.#error);
    if (this.#read) return Promise.reject(new Deno.errors.Busy("A read is under way"));
    return new Promise((resolve, reject) => this.#read = { bytes: p, resolve, reject });
  }

  /** Sends (some of) `p` as one DATA frame. */
  async write(p: Uint8Array): Promise<number> {
    if (this.#closed) throw new Deno.errors.BadResource("Stream closed");
    if (this.#ending) throw new Deno.errors.BrokenPipe("Stream ended");
    const n = Math.min(p.length, MAX_DATA_BYTES);
    if (n === 0) return 0;
    try {
      const conn = this.#channel.conn;
      if (n <= COPY_MAX_BYTES) await writeAll(conn, dataFrame(p.subarray(0, n)));
      else {
        // A bulk chunk: a header of its own rather than a copy of the whole chunk.
        const header = new Uint8Array(FRAME_HEADER_BYTES);
        putDataHeader(header, n);
        await writeAll(conn, header);
        await writeAll(conn, p.subarray(0, n));
      }
    } catch (e) {
      this.#out = "abort"; // half a frame may have gone: never clean
      throw e;
    }
    return n;
  }

  /** Ends this direction with END (a half-close). */
  async closeWrite(): Promise<void> {
    if (this.#closed) throw new Deno.errors.BadResource("Stream closed");
    if (this.#ending) return;
    this.#ending = true;
    try {
      await this.#channel.sendEnd("end");
      this.#out ??= "end";
    } catch (e) {
      this.#out = "abort";
      throw e;
    }
  }

  /**
   * Ends the stream: after a clean one, nothing more (the channel stays in
   * step); otherwise the channel's connection is closed, which is how the
   * other side learns (a pending read then fails).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const offer = this.#offer;
    this.#offer = undefined;
    offer?.reject(new Deno.errors.BadResource("Stream closed"));
    const read = this.#read;
    this.#read = undefined;
    read?.reject(new Deno.errors.BadResource("Stream closed"));
    if (!this.clean) closeQuietly(this.#channel.conn);
  }
}
