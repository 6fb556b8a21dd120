// A control connection, either side: framed messages, serialized writes, heartbeats.

import type { ByteReader, Conn } from "./io.ts";
import { closeQuietly, writeAll } from "./io.ts";
import type { Logger } from "./log.ts";
import { describeError, isDisconnect } from "./log.ts";
import { HEARTBEAT_INTERVAL_MS, LAST_FRAME_GRACE_MS, PEER_TIMEOUT_MS } from "./limits.ts";
import { type DecodeResult, encodeFrame } from "./protocol.ts";
import type { ClientMessage, ServerMessage } from "./protocol.ts";

type Message = ClientMessage | ServerMessage;

/** Timing of heartbeats; tests shorten it. */
export interface HeartbeatTiming {
  /** Interval between outgoing pings. */
  intervalMs: number;
  /** Inbound silence after which the peer is dead. */
  peerTimeoutMs: number;
}

/** The protocol's heartbeat timing. */
export const DEFAULT_HEARTBEAT: HeartbeatTiming = {
  intervalMs: HEARTBEAT_INTERVAL_MS,
  peerTimeoutMs: PEER_TIMEOUT_MS,
};

/**
 * Owns a control connection: reads frames and hands each to `onMessage`
 * (pings are absorbed), sends pings on an interval, and closes the connection
 * after `peerTimeoutMs` of inbound silence, on a bad frame, or on `close()`.
 */
export class ControlChannel<In extends Message, Out extends Message> {
  #conn: Conn;
  #reader: ByteReader;
  #decode: (bytes: Uint8Array) => DecodeResult<In>;
  #log: Logger;
  #timing: HeartbeatTiming;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  #silence: ReturnType<typeof setTimeout> | undefined;
  #reason = "closed";
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #received = 0;
  #listeners = new Set<(alive: boolean) => void>();

  /** Wraps `conn`, whose already-read bytes are in `reader`. */
  constructor(
    conn: Conn,
    reader: ByteReader,
    decode: (bytes: Uint8Array) => DecodeResult<In>,
    log: Logger,
    timing: HeartbeatTiming = DEFAULT_HEARTBEAT,
  ) {
    this.#conn = conn;
    this.#reader = reader;
    this.#decode = decode;
    this.#log = log;
    this.#timing = timing;
  }

  /** Frames received so far (pings included). */
  get received(): number {
    return this.#received;
  }

  /** Whether the channel has closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a message; writes never interleave. A failed write closes the channel. */
  send(message: Out): void {
    if (this.#closed) return;
    const frame = encodeFrame(message);
    this.#writing = this.#writing.then(() => writeAll(this.#conn, frame)).catch((e) => {
      this.#end(isDisconnect(e) ? "peer went away" : `write failed: ${describeError(e)}`);
    });
  }

  /**
   * Reads until the peer closes, falls silent or misbehaves, or `close()` is
   * called; resolves with the reason. The connection is closed on return.
   */
  async run(onMessage: (message: In) => void): Promise<string> {
    const ping = setInterval(() => this.send({ type: "ping" } as Out), this.#timing.intervalMs);
    this.#armSilence();
    try {
      while (!this.#closed) {
        const message = await this.#reader.readFrame(this.#decode);
        if (message === null) {
          this.#end("peer closed the connection");
          break;
        }
        this.#received++;
        this.#armSilence();
        for (const heard of [...this.#listeners]) heard(true);
        if (message.type !== "ping") onMessage(message);
        else if ("echo" in message && message.echo) this.send({ type: "ping" } as Out);
      }
    } catch (e) {
      if (e instanceof SyntaxError) this.#end(`protocol error: ${e.message}`);
      else this.#end(isDisconnect(e) ? "connection lost" : describeError(e));
    } finally {
      clearInterval(ping);
      clearTimeout(this.#silence);
      this.#end("closed");
      await this.#writing;
    }
    return this.#reason;
  }

  /**
   * Whether the peer is alive: sends a ping it must answer at once and
   * resolves true when any frame arrives within `timeoutMs`, false otherwise.
   */
  probe(timeoutMs: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (alive: boolean): void => {
        clearTimeout(timer);
        this.#listeners.delete(done);
        resolve(alive);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#listeners.add(done);
      this.send({ type: "ping", echo: true } as Out);
    });
  }

  /** Sends `last` if given (waiting at most LAST_FRAME_GRACE_MS for it), then closes. */
  close(reason = "closed", last?: Out): void {
    if (this.#closed) return;
    if (last) {
      this.send(last);
      this.#writing.finally(() => this.#end(reason));
      this.#closeTimer ??= setTimeout(() => this.#end(reason), LAST_FRAME_GRACE_MS);
    } else {
      this.#end(reason);
    }
  }

  #armSilence(): void {
    clearTimeout(this.#silence);
    this.#silence = setTimeout(() => {
      this.#log.debug("Control peer silent", { ms: this.#timing.peerTimeoutMs });
      this.#end(`no heartbeat for ${this.#timing.peerTimeoutMs} ms`);
    }, this.#timing.peerTimeoutMs);
  }

  #end(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const heard of [...this.#listeners]) heard(false); // a probe ends at once
    this.#reason = reason;
    clearTimeout(this.#silence);
    clearTimeout(this.#closeTimer);
    closeQuietly(this.#conn);
  }
}
